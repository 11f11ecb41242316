"""InterFAX JSON objects (shared/interfax-api.md §6) become typed, frozen values."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bridge.interfax_models import (
    ForwardingEmail,
    InboundFax,
    InboundImage,
    ModelError,
    OutboundFax,
    UploadSession,
    list_parser,
    parse_decimal,
    parse_timestamp,
)
from bridge.interfax_wire import parse_json

# The full outbound record as recorded live (JAVA-REC body-faxes-667915751), key order kept.
FULL = b"""{"submitTime":"2016-10-03T00:36:41","contact":null,"destinationFax":"00442084978672",
"replyEmail":"","subject":null,"pagesSubmitted":1,"senderCSID":"Interfax",
"attemptsToPerform":4,"pageSize":"A4","resolution":"Standard","pageResolution":"Standard",
"pageOrientation":"Portrait","rendering":"Fine","pageHeader":"0","userId":"devexp-java",
"pagesSent":1,"completionTime":"2016-10-03T00:36:36","remoteCSID":"Interfax","duration":41,
"priority":2,"units":1.00,"costPerUnit":0.1500,"attemptsMade":1,"id":667915751,
"uri":"https://rest.interfax.net/outbound/faxes/667915751","status":0}"""

SUMMARY = b"""[{"userId":"u","pagesSent":2,"completionTime":"2016-10-03T00:36:36",
"remoteCSID":"X","duration":41,"priority":5,"units":2.00,"costPerUnit":0.1500,
"attemptsMade":1,"id":667915471,"uri":"https://rest.interfax.net/outbound/faxes/667915471",
"status":3931,"somethingNew":{"a":1}}]"""

INBOUND = b"""{"userId":"u","messageId":292626603,"phoneNumber":"2084978672",
"remoteCSID":"Interfax","messageStatus":0,"pages":1,"messageSize":37194,"messageType":1,
"receiveTime":"2016-09-30T12:54:26","callerId":null,"recordingDuration":60,
"imageStatus":"UNREAD","numOfEmails":1,"numOfFailedEmails":0}"""

SESSION = b"""{"userId":"u","fileName":"big.pdf","fileSize":9147,"uploaded":9147,
"uri":"https://rest.interfax.net/outbound/documents/deca890355b44b42944970d9773962b5",
"creationTime":"2016-10-03T00:36:41","lastusageTime":"2016-10-03T00:40:00",
"status":"Ready","disposition":"SingleUse","sharing":"Private"}"""


def test_a_full_outbound_record_parses_with_every_live_field_name() -> None:
    fax = OutboundFax.from_json(parse_json(FULL))
    assert fax.id == 667915751
    assert fax.status == 0
    assert fax.is_success
    assert fax.is_final
    assert fax.submit_time == datetime(2016, 10, 3, 0, 36, 41, tzinfo=UTC)
    assert fax.completion_time == datetime(2016, 10, 3, 0, 36, 36, tzinfo=UTC)
    assert fax.destination_fax == "00442084978672"
    assert fax.sender_csid == fax.remote_csid == "Interfax"
    assert (fax.contact, fax.subject, fax.reply_email) == (None, None, "")
    assert (fax.page_size, fax.resolution, fax.page_resolution) == ("A4", "Standard", "Standard")
    assert (fax.page_orientation, fax.rendering, fax.page_header) == ("Portrait", "Fine", "0")
    assert (fax.pages_submitted, fax.pages_sent, fax.attempts_to_perform) == (1, 1, 4)
    assert (fax.duration, fax.priority, fax.attempts_made, fax.user_id) == (41, 2, 1, "devexp-java")
    assert str(fax.units) == "1.00"
    assert str(fax.cost_per_unit) == "0.1500"
    assert fax.cost == Decimal("0.15")
    assert "successfully" in fax.description


def test_summary_records_leave_full_only_fields_none_and_ignore_unknown_fields() -> None:
    (fax,) = list_parser(OutboundFax.from_json, "completed")(parse_json(SUMMARY))
    assert (fax.id, fax.status, fax.is_success, fax.is_final) == (667915471, 3931, False, True)
    assert fax.pages_sent == 2
    assert fax.cost == Decimal("0.3")
    assert fax.submit_time is None
    assert fax.destination_fax is None
    assert fax.page_size is None
    assert "busy" in fax.description.lower()


def test_models_are_frozen() -> None:
    fax = OutboundFax.from_json({"id": 1, "status": -2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        fax.status = 0  # type: ignore[misc]


def test_an_inbound_record_parses_with_every_live_field_name() -> None:
    fax = InboundFax.from_json(parse_json(INBOUND))
    assert fax.message_id == 292626603
    assert fax.phone_number == "2084978672"
    assert fax.remote_csid == "Interfax"
    assert fax.caller_id is None
    assert (fax.message_status, fax.pages, fax.message_size, fax.message_type) == (0, 1, 37194, 1)
    assert fax.receive_time == datetime(2016, 9, 30, 12, 54, 26, tzinfo=UTC)
    assert (fax.recording_duration, fax.num_of_emails, fax.num_of_failed_emails) == (60, 1, 0)
    assert fax.image_status == "UNREAD"
    assert not fax.is_read


def test_forwarding_emails_parse_from_an_array() -> None:
    raw = b'[{"emailAddress":"a@b.c","messageStatus":0,"completionTime":"2012-06-23T17:24:11"},'
    raw += b'{"emailAddress":"d@e.f","messageStatus":-1,"completionTime":null}]'
    first, second = list_parser(ForwardingEmail.from_json, "emails")(parse_json(raw))
    assert first == ForwardingEmail("a@b.c", 0, datetime(2012, 6, 23, 17, 24, 11, tzinfo=UTC))
    assert second.completion_time is None
    assert second.message_status == -1


def test_an_upload_session_takes_its_id_from_the_uri_and_reads_lastusage_time() -> None:
    session = UploadSession.from_json(parse_json(SESSION))
    assert session.id == "deca890355b44b42944970d9773962b5"
    assert session.is_ready
    assert session.file_size == session.uploaded == 9147
    assert session.last_usage_time == datetime(2016, 10, 3, 0, 40, tzinfo=UTC)
    assert (session.disposition, session.sharing, session.file_name) == (
        "SingleUse",
        "Private",
        "big.pdf",
    )


def test_the_balance_is_a_bare_decimal() -> None:
    assert parse_decimal(parse_json(b"3.8500")) == Decimal("3.8500")
    assert str(parse_decimal(parse_json(b"10.0000"))) == "10.0000"
    assert parse_decimal(parse_json(b"12")) == Decimal(12)
    for bad in (b'{"credits": 1}', b'"3.85"', b"true", b""):
        with pytest.raises(ModelError):
            parse_decimal(parse_json(bad))


def test_a_dotnet_min_value_timestamp_means_not_yet() -> None:
    fax = OutboundFax.from_json({"id": 1, "status": -1, "completionTime": "0001-01-01T00:00:00"})
    assert fax.completion_time is None


def test_timestamps_without_zone_are_gmt_and_zoned_ones_are_converted() -> None:
    assert parse_timestamp("2016-10-03T00:36:41") == datetime(2016, 10, 3, 0, 36, 41, tzinfo=UTC)
    assert parse_timestamp("2016-10-03T02:36:41+02:00") == datetime(
        2016, 10, 3, 0, 36, 41, tzinfo=UTC
    )
    assert parse_timestamp("2016-10-03T00:36:41Z").tzinfo is UTC
    with pytest.raises(ModelError, match="ISO-8601"):
        parse_timestamp("03/10/2016 00:36:41")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"status": 0}, "'id'"),
        ({"id": 1}, "'status'"),
        ({"id": "1", "status": 0}, "integer"),
        ({"id": True, "status": 0}, "integer"),
        ({"id": 1.5, "status": 0}, "integer"),
        ({"id": 1, "status": 0, "units": "1.00"}, "number"),
        ({"id": 1, "status": 0, "contact": 5}, "string"),
        ({"id": 1, "status": 0, "submitTime": "yesterday"}, "ISO-8601"),
        ([], "JSON object"),
    ],
)
def test_wrong_shapes_are_model_errors_naming_the_field(raw: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        OutboundFax.from_json(raw)


def test_a_list_endpoint_answering_an_object_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="JSON array"):
        list_parser(InboundFax.from_json, "inbound")({"messageId": 1})


def test_inbound_image_extension_follows_the_content_type() -> None:
    assert InboundImage(b"%PDF", "application/pdf").extension == "pdf"
    assert InboundImage(b"II*\0", "image/tiff").extension == "tiff"
    assert "data" not in repr(InboundImage(b"secret", "application/pdf"))

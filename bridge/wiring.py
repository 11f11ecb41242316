"""From a validated :class:`~bridge.config.Config` to each component's own settings.

Kept apart from :mod:`bridge.service` so the lifecycle code reads as a lifecycle, and
so reload can rebuild exactly the parts that may change while running.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bridge import metrics
from bridge.config import Config
from bridge.config_schema import ImapConnection
from bridge.faxmodels import FitToPage, Orientation, PageSize, Rendering, Resolution
from bridge.faxoptions import BodyMode, FaxDefaults
from bridge.inbound_settings import InboundSettings
from bridge.inbound_settings import required_templates as inbound_templates
from bridge.interfax import InterfaxClient
from bridge.jobs import Job
from bridge.mailbuild import MailAddress
from bridge.mailer import RelaySecurity, RelaySettings
from bridge.mailmodel import MailRefusal, ParseLimits
from bridge.mailparse import parse_message
from bridge.message_to_fax import (
    FaxBuildFailure,
    FaxBuildSettings,
    UnsupportedAttachments,
    build_fax_request,
)
from bridge.numbers import display_number
from bridge.outbound import Builder, BuildFailed, Submission, SubmitSettings
from bridge.render import TemplateRenderer
from bridge.reports import Notify, ReportSettings
from bridge.smtp_server import ListenerSettings
from bridge.store import Store

if TYPE_CHECKING:
    from bridge.imap_delivery import ImapDelivery
    from bridge.imap_intake import ImapIntakeWorker
    from bridge.imap_refusal import MailRefusalNotifier
    from bridge.intake import Intake
    from bridge.mailer import Mailer

#: Templates every installation must be able to render (checked at start and reload).
REQUIRED_TEMPLATES = ("cover.html.j2", "report.txt.j2", "report.html.j2", "status.html.j2")


def renderer(config: Config) -> TemplateRenderer:
    """The template renderer, with every template ``config`` may use compiled once."""
    result = TemplateRenderer(config.templates_dir)
    result.check(*REQUIRED_TEMPLATES, *inbound_templates(config))
    return result


def inbound_settings(config: Config) -> InboundSettings:
    """The fax-to-email side's settings."""
    return InboundSettings.from_config(config, sender=mail_sender(config))


def parse_limits(config: Config) -> ParseLimits:
    """Bounds for parsing one accepted message."""
    return ParseLimits(max_message_bytes=config.smtp_server.max_message_size)


def fax_defaults(config: Config) -> FaxDefaults:
    """Per-message option defaults (``outbound.defaults`` and ``outbound.body``)."""
    d = config.outbound.defaults
    return FaxDefaults(
        resolution=Resolution(d.resolution) if d.resolution else None,
        page_size=PageSize(d.page_size) if d.page_size else None,
        orientation=Orientation(d.orientation) if d.orientation else None,
        fit_to_page=FitToPage(d.fit_to_page) if d.fit_to_page else None,
        rendering=Rendering(d.rendering) if d.rendering else None,
        csid=d.csid,
        page_header=d.page_header,
        retries=d.retries,
        body=BodyMode(config.outbound.body),
    )


def fax_builder(config: Config, templates: TemplateRenderer) -> Builder:
    """The pure function that turns a queued job's message into what InterFAX gets."""
    settings = FaxBuildSettings(
        renderer=templates,
        timezone=config.tzinfo,
        defaults=fax_defaults(config),
        unsupported_attachments=UnsupportedAttachments(config.outbound.unsupported_attachments),
    )
    limits = parse_limits(config)

    def build(job: Job, raw: bytes) -> Submission | BuildFailed:
        parsed = parse_message(raw, limits=limits)
        if isinstance(parsed, MailRefusal):
            return BuildFailed("malformed", parsed.reason)
        request = build_fax_request(
            parsed,
            destination_display=display_number(job.destination),
            settings=settings,
            # Options were valid when the message was accepted; retries must not make a
            # postpone time "in the past" and fail the fax.
            now=datetime.fromtimestamp(job.created_at, UTC),
        )
        if isinstance(request, FaxBuildFailure):
            return BuildFailed(str(request.kind), request.reason, request.subject)
        return Submission(
            documents=request.documents,
            options=request.options,
            subject=request.visible_subject,
            skipped=tuple(f"{s.filename}: {s.reason}" for s in request.skipped_attachments),
        )

    return build


def submit_settings(config: Config) -> SubmitSettings:
    """Retry and reconciliation timing."""
    return SubmitSettings(
        max_submit_age=config.outbound.max_submit_age,
        in_doubt_grace=config.outbound.in_doubt_grace,
    )


def mail_sender(config: Config) -> MailAddress:
    """Who our mail comes from (``mail.from``, or a name under the fax domain)."""
    address = config.mail.from_ or f"fax-bridge@{config.smtp_server.fax_domain}"
    return MailAddress(address, "Fax Bridge")


def report_settings(config: Config) -> ReportSettings:
    """How reports to senders look and when they are sent."""
    sender = mail_sender(config)
    return ReportSettings(
        sender=sender,
        notify=Notify(config.outbound.notify),
        timezone=config.tzinfo,
        message_id_domain=sender.domain,
        attach_sent_image=config.outbound.attach_sent_image,
    )


def relay_settings(config: Config) -> RelaySettings:
    """The outgoing relay."""
    relay = config.mail.relay
    security = (
        RelaySecurity.TLS
        if relay.implicit_tls
        else RelaySecurity.STARTTLS
        if relay.starttls
        else RelaySecurity.NONE
    )
    return RelaySettings(
        host=relay.host,
        port=relay.port,
        security=security,
        username=relay.username,
        password=relay.password.reveal() if relay.password is not None else None,
        timeout=relay.timeout,
        ca_file=relay.ca_bundle,
    )


def listener_settings(config: Config) -> ListenerSettings | None:
    """The SMTP listener, or None when ``smtp_server.listen`` is empty."""
    smtp = config.smtp_server
    if smtp.listen is None:
        return None
    return ListenerSettings(
        host=smtp.listen.host,
        port=smtp.listen.port,
        max_message_size=smtp.max_message_size,
        trusted_networks=tuple(smtp.trusted_networks),
        hostname=smtp.fax_domain,
        tls_cert=smtp.tls_cert,
        tls_key=smtp.tls_key,
    )


def interfax_client(config: Config) -> InterfaxClient:
    """The pooled InterFAX client."""
    ifx = config.interfax
    return InterfaxClient(
        ifx.base_url,
        ifx.username,
        ifx.password.reveal(),
        timeout=ifx.timeout,
        ca_bundle=ifx.ca_bundle,
        max_connections=ifx.max_connections,
        upload_threshold=ifx.upload_threshold,
        observer=metrics.observe_interfax,
    )


def imap_delivery(section: ImapConnection) -> ImapDelivery:
    """APPEND into the ``imap_out`` mailbox (``deliver: imap`` routes)."""
    from bridge.imap import ImapSettings
    from bridge.imap_delivery import ImapDelivery

    return ImapDelivery(ImapSettings.from_config(section))


def refusal_notifier(config: Config, mailer: Mailer) -> MailRefusalNotifier:
    """Reports refused mailbox fax requests to their (authorised) senders."""
    from bridge.imap_refusal import MailRefusalNotifier

    return MailRefusalNotifier(
        mailer, mail_sender(config), fax_domain=config.smtp_server.fax_domain
    )


def imap_intake(
    config: Config, store: Store, intake: Intake, notifier: MailRefusalNotifier
) -> ImapIntakeWorker:
    """The worker taking fax requests from the ``imap_in`` mailbox."""
    from bridge.imap_intake import ImapIntakeSettings, ImapIntakeWorker

    assert config.imap_in is not None
    settings = ImapIntakeSettings.from_config(config.imap_in)
    return ImapIntakeWorker(store, intake, settings, notify_refusal=notifier)

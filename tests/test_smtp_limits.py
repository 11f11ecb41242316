"""Rate limits in the SMTP dialogue: ``450 4.7.1`` when exceeded, kept across a restart."""

from __future__ import annotations

from pathlib import Path

from tests.bridge_harness import ALICE
from tests.smtp_kit import FAX, bridge_with, mail, on_disk
from tests.smtp_probe import SmtpProbe, SmtpReply

RATE_LIMITED = "450 4.7.1 Fax rate limit reached, please try again later"
BOB = "bob@lawfirm.example"


async def _offer(
    port: int, n: int, sender: str = ALICE, rcpts: tuple[str, ...] = (FAX,)
) -> SmtpReply:
    """Offer message number ``n`` (its own Message-ID) from ``sender``."""
    async with await SmtpProbe.open(port) as probe:
        await probe.ehlo()
        assert (await probe.mail(sender)).code == 250
        for rcpt in rcpts:
            assert (await probe.rcpt(rcpt)).code == 250
        raw = mail(from_=sender, message_id=f"<rate-{n}@clinic.example.org>")
        return await probe.data(raw)


def _senders(tmp_path: Path) -> list[str]:
    return sorted(job["sender"] for job in on_disk(tmp_path / "state").jobs)


async def test_per_sender_hourly_limit_answers_450_4_7_1_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    limits = {"rate_limits": {"per_sender": {"per_hour": 2}}}
    async with bridge_with(tmp_path, outbound=limits) as bridge:
        assert (await _offer(bridge.smtp_port, 1)).status == "250 2.0.0"
        assert (await _offer(bridge.smtp_port, 2)).status == "250 2.0.0"
        assert str(await _offer(bridge.smtp_port, 3)) == RATE_LIMITED
    # A new service on the same state directory: the count was kept on disk.
    async with bridge_with(tmp_path, outbound=limits) as bridge:
        assert str(await _offer(bridge.smtp_port, 4)) == RATE_LIMITED
        # The limit is per sender: somebody else may still send.
        assert (await _offer(bridge.smtp_port, 5, sender=BOB)).status == "250 2.0.0"
    assert _senders(tmp_path) == [ALICE, ALICE, BOB]


async def test_global_hourly_limit_counts_every_sender(tmp_path: Path) -> None:
    limits = {"rate_limits": {"global": {"per_hour": 2}}}
    async with bridge_with(tmp_path, outbound=limits) as bridge:
        assert (await _offer(bridge.smtp_port, 1)).code == 250
        assert (await _offer(bridge.smtp_port, 2, sender=BOB)).code == 250
        assert str(await _offer(bridge.smtp_port, 3, sender="carol@lawfirm.example")) == (
            RATE_LIMITED
        )
    assert _senders(tmp_path) == [ALICE, BOB]


async def test_a_message_whose_recipients_exceed_the_limit_is_refused_whole(
    tmp_path: Path,
) -> None:
    limits = {"rate_limits": {"per_sender": {"per_hour": 2}}}
    three = (FAX, "+12025550111@fax.local", "+12025550122@fax.local")
    async with bridge_with(tmp_path, outbound=limits) as bridge:
        assert str(await _offer(bridge.smtp_port, 1, rcpts=three)) == RATE_LIMITED
        assert (await _offer(bridge.smtp_port, 2, rcpts=three[:2])).code == 250
    assert _senders(tmp_path) == [ALICE, ALICE]


async def test_changing_the_case_of_the_sender_does_not_buy_a_new_quota(tmp_path: Path) -> None:
    limits = {"rate_limits": {"per_sender": {"per_hour": 2}}}
    local, _, domain = ALICE.partition("@")
    shouting = f"{local.upper()}@{domain}"
    async with bridge_with(tmp_path, outbound=limits) as bridge:
        assert (await _offer(bridge.smtp_port, 1)).code == 250
        assert (await _offer(bridge.smtp_port, 2, sender=shouting)).code == 250
        assert str(await _offer(bridge.smtp_port, 3, sender=local.title() + "@" + domain)) == (
            RATE_LIMITED
        )

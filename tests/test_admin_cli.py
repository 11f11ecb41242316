"""The operator commands, run as real subprocesses against the service's database."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bridge.jobs import JobState, MessageSource, NewJob
from bridge.sandbox.server import RunningSandbox
from bridge.store import Store
from tests.bridge_harness import ALICE, bridge_yaml
from tests.conftest import SandboxControl
from tests.smtp_sink import RunningSink, running_sink


async def fax_bridge(*args: str) -> tuple[int, str, str]:
    """Run ``python -m bridge ARGS``; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def sink() -> AsyncIterator[RunningSink]:
    async with running_sink() as s:
        yield s


@pytest.fixture
def config_file(tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        bridge_yaml(tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port)
    )
    return path


async def _accepted_job(state_dir: Path) -> int:
    async with await Store.open(state_dir) as store:
        result = await store.accept_message(
            b"From: alice@clinic.example.org\r\nSubject: x\r\n\r\nhello\r\n",
            source=MessageSource.SMTP,
            mail_from=ALICE,
            from_header=ALICE,
            message_id_header="<cli@test>",
            recipients=[NewJob("+12125550100", ALICE)],
            now=1000.0,
        )
        return result.created[0].id


async def test_queue_list_and_show_print_jobs_for_people_and_scripts(
    config_file: Path, tmp_path: Path
) -> None:
    job_id = await _accepted_job(tmp_path / "state")
    code, out, _ = await fax_bridge("queue", "list", "-c", str(config_file))
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "STATE", "DESTINATION"]
    assert out.splitlines()[1].split()[:3] == [str(job_id), "accepted", "+12125550100"]
    code, out, _ = await fax_bridge("queue", "show", str(job_id), "-c", str(config_file), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["destination"] == "+12125550100"
    assert shown["state"] == "accepted"


async def test_queue_cancel_of_a_queued_job_cancels_it_locally(
    config_file: Path, tmp_path: Path
) -> None:
    job_id = await _accepted_job(tmp_path / "state")
    code, out, _ = await fax_bridge("queue", "cancel", str(job_id), "-c", str(config_file))
    assert code == 0, out
    async with await Store.open(tmp_path / "state") as store:
        job = await store.get_job(job_id)
    assert job is not None
    assert job.state is JobState.CANCELLED


async def test_queue_cancel_of_a_submitted_job_cancels_it_at_interfax(
    config_file: Path,
    tmp_path: Path,
    sandbox_control: SandboxControl,
    sandbox_api: object,
    make_pdf: Callable[..., bytes],
) -> None:
    import httpx

    assert isinstance(sandbox_api, httpx.AsyncClient)
    reply = await sandbox_api.post(
        "/outbound/faxes",
        params={"faxNumber": "+12125550100"},
        content=make_pdf(),
        headers={"Content-Type": "application/pdf"},
    )
    fax_id = int(reply.headers["Location"].rsplit("/", 1)[1])
    job_id = await _accepted_job(tmp_path / "state")
    async with await Store.open(tmp_path / "state") as store:
        await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=2000.0)
        await store.transition(
            job_id, expect=JobState.SUBMITTING, to=JobState.SUBMITTED, now=2000.0, fax_id=fax_id
        )
    code, out, _ = await fax_bridge("queue", "cancel", str(job_id), "-c", str(config_file))
    assert code == 0, out
    assert "cancelled at InterFAX" in out
    [fax] = [f for f in await sandbox_control.outbound() if f["id"] == fax_id]
    assert fax["status"] == 403


async def test_queue_retry_of_a_failed_job_queues_a_new_job_with_a_new_reference(
    config_file: Path, tmp_path: Path
) -> None:
    job_id = await _accepted_job(tmp_path / "state")
    async with await Store.open(tmp_path / "state") as store:
        await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=2000.0)
        await store.transition(job_id, expect=JobState.SUBMITTING, to=JobState.FAILED, now=2000.0)
        old = await store.get_job(job_id)
    code, out, _ = await fax_bridge("queue", "retry", str(job_id), "-c", str(config_file))
    assert code == 0
    assert "queued again as job" in out
    async with await Store.open(tmp_path / "state") as store:
        jobs = await store.jobs()
    assert old is not None
    [new] = [j for j in jobs if j.id != job_id]
    assert new.state is JobState.ACCEPTED
    assert new.reference != old.reference
    assert (new.destination, new.message_id) == (old.destination, old.message_id)


async def test_send_queues_files_through_the_same_policies(
    config_file: Path, tmp_path: Path, make_pdf: Callable[..., bytes]
) -> None:
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(make_pdf())
    code, out, _ = await fax_bridge(
        "send", "+1 212 555 0100", str(pdf), "--from", ALICE, "-c", str(config_file)
    )
    assert code == 0, out
    assert out.startswith("250 2.0.0")
    code, out, _ = await fax_bridge(
        "send", "+1 900 555 0100", str(pdf), "--from", ALICE, "-c", str(config_file)
    )
    assert code == 1
    assert out.startswith("553 5.7.1")
    code, out, _ = await fax_bridge(
        "send", "+12125550100", str(pdf), "--from", "mallory@evil.example", "-c", str(config_file)
    )
    assert code == 1
    assert out.startswith("550 5.7.1")
    async with await Store.open(tmp_path / "state") as store:
        jobs = await store.jobs()
    assert [job.destination for job in jobs] == ["+12125550100"]


async def test_balance_prints_the_account_balance(
    config_file: Path, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.set_balance("12.3400")
    code, out, _ = await fax_bridge("balance", "-c", str(config_file), "--json")
    assert code == 0
    assert json.loads(out) == {"balance": "12.3400"}


async def test_probe_names_what_works_and_what_fails(
    config_file: Path, tmp_path: Path, sandbox: RunningSandbox
) -> None:
    code, out, _ = await fax_bridge("check-config", "--probe", "-c", str(config_file))
    assert code == 0, out
    assert "ok      InterFAX credentials: balance" in out
    assert "ok      mail relay" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        bridge_yaml(tmp_path / "state", interfax_url=sandbox.base_url, relay_port=1).replace(
            "password: secret", "password: wrong"
        )
    )
    code, out, _ = await fax_bridge("check-config", "--probe", "-c", str(broken))
    assert code == 1
    assert "FAILED  InterFAX credentials" in out
    assert "FAILED  mail relay: relay unreachable" in out


async def test_version_prints_the_package_version() -> None:
    from bridge import __version__

    code, out, _ = await fax_bridge("version")
    assert (code, out.strip()) == (0, f"fax-bridge {__version__}")


async def test_inbound_list_and_redeliver_send_the_fax_again_with_a_new_message_id(
    tmp_path: Path,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    sink: RunningSink,
    make_pdf: Callable[..., bytes],
) -> None:
    from tests.bridge_harness import load, running_bridge

    text = bridge_yaml(
        tmp_path / "state",
        interfax_url=sandbox.base_url,
        relay_port=sink.port,
        extra="inbound:\n  poll_interval: 0.2s\n  default_route: [frontdesk@clinic.example.org]\n",
    )
    config_file = tmp_path / "inbound.yaml"
    config_file.write_text(text)
    async with running_bridge(load(text, tmp_path)):
        message_id = await sandbox_control.receive_fax(make_pdf(), phone_number="+12125550100")
        [first] = await sink.handler.wait_for(1)
        code, out, _ = await fax_bridge("inbound", "list", "-c", str(config_file), "--json")
        assert code == 0
        [listed] = json.loads(out)
        assert listed["message_id"] == message_id
        assert listed["deliveries"][0]["state"] == "delivered"
        code, out, _ = await fax_bridge(
            "inbound", "redeliver", str(message_id), "-c", str(config_file)
        )
        assert code == 0, out
        second = (await sink.handler.wait_for(2))[1]
    assert second.rcpt_tos == first.rcpt_tos == ["frontdesk@clinic.example.org"]
    assert second.parsed()["Message-ID"] != first.parsed()["Message-ID"]
    assert [p.get_content() for p in second.parsed().iter_attachments()] == [
        p.get_content() for p in first.parsed().iter_attachments()
    ]


async def test_queue_cancel_of_an_in_doubt_job_cancels_the_fax_it_may_have_created(
    config_file: Path,
    tmp_path: Path,
    sandbox_control: SandboxControl,
    sandbox_api: object,
    make_pdf: Callable[..., bytes],
) -> None:
    import httpx

    assert isinstance(sandbox_api, httpx.AsyncClient)
    job_id = await _accepted_job(tmp_path / "state")
    async with await Store.open(tmp_path / "state") as store:
        job = await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=2000.0)
        assert job is not None
        await store.transition(job_id, expect=JobState.SUBMITTING, to=JobState.IN_DOUBT, now=2000.0)
    # The lost POST did create the fax, under the job's reference.
    reply = await sandbox_api.post(
        "/outbound/faxes",
        params={"faxNumber": "+12125550100", "reference": job.reference},
        content=make_pdf(),
        headers={"Content-Type": "application/pdf"},
    )
    fax_id = int(reply.headers["Location"].rsplit("/", 1)[1])
    code, out, _ = await fax_bridge("queue", "cancel", str(job_id), "-c", str(config_file))
    assert code == 0, out
    assert f"fax {fax_id} at InterFAX" in out
    [fax] = [f for f in await sandbox_control.outbound() if f["id"] == fax_id]
    assert fax["status"] == 403
    code, out, err = await fax_bridge("queue", "cancel", "999", "-c", str(config_file))
    assert (code, err.strip()) == (1, "error: no job 999")


def _listen_on(config_file: Path, port: int) -> None:
    text = config_file.read_text()
    config_file.write_text(text.replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{port}"))


async def test_run_with_its_smtp_port_taken_says_so_in_one_line(config_file: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        _listen_on(config_file, taken.getsockname()[1])
        code, _, err = await fax_bridge("run", "-c", str(config_file))
    assert code == 1
    assert "cannot start:" in err
    assert "Traceback" not in err

"""Secrets never stored or passed on; text from the server is data (issue 37).

An API that turns hostile is the small proxy of `tests/hostile.py` in front of the emulator on
127.0.0.1: it answers 401 echoing the bearer token and every secret it can, or renames the
account's captures with escape sequences, BEL and line breaks.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from teleport_sync.emulator.faults import EmulatorConfig
from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.events.webhooks import WebhookReceiver, apply_delivery
from teleport_sync.journal import Journal, Source
from teleport_sync.logging import configure_logging, get_logger
from teleport_sync.models import FileIdentity
from teleport_sync.results.actions import hook_environment

from .conftest import write_config
from .helpers import MIB, make_zip, wait_for
from .hostile import Answer, HostileProxy
from .sink import Sink
from .test_cli import run_cli
from .test_daemon import Running, settings_for
from .test_replaced_inputs import Station
from .test_webhooks import SECRET, signed

WEBHOOK_SECRET = "whsec-hostile-5f1d2c3b4a"
CONSOLE_TOKEN = "console-token-9e8d7c6b5a"
HOSTILE = "\x1b[2J\x1b]0;pwned\x07ding\x07\nfake-eid  fake-row  READY\r[bold red]markup[/]"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(seed=137, chunk_size=5 * MIB, processing_delay_seconds=0.2)


# -- secrets -------------------------------------------------------------------------------------


def echo_every_secret(emulator: EmulatorServer) -> Answer | None:
    """What a hostile API answers to every API call: 401, quoting what it was sent."""

    def answer(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if not path.startswith("/api/"):
            return None  # the token endpoint works: the token is issued, then echoed
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        said = (
            f"token {token} is not valid here (raw), as header: "
            f"{headers.get('Authorization')}; your secret {emulator.config.client_secret}, "
            f"webhook secret {WEBHOOK_SECRET}, console {CONSOLE_TOKEN}, "
            "see https://bucket.s3.example/x?X-Amz-Signature=0123456789abcdef&X-Amz-Credential=AK"
        )
        return 401, {"Content-Type": "application/json"}, json.dumps({"detail": said}).encode()

    return answer  # type: ignore[return-value]


def test_a_401_echoing_the_token_leaves_no_secret_in_the_journal_status_or_health(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    with HostileProxy(emulator.url) as proxy, Sink() as sink:
        proxy.answer = echo_every_secret(emulator)  # type: ignore[assignment]
        settings = settings_for(
            emulator,
            tmp_path,
            webhooks={"secret": WEBHOOK_SECRET},
            web={"token": CONSOLE_TOKEN},
            notify=[{"url": sink.url}],
        )
        settings.api.base_url = proxy.url
        settings.api.auth_url = proxy.token_url
        with Running(settings):
            make_zip(settings.watch.paths[0] / "scan.zip", images=3)

            def failed() -> bool:
                with Journal(settings.journal.path) as journal:
                    return any(r.error for r in journal.all_files())

            wait_for(failed, 30, "the upload fails on the 401")
            wait_for(lambda: bool(sink.received), 30, "the auth notification")
            config = write_config(tmp_path / "c.toml", emulator)
            status = run_cli("--config", str(config), "status", "--json")
            health = run_cli("--config", str(config), "health", "--json")
        stored = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
        sent = b"".join(r.body for r in sink.received)
    assert b"HTTP 401" in sent  # the auth notification quotes the error, masked
    tokens = list(emulator.backend.tokens)
    assert "HTTP 401" in json.loads(health.stdout)["auth"]["error"]  # masked below, not absent
    assert tokens, "a token was issued and then echoed"
    [row] = json.loads(status.stdout)
    assert "401" in row["error"] and "***" in row["error"]  # the error is there, masked
    secrets = [*tokens, emulator.config.client_secret, WEBHOOK_SECRET, CONSOLE_TOKEN]
    secrets.append("0123456789abcdef")  # the presigned signature
    for secret in secrets:
        for where, text in (("status", status.stdout), ("health", health.stdout)):
            assert secret not in text, f"{secret} in {where}"
        assert secret.encode() not in stored, f"{secret} in the journal's bytes"
        assert secret.encode() not in sent, f"{secret} in a notification"


def test_a_hook_gets_an_environment_from_the_allow_list(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "TELEPORT_SYNC_WEBHOOKS__SECRET": WEBHOOK_SECRET,
        "TELEPORT_SYNC_WEB__TOKEN": CONSOLE_TOKEN,
        "TELEPORT_SYNC_API__CLIENT_SECRET": emulator.config.client_secret,
        "CREDENTIALS_DIRECTORY": "/run/credentials/teleport-sync.service",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "LC_ALL": "C.UTF-8",
        "STUDIO_NAME": "north",
    }.items():
        monkeypatch.setenv(name, value)
    dump = tmp_path / "env.json"
    write = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
    settings = settings_for(
        emulator,
        tmp_path,
        actions={
            "on_ready": [sys.executable, "-c", write, str(dump)],
            # Asked for, but a TELEPORT_SYNC_* variable is never passed on.
            "pass_environment": ["STUDIO_NAME", "TELEPORT_SYNC_WEB__TOKEN"],
        },
    )
    station = Station(settings, emulator.url, emulator.token_url)
    try:
        record = station.upload(make_zip(station.inbox / "scan.zip", images=3))
        station.hear(record, "READY")
        assert station.actions.run_for(record)
    finally:
        station.close()
    env = json.loads(dump.read_text())
    assert not [n for n in env if n.startswith("TELEPORT_SYNC_") and n != "TELEPORT_SYNC_CONFIG"]
    assert "CREDENTIALS_DIRECTORY" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["STUDIO_NAME"] == "north" and env["LC_ALL"] == "C.UTF-8" and env["PATH"]
    assert env["TELEPORT_EID"] == record.eid and env["TELEPORT_STATE"] == "READY"


def test_the_allow_list_itself() -> None:
    given = {"PATH": "/bin", "LC_TIME": "C", "TELEPORT_SYNC_X": "s", "SECRET": "s", "HOME": "/h"}
    given["TELEPORT_SYNC_CONFIG"] = "/etc/teleport-sync/config.toml"  # a path: hooks may use it
    assert hook_environment(given, ["TELEPORT_SYNC_X"]) == {
        "PATH": "/bin",
        "LC_TIME": "C",
        "HOME": "/h",
        "TELEPORT_SYNC_CONFIG": "/etc/teleport-sync/config.toml",
    }


# -- text from the server is data -----------------------------------------------------------------


def test_captures_list_shows_hostile_names_and_states_as_text(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    def rename(path: str, body: bytes) -> bytes:
        if not path.startswith("/api/v1/captures"):
            return body
        data = json.loads(body)
        for item in data if isinstance(data, list) else data.get("captures", []):
            item["name"], item["state"] = HOSTILE, "READY\x1b[31m"
        return json.dumps(data).encode()

    with HostileProxy(emulator.url, rewrite=rename) as proxy:
        make_zip(tmp_path / "a.zip")
        config = write_config(tmp_path / "c.toml", emulator)
        assert run_cli("--config", str(config), "upload", str(tmp_path / "a.zip")).returncode == 0
        text = config.read_text().replace(emulator.url, proxy.url)
        config.write_text(text)
        listed = run_cli("--config", str(config), "captures", "list", env={"COLUMNS": "400"})
    assert listed.returncode == 0, listed.stderr
    assert not CONTROL.search(listed.stdout), repr(listed.stdout)
    assert "fake-row" in listed.stdout and "\\x1b[2J" in listed.stdout  # shown, escaped
    assert "[bold red]markup[/]" in listed.stdout  # markup printed as it is, not obeyed
    assert not any(line.startswith("fake-eid") for line in listed.stdout.splitlines())
    assert "1 capture(s)" in listed.stdout


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        yield journal


def uploaded(journal: Journal, eid: str) -> int:
    record = journal.register("/in/a.zip", FileIdentity(1, 2, 3, 4, "f"), "bulk-images", "a")
    journal.record_created(record.id, eid, 5 * MIB, 1)
    journal.mark_uploaded(record.id, "PROCESSING")
    return record.id


@pytest.mark.parametrize(
    "state", ["READY\x00", "READY\nFAILED", "\x1b[2JREADY", "READY NOW", "X" * 41]
)
def test_a_signed_webhook_whose_state_is_no_state_is_refused_and_not_stored(
    journal: Journal, state: str
) -> None:
    file_id = uploaded(journal, "e-1")
    before = journal.state_history(file_id)
    asked: list[str] = []

    def verify(eid: str) -> None:
        asked.append(eid)

    receiver = WebhookReceiver(
        "127.0.0.1:0",
        "/hook",
        SECRET,
        lambda got: apply_delivery(journal, got, verify, lambda r: None),  # type: ignore[arg-type]
    )
    receiver.start()
    try:
        host, port = receiver.address
        body = json.dumps({"eid": "e-1", "state": state, "sid": "s"}).encode()
        answer = httpx.post(f"http://{host}:{port}/hook", content=body, headers=signed(body))
    finally:
        receiver.close()
    assert answer.status_code == 400 and "is not a capture state" in answer.json()["message"]
    assert not CONTROL.search(answer.text)
    assert journal.state_history(file_id) == before and not asked
    assert journal.get(file_id).capture_state == "PROCESSING"


def test_a_listed_state_that_is_no_state_is_refused_and_an_unknown_one_followed(
    journal: Journal,
) -> None:
    file_id = uploaded(journal, "e-1")
    verdict = journal.observe_capture(file_id, "READY\n\x1b[2J", source=Source.POLL)
    assert verdict.outcome == "refused" and "\\x1b[2J" in str(verdict.note)
    assert [h["state"] for h in journal.state_history(file_id)] == ["PROCESSING"]
    # The API's set of states is open: a new, well-formed one is recorded and followed.
    assert journal.observe_capture(file_id, "QUEUED_FOR_GPU", source=Source.POLL).applied
    assert journal.get(file_id).capture_state == "QUEUED_FOR_GPU"


def test_error_texts_are_stored_escaped_and_log_lines_stay_one_line(journal: Journal) -> None:
    file_id = uploaded(journal, "e-1")
    journal.observe_capture(file_id, "FAILED", source=Source.POLL, error=f"bad input {HOSTILE}")
    error = str(journal.get(file_id).error)
    assert not CONTROL.search(error) and "\\x1b]0;pwned\\x07" in error and "\n" not in error
    stream = io.StringIO()
    configure_logging("INFO", "console", stream=stream)
    try:
        get_logger("test").warning("capture renamed", name=HOSTILE)
    finally:
        configure_logging("INFO", "console", stream=sys.stderr)
    line = stream.getvalue()
    assert line.count("\n") == 1 and not CONTROL.search(line) and "x1b]0;pwned" in line


def test_status_shows_a_hostile_file_name_as_text_in_its_viewer_line(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A file named with escapes and a newline: the table escaped it, but the viewer line below
    it printed the name raw (a forged line, a cleared screen on the operator's terminal)."""
    hostile = make_zip(tmp_path / "\x1b[2J\x1b]0;pwned\x07\nviewer of fake.zip: evil.zip")
    config = write_config(tmp_path / "c.toml", emulator)
    uploaded = run_cli("--config", str(config), "upload", "--follow", str(hostile))
    assert uploaded.returncode == 0, uploaded.stderr
    shown = run_cli("--config", str(config), "status", env={"COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    viewers = [line for line in shown.stdout.splitlines() if line.startswith("viewer of ")]
    assert len(viewers) == 1 and "\\x1b[2J" in viewers[0] and "/share/" in viewers[0], viewers
    assert not CONTROL.search(shown.stdout), repr(shown.stdout)

"""Junk on the listeners: the webhook receiver and the console answer a burst, a dropped or
slow client and garbage with one JSON log line each (never a traceback on stderr), queue a
burst of valid deliveries instead of resetting them, answer any out-of-range id with 404 and
redirect only to their own paths."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path

import httpx
import pytest

from teleport_sync.emulator.server import EmulatorServer
from teleport_sync.events.webhooks import Delivery, WebhookReceiver

from .sink import captured_log
from .test_daemon import Running, settings_for
from .test_webhooks import SECRET, signed


def request(body: bytes, path: str = "/hook") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in signed(body).items())
    return head.encode() + b"\r\n" + body


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def applied() -> list[Delivery]:
    return []


@pytest.fixture
def receiver(applied: list[Delivery]) -> Iterator[WebhookReceiver]:
    gate = threading.Lock()

    def apply(delivery: Delivery) -> str:
        with gate:
            applied.append(delivery)
        return "applied"

    server = WebhookReceiver("127.0.0.1:0", "/hook", SECRET, apply, request_seconds=2.0)
    server.start()
    yield server
    server.close()


def test_a_burst_of_500_deliveries_is_queued_and_answered_not_reset(
    receiver: WebhookReceiver, applied: list[Delivery]
) -> None:
    sockets = []
    try:
        for n in range(500):  # all connected and sent before the first answer is read
            sock = socket.create_connection(receiver.address, timeout=30)
            sock.sendall(request(json.dumps({"eid": f"e-{n}", "state": "READY"}).encode()))
            sockets.append(sock)
        answers = [sock.makefile("rb").readline() for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert answers == [b"HTTP/1.0 200 OK\r\n"] * 500
    assert sorted(d.eid for d in applied) == sorted(f"e-{n}" for n in range(500))


def test_dropped_slow_and_garbage_clients_are_log_lines_not_tracebacks(
    applied: list[Delivery],
) -> None:
    client_gone = threading.Event()

    def apply(delivery: Delivery) -> str:
        applied.append(delivery)
        client_gone.wait(10)  # answer only once the client has reset the connection
        return "applied"

    with captured_log("DEBUG") as log, redirect_stderr(io.StringIO()) as stderr:
        receiver = WebhookReceiver("127.0.0.1:0", "/hook", SECRET, apply, request_seconds=1.0)
        receiver.start()
        try:
            # Sends a delivery, then resets the connection before the answer: a broken pipe.
            rude = socket.create_connection(receiver.address)
            rude.sendall(request(b'{"eid": "e-1", "state": "READY"}'))
            while not applied:
                threading.Event().wait(0.01)
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            rude.close()
            client_gone.set()
            # Connects and says nothing until cut off; sends garbage; connects and leaves.
            slow = socket.create_connection(receiver.address)
            slow.sendall(b"POST /hook HTTP/1.1\r\n")
            assert slow.recv(100) == b""  # closed by the server after its second
            garbage = socket.create_connection(receiver.address)
            garbage.sendall(b"POST /hook HTTP/x.y\x16\x03\x01\r\n\r\n")
            assert b"Error code: 400" in garbage.makefile("rb").read()
            socket.create_connection(receiver.address).close()
            # Still answering.
            body = b'{"eid": "e-2", "state": "READY"}'
            answer = httpx.post(
                f"http://127.0.0.1:{receiver.address[1]}/hook", content=body, headers=signed(body)
            )
            assert answer.status_code == 200
        finally:
            receiver.close()
    lines = json_lines(log.getvalue())  # every line is JSON
    dropped = [line for line in lines if line["event"] == "webhook client dropped"]
    assert len(dropped) == 1 and dropped[0]["level"] == "info"  # the rude one
    assert str(dropped[0]["error"]).startswith(("BrokenPipeError", "ConnectionResetError"))
    # The slow one: one line, from the reaper or the read's own timeout, whichever came first.
    slow_lines = [
        line
        for line in lines
        if line.get("why") == "request not sent in time" or "timed out" in str(line.get("why"))
    ]
    assert len(slow_lines) == 1 and slow_lines[0]["level"] in ("info", "debug")
    # The garbage: one quiet line at debug.
    [bad] = [line for line in lines if "Bad request version" in str(line.get("why"))]
    assert (bad["event"], bad["level"]) == ("webhook request refused", "debug")
    assert stderr.getvalue() == ""


# -- the console -----------------------------------------------------------------------------


def test_the_console_answers_out_of_range_ids_with_404_and_garbage_with_a_log_line(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path, web={"listen": "127.0.0.1:0"})
    with (
        captured_log() as log,
        redirect_stderr(io.StringIO()) as stderr,
        Running(settings) as running,
    ):
        url = running.daemon.web_url
        assert url is not None
        huge = "99999999999999999999999"
        with httpx.Client(base_url=url, timeout=10) as http:
            for path in (
                f"/files/{huge}",
                f"/fragments/files/{huge}",
                f"/files/{huge}/thumbnail.png",
                f"/files/{huge}/preview",
                f"/files/1/preflight/{huge}.jpg",
                f"/files/{huge}/results/{huge}/model.ply",
                "/files/9223372036854775807",  # SQLite's largest integer: no such file
            ):
                assert http.get(path).status_code == 404, path
            page = http.get("/").text
            csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
            for bad in (huge, "²", "-1"):
                acted = http.post("/actions/forget", data={"file_id": bad, "csrf": csrf})
                assert acted.status_code == 303 and "refused=" in acted.headers["location"]
        garbage = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))))
        garbage.sendall(b"\x16\x03\x01\x00\xa5 not http\r\n\r\n")
        assert garbage.recv(100).startswith(b"HTTP/1.1 400")
        garbage.close()
    lines = json_lines(log.getvalue())
    refused = [line for line in lines if str(line["event"]).startswith("console client refused")]
    assert refused and all(line["level"] == "info" for line in refused)
    assert "Traceback" not in stderr.getvalue()
    assert "Invalid HTTP request" not in stderr.getvalue()


def test_the_console_login_redirects_only_to_its_own_paths(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    secret = "a-long-console-token-123"
    settings = settings_for(emulator, tmp_path, web={"listen": "127.0.0.1:0", "token": secret})
    with Running(settings) as running:
        url = running.daemon.web_url
        assert url is not None
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for path, expected in (
            ("//evil.example/", "/"),
            ("/\\evil.example/", "/"),
            ("/%2F%2Fevil.example/", "/"),
            ("/files", "/files"),
        ):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(
                    f"GET {path}?token={secret} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                answer = sock.makefile("rb").read().decode("latin-1")
            location = next(
                line.split(":", 1)[1].strip()
                for line in answer.splitlines()
                if line.lower().startswith("location:")
            )
            assert answer.startswith("HTTP/1.1 303") and location == expected, (path, location)


def test_a_length_that_is_not_ascii_digits_is_refused_with_411(receiver: WebhookReceiver) -> None:
    for length in ("²", "1³", "-1", "1e3"):  # headers are Latin-1: ² and ³ are digits there
        with socket.create_connection(receiver.address, timeout=10) as sock:
            sock.sendall(
                f"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode(
                    "latin-1"
                )
            )
            assert sock.makefile("rb").readline() == b"HTTP/1.0 411 Length Required\r\n", length

"""The web console's restart on a reload, branch by branch (the real restart, over a real
SIGHUP, is in test_health.py)."""

from __future__ import annotations

import os
from pathlib import Path

from teleport_sync.config import WebSettings
from teleport_sync.daemon.consolehost import ConsoleHost


class FakeServer:
    def __init__(self, listen: str, token: str | None) -> None:
        self.url = f"http://{listen}/"
        self.token = token
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


class Starts:
    """Starts fake consoles; an address in `taken` cannot be listened on."""

    def __init__(self, *taken: str) -> None:
        self.taken = set(taken)
        self.servers: list[FakeServer] = []

    def __call__(self, listen: str, token: str | None) -> FakeServer | None:
        if listen in self.taken:
            return None
        self.servers.append(FakeServer(listen, token))
        return self.servers[-1]


def test_an_unchanged_web_section_leaves_the_console_alone() -> None:
    starts = Starts()
    host = ConsoleHost(starts)
    host.start(WebSettings(listen="127.0.0.1:8765", token="t" * 20))
    assert not host.reload(WebSettings(listen="127.0.0.1:8765", token="t" * 20))
    assert len(starts.servers) == 1 and not starts.servers[0].stopped


def test_a_new_address_that_is_taken_keeps_the_old_console() -> None:
    starts = Starts("127.0.0.1:9000")
    host = ConsoleHost(starts)
    host.start(WebSettings(listen="127.0.0.1:8765"))
    assert not host.reload(WebSettings(listen="127.0.0.1:9000"))
    assert host.url == "http://127.0.0.1:8765/"
    assert [s.stopped for s in starts.servers] == [True, False]
    starts.taken.clear()  # the port was freed: the same config, reloaded again, now moves it
    assert host.reload(WebSettings(listen="127.0.0.1:9000"))
    assert host.url == "http://127.0.0.1:9000/"


def test_a_rewritten_token_file_restarts_and_a_loose_one_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token-value\n")
    os.chmod(token_file, 0o600)
    web = WebSettings(listen="127.0.0.1:8765", token_file=token_file)
    starts = Starts()
    host = ConsoleHost(starts)
    host.start(web)
    token_file.write_text("second-token-value\n")
    assert host.reload(web)
    assert starts.servers[-1].token == "second-token-value"
    os.chmod(token_file, 0o644)  # others may read it: refused, the console keeps running
    assert not host.reload(web)
    assert not starts.servers[-1].stopped and host.url is not None


def test_removing_listen_stops_the_console() -> None:
    starts = Starts()
    host = ConsoleHost(starts)
    host.start(WebSettings(listen="127.0.0.1:8765"))
    assert host.reload(WebSettings())
    assert host.url is None and starts.servers[0].stopped

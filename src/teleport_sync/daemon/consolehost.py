"""The web console as `[web]` says: started with the daemon, restarted by a reload (SIGHUP) that
changes its address or token, stopped with the daemon.

A restart stops the old server before binding the new one, so a reload may keep the port and
change only the token. The console only reads the journal and writes the same control rows the
CLI writes, so stopping it between two requests loses nothing; a page open in a browser simply
reconnects (or asks for the new token).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..config import ConfigError, WebSettings
from ..logging import get_logger

log = get_logger("teleport_sync.daemon")

# What the console serves with: its address and its token (None: the console is off).
Serving = tuple[str | None, str | None]


class Server(Protocol):
    url: str

    def stop(self) -> None: ...


# Starts a console on (listen, token); None when it cannot listen (it says why in the log).
StartConsole = Callable[[str, str | None], Server | None]


class ConsoleHost:
    def __init__(self, start: StartConsole) -> None:
        self._start = start
        self.server: Server | None = None
        self._serving: Serving = (None, None)

    def start(self, web: WebSettings) -> None:
        """At daemon start: a token file that cannot be read is a config error (raised)."""
        self._serve((web.listen, web.token_value()))

    def reload(self, web: WebSettings) -> bool:
        """A reloaded `[web]`: restart the console if its address or token changed (a token
        file is read again, so rewriting it is a change too). True if it now serves the new."""
        try:
            wanted = (web.listen, web.token_value())
        except ConfigError as exc:
            log.error("web console not reloaded; it keeps running as it was", error=str(exc))
            return False
        if wanted == self._serving:
            return False
        old = self._serving
        self.stop()
        self._serve(wanted)
        if self._serving == wanted:
            log.info("web console restarted" if wanted[0] else "web console stopped", url=self.url)
            return True
        if old[0] is not None:
            # The new address cannot be had (a port in use): keep the console reachable.
            self._serve(old)
            log.error("web console kept on its old address", listen=old[0], wanted=wanted[0])
        return False

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = None
        self._serving = (None, None)

    def _serve(self, serving: Serving) -> None:
        listen, token = serving
        self.server = self._start(listen, token) if listen else None
        self._serving = serving if self.server is not None else (None, None)

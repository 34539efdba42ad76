"""`teleport-sync demo`: the emulator, an inbox with two samples, the real daemon, live status."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from ..daemon import Daemon
from ..emulator.faults import MIB, EmulatorConfig
from ..emulator.server import EmulatorServer
from ..inputs.samples import write_demo_mp4, write_demo_zip
from ..journal import Journal
from ..logging import REDACTOR, configure_logging
from ..status.report import status_rows

# Three kinds of result: one file (ply), a zip of six (sogs-sh0), numbered chunks (fragment-*).
DEMO_PROFILES = ["ply", "sogs-sh0", "fragment-float16"]


def _table(rows: list[dict[str, object]]) -> Table:
    table = Table("file", "pre-flight", "upload", "parts", "capture", "history", "result")
    for row in rows:
        history = " → ".join(
            f"{h['state']} (webhook)" if h.get("source") == "webhook" else str(h["state"])
            for h in row["state_history"]  # type: ignore[union-attr]
            if h["applied"]
        )
        by_profile: dict[str, list[str]] = row.get("results_by_profile") or {}  # type: ignore[assignment]
        results = ", ".join(by_profile)
        parts = f"{row['parts_done']}/{row['num_parts']}" if row["num_parts"] else ""
        preflight: dict[str, object] = row.get("preflight") or {}  # type: ignore[assignment]
        table.add_row(
            Path(str(row["path"])).name,
            str(preflight.get("verdict", "")),
            str(row["upload_state"]),
            parts,
            str(row["capture_state"] or ""),
            history,
            results,
        )
    return table


def _done(rows: list[dict[str, object]], expected: int) -> bool:
    return len(rows) == expected and all(
        row["capture_state"] in ("READY", "FAILED")
        and (row["result_paths"] or row["capture_state"] == "FAILED")
        for row in rows
    )


def _console_listen(preferred: int = 8765) -> str:
    """127.0.0.1:8765 for the web console, or any free port when that one is taken."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return "127.0.0.1:0"
    return f"127.0.0.1:{preferred}"


def _linger(console: Console, until: threading.Event) -> None:
    """Keep the daemon, the emulator and the web console up for a look: until Ctrl-C, SIGTERM
    or `until` is set."""
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread (a test): `until` ends it
        previous = signal.signal(signal.SIGTERM, lambda *_: until.set())
    try:
        until.wait()
    except KeyboardInterrupt:
        console.print()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_demo(
    console: Console,
    *,
    timeout: float = 180.0,
    keep: bool = False,
    interactive: bool | None = None,
    until: threading.Event | None = None,
) -> int:
    """The whole loop in a temporary folder. On a terminal (`interactive`) or with `keep`, it
    stays up afterwards, web console included, until Ctrl-C; the folder is removed at the end
    unless `keep` (or the demo failed: it is kept for a look, and said)."""
    # Errors only: the live table and the summary say what happened (pre-flight's warning as a
    # log line too would say it twice).
    configure_logging("ERROR", "console")
    interactive = sys.stdin.isatty() if interactive is None else interactive
    stays_up = keep or interactive
    workdir = Path(tempfile.mkdtemp(prefix="teleport-sync-demo-"))
    after = "kept when the demo ends" if keep else "removed when the demo ends; --keep keeps it"
    console.print(f"[bold]teleport-sync demo[/] in {workdir} (a temporary folder, {after})")
    code = 1
    try:
        code = _demo(console, workdir, timeout, stays_up, until or threading.Event())
    finally:
        _clean_up(console, workdir, keep=keep or code != 0)
    if not stays_up and code == 0:
        console.print(
            "[dim]teleport-sync demo --keep keeps it (and its web console) up for a look.[/]"
        )
    return code


def _demo(
    console: Console, workdir: Path, timeout: float, stays_up: bool, until: threading.Event
) -> int:
    inbox = workdir / "inbox"
    (inbox / "site-b").mkdir(parents=True)
    # The emulator announces READY with a signed webhook, as Teleport does; polling is the
    # slower reconciler behind it.
    webhook_port = _free_port()
    config = EmulatorConfig(
        chunk_size=5 * MIB,
        processing_delay_seconds=4.0,
        webhook_url=f"http://127.0.0.1:{webhook_port}/teleport/webhook",
        webhook_secret=secrets.token_hex(16),
    )
    with EmulatorServer(config) as emulator:
        REDACTOR.add_secret(config.client_secret)
        # The web console only where it stays up for a look: never one that is gone seconds
        # after its address was printed.
        settings = _demo_settings(emulator, config, workdir, webhook_port, web=stays_up)
        config_file = _write_config_file(emulator, config, workdir)
        console.print(f"emulator: {emulator.url}  inbox: {inbox}\n")
        with _DaemonThread(settings) as daemon:
            if daemon.web_url:
                console.print(
                    f"[bold]web console:[/] {daemon.web_url}  (open it in a browser; it stays "
                    "up after the demo until you press Ctrl-C)\n"
                )
            console.print("dropping scan.zip and site-b/walkaround.mp4 into the inbox...\n")
            write_demo_zip(inbox / "scan.zip")
            write_demo_mp4(inbox / "site-b" / "walkaround.mp4")
            ok = _follow(console, settings, daemon.thread, timeout)
            _summary(console, settings, workdir, ok)
            if ok and stays_up:
                console.print(
                    f"\nUp until you press Ctrl-C (or send SIGTERM to {os.getpid()}): the web "
                    f"console at {daemon.web_url}, and the emulator, so this works meanwhile:\n"
                    f"  teleport-sync --config {config_file} status"
                )
                _linger(console, until)
    return 0 if ok else 1


class _DaemonThread:
    """The real daemon on a thread, stopped (and waited for) on the way out."""

    def __init__(self, settings: Settings) -> None:
        self._stop = threading.Event()
        self.daemon = Daemon(settings, stop=self._stop)
        self.thread = threading.Thread(target=self.daemon.run, name="daemon", daemon=True)

    @property
    def web_url(self) -> str | None:
        return self.daemon.web_url

    def __enter__(self) -> _DaemonThread:
        self.thread.start()
        self.daemon.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=15)


def _summary(console: Console, settings: Settings, workdir: Path, ok: bool) -> None:
    """What came of it, printed as soon as the loop ends (before any wait for Ctrl-C)."""
    if not ok:
        console.print("[bold red]the demo did not finish[/] (see the table above)")
        return
    console.print("\n[bold green]Both captures are READY and their models are downloaded.[/]")
    _print_preflight(console, settings)
    results = workdir / "results"
    console.print(f"  results in {results}:")
    for model in sorted(p for p in results.rglob("*") if p.is_file()):
        console.print(f"    {model.relative_to(results)} ({model.stat().st_size} bytes)")
    console.print(f"  journal: {settings.journal.path}")


def _clean_up(console: Console, workdir: Path, *, keep: bool) -> None:
    """Remove the demo's folder, or say it is kept, how to read it, and how to remove it."""
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
        console.print(f"\nRemoved the demo's folder {workdir}.")
        return
    console.print(
        f"\nKept the demo's folder {workdir} (remove it with: rm -r {workdir}). Its journal "
        f"still reads with: teleport-sync --config {workdir / 'config.toml'} status (the "
        "emulator stopped with the demo, so the viewer links it lists no longer open)."
    )


def _print_preflight(console: Console, settings: Settings) -> None:
    """What pre-flight said of the samples (a warning for the photos of a camera that stood
    still), or why it was off."""
    from ..preflight import load_decoders

    found = load_decoders()
    if not found.ok:
        console.print(f"  pre-flight: off ({found.reason})")
        return
    with Journal(settings.journal.path) as journal:
        for row in status_rows(journal):
            preflight = row.get("preflight") or {}
            verdict = preflight.get("verdict", "not checked")
            console.print(f"  pre-flight of {Path(row['path']).name}: {verdict}")
            for reason in preflight.get("reasons", []):
                console.print(f"    {escape(reason)}", highlight=False)
            posed = row.get("teleport_posed") or {}
            if posed.get("sentence"):  # what the (emulated) service did, beside the prediction
                console.print(f"    then: {escape(posed['sentence'])}", highlight=False)


def _demo_settings(
    emulator: EmulatorServer,
    config: EmulatorConfig,
    workdir: Path,
    webhook_port: int,
    *,
    web: bool,
) -> Settings:
    """The daemon's settings: the emulator's API, webhooks from it, every kind of result, and
    the web console when `web`."""
    settings = Settings(
        api={
            "base_url": emulator.url,
            "auth_url": emulator.token_url,
            "client_id": config.client_id,
            "timeout_seconds": 30,
        },
        watch={"paths": [workdir / "inbox"], "settle_seconds": 1.0},
        poll={"interval_seconds": 10.0},
        webhooks={"listen": f"127.0.0.1:{webhook_port}", "secret": config.webhook_secret},
        journal={"path": workdir / "journal.sqlite3"},
        results={"dir": workdir / "results", "profiles": DEMO_PROFILES, "previews": True},
        web={"listen": _console_listen()} if web else {},
    )
    settings.api.client_secret = SecretStr(config.client_secret)
    return settings


def _write_config_file(emulator: EmulatorServer, config: EmulatorConfig, workdir: Path) -> Path:
    """A config file with which `status` reads the demo's journal after the demo."""
    config_file = workdir / "config.toml"
    config_file.write_text(
        f'[api]\nbase_url = "{emulator.url}"\nauth_url = "{emulator.token_url}"\n'
        f'client_id = "{config.client_id}"\n\n'
        f'[journal]\npath = "{workdir / "journal.sqlite3"}"\n'
    )
    os.chmod(config_file, 0o600)
    return config_file


def _follow(console: Console, settings: Settings, thread: threading.Thread, timeout: float) -> bool:
    """The live table until both files are done (True if both READY), or the time is up."""
    deadline = time.monotonic() + timeout
    with (
        Journal(settings.journal.path) as journal,
        Live(_table([]), console=console, refresh_per_second=4) as live,
    ):
        while time.monotonic() < deadline and thread.is_alive():
            rows = status_rows(journal)
            live.update(_table(rows))
            if _done(rows, 2):
                return all(r["capture_state"] == "READY" for r in rows)
            time.sleep(0.25)
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

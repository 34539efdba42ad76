"""`teleport-sync demo`: the emulator, an inbox with two samples, the real daemon, live status."""

from __future__ import annotations

import os
import secrets
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


def _linger(console: Console, url: str) -> None:
    """Keep the daemon (and so the web console) up for a look, until Ctrl-C."""
    console.print(f"\nThe web console stays up at {url} until you press Ctrl-C.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print()


def run_demo(console: Console, *, timeout: float = 180.0) -> int:
    configure_logging("WARNING", "console")
    workdir = Path(tempfile.mkdtemp(prefix="teleport-sync-demo-"))
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
        settings = _demo_settings(emulator, config, workdir, webhook_port)
        config_file = _write_config_file(emulator, config, workdir)
        console.print(f"[bold]teleport-sync demo[/] in {workdir}")
        console.print(f"emulator: {emulator.url}  inbox: {inbox}\n")
        ok = _run_daemon(console, settings, inbox, timeout)

    if not ok:
        console.print("[bold red]the demo did not finish[/] (see the table above)")
        return 1
    console.print("\n[bold green]Both captures are READY and their models are downloaded.[/]")
    _print_preflight(console, settings)
    for model in sorted(p for p in (workdir / "results").rglob("*") if p.is_file()):
        console.print(f"  result:  {model} ({model.stat().st_size} bytes)")
    console.print(f"  journal: {settings.journal.path}")
    console.print(f"\nSee it again with:  teleport-sync --config {config_file} status")
    return 0


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
    emulator: EmulatorServer, config: EmulatorConfig, workdir: Path, webhook_port: int
) -> Settings:
    """The daemon's settings: the emulator's API, webhooks from it, every kind of result."""
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
        web={"listen": _console_listen()},
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


def _run_daemon(console: Console, settings: Settings, inbox: Path, timeout: float) -> bool:
    """The real daemon on a thread, two samples dropped in; True once both are READY."""
    stop = threading.Event()
    daemon = Daemon(settings, stop=stop)
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    thread.start()
    daemon.ready.wait(30)
    if daemon.web_url:
        # Off a terminal nobody can press Ctrl-C, so the console closes with the demo.
        lasts = "until you press Ctrl-C" if sys.stdin.isatty() else "while the demo runs"
        console.print(
            f"[bold]web console:[/] {daemon.web_url}  (open it in a browser; it is up {lasts})\n"
        )
    console.print("dropping scan.zip and site-b/walkaround.mp4 into the inbox...\n")
    write_demo_zip(inbox / "scan.zip")
    write_demo_mp4(inbox / "site-b" / "walkaround.mp4")
    ok = _follow(console, settings, thread, timeout)
    if ok and daemon.web_url and sys.stdin.isatty():
        _linger(console, daemon.web_url)
    stop.set()
    thread.join(timeout=15)
    return ok


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

"""A year-old station on a year-old account (issue 32): what following captures and reading a
big journal cost, for a source tree and for a baseline tree, in the same run.

    python bench/scale.py --baseline /tmp/base-e592fe7            # both trees, every size
    python bench/scale.py --baseline DIR --accounts 1000,20000 --rows 1000,50000

Account: the emulator (always this tree's: it has the `others_captures` knob and counts listing
requests) holds N captures of others; each tree's `upload --follow` sends three small zips and
follows them to READY. Figures: listing requests, and seconds from the first upload to the end.

Journal: a journal of R finished rows (each with a part and three states), made by each tree's
own schema, then each tree's `status`, `status --json`, the filters of both (`filtered`),
`health --json` (without and beside the running daemon), `forget PATH`, `forget --before`, the
daemon's start-up to ready, a metrics scrape, the console's files page, and the idle daemon's
CPU and RSS over ten seconds. Every figure prints beside its baseline and their ratio; the
commands' figures are medians of three runs, each tree's modules byte-compiled first (as an
installed copy is).

`--accounts ''` runs the journal's part alone.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPORT_SYNC_")}
    env["PYTHONPATH"] = str(tree / "src")
    return env


def cli(tree: Path, config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "teleport_sync", "--config", str(config), *args],
        env=env_for(tree),
        capture_output=True,
        text=True,
        check=check,
        timeout=3600,
    )


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median_of(runs: int, action: Callable[[], object]) -> float:
    """The median of `runs` timings: a shared machine's load moves single runs by 2x."""
    return sorted(timed(action) for _ in range(runs))[runs // 2]


class Emulator:
    def __init__(self, others: int, processing: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [PYTHON, "-m", "teleport_sync", "emulator", "--port", str(self.port)]
        knobs = {
            "others_captures": others,
            "processing_delay_seconds": processing,
            "client_secret": SECRET,
        }
        for name, value in knobs.items():
            args += ["--knob", f"{name}={value}"]
        self.process = subprocess.Popen(args, env=env_for(HERE), stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                httpx.get(f"{self.url}/_emulator/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the emulator did not start")

    def listings(self) -> int:
        return int(httpx.get(f"{self.url}/_emulator/stats", timeout=60).json()["listings"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def write_config(folder: Path, emulator_url: str, extra: str = "") -> Path:
    config = folder / "config.toml"
    config.write_text(
        f"""
[api]
base_url = "{emulator_url}"
auth_url = "{emulator_url}/oauth2/token"
client_id = "demo-client"
client_secret = "{SECRET}"
[watch]
paths = ["{folder / "inbox"}"]
[poll]
interval_seconds = 5.0
[journal]
path = "{folder / "journal.sqlite3"}"
[results]
download = false
{extra}
"""
    )
    config.chmod(0o600)
    (folder / "inbox").mkdir(exist_ok=True)
    return config


def small_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(3):
            archive.writestr(f"img_{i}.jpg", os.urandom(2048))
    return path


def account_run(tree: Path, others: int) -> dict[str, float]:
    emulator = Emulator(others, processing=15.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config = write_config(folder, emulator.url)
            files = [str(small_zip(folder / "inbox" / f"scan_{i}.zip")) for i in range(3)]
            before = emulator.listings()
            seconds = timed(lambda: cli(tree, config, "upload", "--follow", *files))
            return {"listings": emulator.listings() - before, "seconds": seconds}
    finally:
        emulator.stop()


# -- journal ---------------------------------------------------------------------------------


def make_journal(tree: Path, folder: Path, rows: int) -> Path:
    """A journal of `rows` finished files, schema by the tree's own code, rows in bulk."""
    path = folder / "journal.sqlite3"
    subprocess.run(
        [
            PYTHON,
            "-c",
            "from pathlib import Path; from teleport_sync.journal import Journal; "
            f"Journal(Path({str(path)!r})).close()",
        ],
        env=env_for(tree),
        check=True,
    )
    db = sqlite3.connect(path)
    at = "2026-01-01T00:00:00+00:00"
    db.executemany(
        "INSERT INTO files (id, path, dev, inode, size, mtime_ns, fingerprint, input_data_format,"
        " name, eid, sid, chunk_size, num_parts, upload_state, capture_state, created_at,"
        " updated_at, intent_at, actions_done) VALUES (?, ?, 1, ?, 4096, 1, 'f', 'bulk-images',"
        " ?, ?, ?, 4096, 1, 'uploaded', 'READY', ?, ?, ?, '[\"download\", \"notify\"]')",
        (
            (
                i,
                str(folder / "inbox" / f"scan_{i:06d}.zip"),
                i,
                f"scan_{i:06d}.zip",
                f"e{i:015d}",
                f"s{i}",
                at,
                at,
                at,
            )
            for i in range(1, rows + 1)
        ),
    )
    db.executemany(
        "INSERT INTO parts (file_id, number, size, md5, etag, acknowledged_at)"
        " VALUES (?, 1, 4096, 'm', 'e', ?)",
        ((i, at) for i in range(1, rows + 1)),
    )
    db.executemany(
        "INSERT INTO state_history (file_id, eid, state, observed_at) VALUES (?, ?, ?, ?)",
        (
            (i, f"e{i:015d}", state, at)
            for i in range(1, rows + 1)
            for state in ("UPLOADED", "PROCESSING", "READY")
        ),
    )
    db.commit()
    db.close()
    return path


def idle_figures(pid: int, seconds: float = 10.0) -> tuple[float, float]:
    """CPU seconds used over `seconds`, and RSS in MiB at the end."""

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    start = cpu()
    time.sleep(seconds)
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu() - start, rss


def _get(url: str) -> str:
    try:
        answer = httpx.get(url, timeout=120)
    except httpx.HTTPError:
        return ""
    return answer.text if answer.status_code == 200 else ""


def wait_until(ready: Callable[[], bool], started: float, limit: float = 600) -> float:
    """Seconds from `started` until `ready()`."""
    while not ready():
        if time.perf_counter() - started > limit:
            raise RuntimeError("the daemon did not get ready")
        time.sleep(0.05)
    return time.perf_counter() - started


def filtered(inbox: Path) -> dict[str, tuple[str, ...]]:
    """`status` with filters (figure: arguments): each keeps every row, or a few of them."""
    return {
        "status_json_phase_done": ("--json", "--phase", "done"),
        "status_json_since": ("--json", "--since", "2025-12-01"),  # every row
        "status_json_path_folder": ("--json", "--path", str(inbox)),  # every row
        "status_json_path_glob": ("--json", "--path", "*_00001?.zip"),  # ten rows
        "status_path_file": ("--path", str(inbox / "scan_000007.zip")),  # the table: one row
        "status_phase_done": ("--phase", "done"),  # the table: every row matches
    }


def journal_run(tree: Path, rows: int) -> dict[str, float]:
    emulator = Emulator(0, processing=1.0)
    out: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            metrics, web = free_port(), free_port()
            config = write_config(
                folder,
                emulator.url,
                f'[metrics]\nlisten = "127.0.0.1:{metrics}"\n[web]\nlisten = "127.0.0.1:{web}"\n',
            )
            make_journal(tree, folder, rows)
            out["status"] = median_of(3, lambda: cli(tree, config, "status"))
            out["status_json"] = median_of(3, lambda: cli(tree, config, "status", "--json"))
            out["health"] = median_of(3, lambda: cli(tree, config, "health", "--json", check=False))
            for figure, args in filtered(folder / "inbox").items():
                out[figure] = median_of(3, lambda args=args: cli(tree, config, "status", *args))
            started = time.perf_counter()
            daemon = subprocess.Popen(
                [PYTHON, "-m", "teleport_sync", "--config", str(config), "run"],
                env=env_for(tree),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                # Ready: the first report of the phases is on the metrics page (journal opened,
                # integrity checked, the folder scanned, the keeper's first count done).
                done = f'teleport_sync_phase{{phase="done"}} {float(rows)}'
                out["startup"] = wait_until(
                    lambda: done in _get(f"http://127.0.0.1:{metrics}/metrics"), started
                )
                wait_until(lambda: bool(_get(f"http://127.0.0.1:{web}/files")), started)
                # As monitoring asks it: beside the running daemon (which says whether
                # pre-flight is on, so the command need not import the decoders to find out).
                out["health_daemon"] = median_of(
                    3, lambda: cli(tree, config, "health", "--json", check=False)
                )
                out["scrape"] = timed(
                    lambda: httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=600)
                )
                out["files_page"] = timed(
                    lambda: httpx.get(f"http://127.0.0.1:{web}/files", timeout=600)
                )
                time.sleep(5)  # let the start-up's last work end
                out["idle_cpu_10s"], out["rss_mib"] = idle_figures(daemon.pid)
            finally:
                stopping = time.perf_counter()
                daemon.terminate()
                try:
                    daemon.wait(120)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
                out["stop"] = time.perf_counter() - stopping  # SIGTERM to exit (120: killed)
            # One finished row by its path (which has to be found among all of them).
            one = str(folder / "inbox" / "scan_000009.zip")
            out["forget_path"] = timed(lambda: cli(tree, config, "forget", one))
            out["forget_before"] = timed(
                lambda: cli(tree, config, "forget", "--before", "2026-06-01")
            )
    finally:
        emulator.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the baseline")
    parser.add_argument("--accounts", default="1000,20000,100000")
    parser.add_argument("--rows", default="1000,50000")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this": HERE}
    for tree in trees.values():  # as installed: pip compiles a wheel's modules once
        compileall.compile_dir(tree / "src" / "teleport_sync", quiet=1)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for others in [int(n) for n in args.accounts.split(",") if n]:
        for name, tree in trees.items():
            results.setdefault(f"account {others}", {})[name] = account_run(tree, others)
            print(f"account {others:>7} {name:>8}: {results[f'account {others}'][name]}")
    for rows in [int(n) for n in args.rows.split(",") if n]:
        for name, tree in trees.items():
            results.setdefault(f"journal {rows}", {})[name] = journal_run(tree, rows)
            print(f"journal {rows:>7} {name:>8}: {results[f'journal {rows}'][name]}")
    print()
    print("| case | figure | baseline | this | ratio |")
    print("|---|---|---:|---:|---:|")
    for case, by_tree in results.items():
        for figure, base in by_tree["baseline"].items():
            now = by_tree["this"][figure]
            ratio = f"{base / now:.1f}x" if now else "-"
            print(f"| {case} | {figure} | {base:.3g} | {now:.3g} | {ratio} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(HERE / "bench" / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()

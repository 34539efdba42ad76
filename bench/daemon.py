"""The daemon's costs: settle-to-first-byte latency, rescan and burst scale, idle CPU.

    python bench/daemon.py latency|scale|idle|startup|all

- latency: a file written into the inbox -> its first byte at the sink, against settle_seconds;
- scale: start-up with 10,000 files already journaled (rescan time), and 1,000 small files
  dropped at once (all uploaded exactly once; files/s);
- idle: CPU used over 60 s by a daemon watching 100 files whose captures are all terminal;
- startup: a lone station's start -> the first byte of a file already in its inbox, with the
  claim's settle as configured by default (`[watch] claim_settle_seconds` unset: 3 s for the
  60 s lease) against `claim_settle_seconds = 0` (no confirmation wait), alternated, same run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import TELEPORT_SYNC, Sink, save, sink, write_config
from teleport_sync.inputs.samples import write_sample_mp4
from teleport_sync.journal import Journal
from teleport_sync.models import FileIdentity

SETTLE = 1.0


@contextmanager
def daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    out = log.open("wb")
    process = subprocess.Popen(
        [*TELEPORT_SYNC, "--config", str(config), "run"], stdout=out, stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        out.close()


def wait_watching(log: Path, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"watching"' in line:
                return json.loads(line)
        time.sleep(0.02)
    raise RuntimeError(f"the daemon did not start: {log.read_text()[-2000:]}")


def setup(
    workdir: Path, s: Sink, watch: str = "", settle: float = SETTLE
) -> tuple[Path, Path, Path]:
    inbox = workdir / "inbox"
    inbox.mkdir()
    config = (
        write_config(
            workdir,
            s,
            f'[watch]\npaths = ["{inbox}"]\nsettle_seconds = {settle}\n{watch}'
            "[poll]\ninterval_seconds = 30\n[results]\ndownload = false\n"
            '[log]\nlevel = "INFO"\nformat = "json"\n',
        )
        .read_text()
        .replace('[log]\nlevel = "WARNING"\n', "")
    )
    path = workdir / "config.toml"
    path.write_text(config)
    path.chmod(0o600)
    return path, inbox, workdir / "daemon.log"


def journal_terminal_files(workdir: Path, inbox: Path, count: int) -> None:
    """`count` small files on disk, journaled as uploaded and READY (as after a long run)."""
    with Journal(workdir / "journal.sqlite3") as journal:
        for i in range(count):
            folder = inbox / f"day-{i // 500:03d}"
            folder.mkdir(exist_ok=True)
            path = folder / f"clip-{i:05d}.mp4"
            path.write_bytes(b"\x00\x00\x00\x08ftyp\x00\x00\x00\x08moov")
            st = path.stat()
            identity = FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, "x")
            record = journal.register(str(path), identity, "video", path.name)
            journal.record_created(record.id, f"eid-{i}", 5 * 1024 * 1024, 1)
            journal.mark_uploaded(record.id)
            journal.record_state(record.id, "READY", f"sid-{i}")


def bench_latency(runs: int = 5) -> dict[str, object]:
    samples = []
    with sink() as s, tempfile.TemporaryDirectory() as tmp:
        config, inbox, log = setup(Path(tmp), s)
        with daemon(config, log):
            wait_watching(log)
            for i in range(runs):
                before = len(s.log())
                target = inbox / f"clip-{i}.mp4"
                write_sample_mp4(target, size=256 * 1024)  # written, then renamed in
                written = time.time()
                deadline = time.monotonic() + 30
                while len(s.log()) == before and time.monotonic() < deadline:
                    time.sleep(0.01)
                first = min(e["first"] for e in s.log()[before:] if e["first"])
                samples.append(first - written)
                time.sleep(0.5)
    result = {
        "settle_seconds": SETTLE,
        "settled_to_first_byte_s": [round(x, 3) for x in samples],
        "median_s": round(statistics.median(samples), 3),
        "median_over_settle_s": round(statistics.median(samples) - SETTLE, 3),
    }
    print(
        f"written -> first byte: median {result['median_s']} s with settle_seconds = {SETTLE} "
        f"(settle + {result['median_over_settle_s']} s)"
    )
    return result


def bench_scale() -> dict[str, object]:
    out: dict[str, object] = {}
    with sink() as s, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config, inbox, log = setup(workdir, s)
        journal_terminal_files(workdir, inbox, 10_000)
        started = time.monotonic()
        with daemon(config, log):
            event = wait_watching(log)
            ready = time.monotonic() - started
            puts_before = len(s.log())
            time.sleep(2)
            assert len(s.log()) == puts_before, "a journaled file was uploaded again"
        out["rescan_10000_scan_s"] = event["scan_seconds"]
        out["rescan_10000_start_to_watching_s"] = round(ready, 3)
        print(
            f"start with 10,000 journaled files: scan {event['scan_seconds']} s, "
            f"process start to watching {ready:.2f} s, 0 uploads"
        )

    with sink() as s, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config, inbox, log = setup(workdir, s)
        staging = workdir / "staging"
        staging.mkdir()
        for i in range(1000):
            write_sample_mp4(staging / f"clip-{i:04d}.mp4", size=8 * 1024)
        with daemon(config, log):
            wait_watching(log)
            started = time.monotonic()
            for path in staging.iterdir():
                os.rename(path, inbox / path.name)
            db = workdir / "journal.sqlite3"
            while True:
                conn = sqlite3.connect(db)
                done = conn.execute(
                    "SELECT COUNT(*) FROM files WHERE upload_state = 'uploaded'"
                ).fetchone()[0]
                conn.close()
                if done == 1000:
                    break
                time.sleep(0.1)
            elapsed = time.monotonic() - started
            parts = [e for e in s.log() if e["first"]]
        assert len(parts) == 1000, f"{len(parts)} part uploads for 1000 files"
        out["burst_1000_seconds"] = round(elapsed, 2)
        out["burst_1000_files_per_s"] = round(1000 / elapsed, 1)
        out["burst_1000_bodies_received"] = len(parts)
        print(
            f"1,000 files dropped at once: all uploaded exactly once in {elapsed:.1f} s "
            f"({1000 / elapsed:.1f} files/s, settle {SETTLE} s included)"
        )
    return out


def bench_idle(seconds: float = 60) -> dict[str, object]:
    with sink() as s, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config, inbox, log = setup(workdir, s)
        journal_terminal_files(workdir, inbox, 100)
        with daemon(config, log) as process:
            wait_watching(log)
            time.sleep(2)
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks

            api_before = len(s.log())
            start_cpu, start = cpu(), time.monotonic()
            time.sleep(seconds)
            used, elapsed = cpu() - start_cpu, time.monotonic() - start
            assert len(s.log()) == api_before
    percent = 100 * used / elapsed
    print(f"idle with 100 terminal captures: {used:.2f} s CPU in {elapsed:.0f} s = {percent:.3f} %")
    return {
        "idle_seconds": round(elapsed, 1),
        "cpu_seconds": round(used, 3),
        "cpu_percent": round(percent, 3),
    }


def start_to_first_byte(s: Sink, watch: str, settle: float) -> float:
    """A fresh station (no journal, no marker) started on an inbox holding one file."""
    with tempfile.TemporaryDirectory() as tmp:
        config, inbox, log = setup(Path(tmp), s, watch, settle)
        write_sample_mp4(inbox / "waiting.mp4", size=256 * 1024)
        before = len(s.log())
        started = time.time()
        with daemon(config, log):
            deadline = time.monotonic() + 60
            while len(s.log()) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            firsts = [e["first"] for e in s.log()[before:] if e["first"]]
        if not firsts:
            raise RuntimeError(f"nothing uploaded: {log.read_text()[-2000:]}")
        return min(firsts) - started


def bench_startup(runs: int = 3) -> dict[str, object]:
    """Per file settle (1 s, and the default 5 s, which a file found at start also waits): the
    claim's default settle against none."""
    result: dict[str, object] = {}
    for settle in (SETTLE, 5.0):
        samples: dict[str, list[float]] = {"default claim settle": [], "claim settle 0": []}
        with sink() as s:
            for _ in range(runs):  # alternated: a load change hits both alike
                samples["default claim settle"].append(start_to_first_byte(s, "", settle))
                samples["claim settle 0"].append(
                    start_to_first_byte(s, "claim_settle_seconds = 0\n", settle)
                )
        medians = {k: statistics.median(v) for k, v in samples.items()}
        cost = medians["default claim settle"] - medians["claim settle 0"]
        result[f"file_settle_{settle:g}s"] = {
            "start_to_first_byte_s": {k: [round(x, 3) for x in v] for k, v in samples.items()},
            "median_s": {k: round(v, 3) for k, v in medians.items()},
            "claim_settle_cost_s": round(cost, 3),
            "ratio": round(medians["default claim settle"] / medians["claim settle 0"], 2),
        }
        print(
            f"settle_seconds = {settle:g}: start -> first byte, median "
            f"{medians['default claim settle']:.2f} s with the default claim settle, "
            f"{medians['claim settle 0']:.2f} s with claim_settle_seconds = 0 ({cost:+.2f} s)"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["latency", "scale", "idle", "startup", "all"])
    parser.add_argument("--idle-seconds", type=float, default=60)
    args = parser.parse_args()
    results: dict[str, object] = {}
    if args.what in ("latency", "all"):
        results["latency"] = bench_latency()
    if args.what in ("scale", "all"):
        results["scale"] = bench_scale()
    if args.what in ("idle", "all"):
        results["idle"] = bench_idle(args.idle_seconds)
    if args.what in ("startup", "all"):
        results["startup"] = bench_startup()
    print("wrote", save(f"daemon-{args.what}", results))


if __name__ == "__main__":
    main()

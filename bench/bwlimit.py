"""Bandwidth limit: how close `upload --bwlimit RATE` keeps to RATE over ~20 s, and what the
limiter costs when it does not limit.

    python bench/bwlimit.py [--rate-mib 4] [--seconds 20] [--size-mib 512] [--runs 3]

Accuracy: a file of RATE x SECONDS bytes is uploaded with `--bwlimit`, over plain http (parts
by sendfile, paced in 256 KiB slices) and over https (streamed 1 MiB blocks), 4 parts in flight
sharing the one limiter; the rate is the bytes divided by the time from the first to the last
body byte as the sink saw them. Target: within 10 %.

Cost: the same large file uploaded with no limit (`off`, the limiter is not built at all), with
a timetable whose slot is "off" (limiter built, slicing on, never waits), and with a limit far
above the line (`100G`: every slice is accounted). Reported as throughput ratios against "off",
measured in the same run.

Prints a table and writes bench/results/bwlimit.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import (
    MIB,
    TELEPORT_SYNC,
    make_file,
    median_run,
    save,
    self_signed_cert,
    sink,
    timed,
    write_config,
)


def accuracy(rate_mib: float, seconds: float, tls: bool, workdir: Path) -> dict[str, object]:
    size = int(rate_mib * MIB * seconds)
    data = make_file(workdir / f"paced-{size}.mp4", size)
    tls_pair = self_signed_cert(workdir) if tls else None
    with sink(8 * MIB, tls_pair) as s:
        config = write_config(workdir, s, "[upload]\nconcurrency = 4\n")
        argv = [*TELEPORT_SYNC, "--config", str(config), "upload", "--force"]
        run = timed([*argv, "--bwlimit", f"{rate_mib:g}M", str(data)], s)
    assert run.wire_seconds
    measured = size / run.wire_seconds / MIB
    return {
        "path": "https (streamed blocks)" if tls else "http (sendfile slices)",
        "target_mib_s": rate_mib,
        "measured_mib_s": round(measured, 3),
        "error_percent": round(100 * (measured - rate_mib) / rate_mib, 2),
        "wire_seconds": round(run.wire_seconds, 2),
    }


def cost(size_mib: int, runs: int, workdir: Path) -> list[dict[str, object]]:
    data = make_file(workdir / f"big-{size_mib}.mp4", size_mib * MIB)
    limits = {
        "off (no limiter)": "off",
        "timetable, slot off": "00:00,off 12:00,off",
        "100G (far above the line)": "100G",
    }
    out: list[dict[str, object]] = []
    with sink(32 * MIB) as s:
        config = write_config(workdir, s, "[upload]\nconcurrency = 4\n")
        argv = [*TELEPORT_SYNC, "--config", str(config), "upload", "--force"]
        timed([*argv, str(data)], s)  # warm the page cache and the journal
        results = {}
        for label, spec in limits.items():
            results[label] = median_run(
                [timed([*argv, "--bwlimit", spec, str(data)], s) for _ in range(runs)]
            )
    base = size_mib / (results["off (no limiter)"].wire_seconds or 1)
    for label, run in results.items():
        rate = size_mib / (run.wire_seconds or 1)
        out.append(
            {
                "bwlimit": label,
                "wire_mib_s": round(rate, 1),
                "vs_off": round(rate / base, 3),
                "wall_seconds": round(run.seconds, 3),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-mib", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        paced = [accuracy(args.rate_mib, args.seconds, tls, workdir) for tls in (False, True)]
        costs = cost(args.size_mib, args.runs, workdir)
    print(f"{'path':28} {'target':>8} {'measured':>9} {'error':>7} {'wire s':>7}")
    for row in paced:
        print(
            f"{row['path']:28} {row['target_mib_s']:>6}M/s {row['measured_mib_s']:>7}M/s "
            f"{row['error_percent']:>6}% {row['wire_seconds']:>7}"
        )
    print(f"\n{'bwlimit':28} {'MiB/s':>8} {'vs off':>7} {'wall s':>7}")
    for row in costs:
        print(
            f"{row['bwlimit']:28} {row['wire_mib_s']:>8} {row['vs_off']:>7} "
            f"{row['wall_seconds']:>7}"
        )
    path = save("bwlimit", {"accuracy": paced, "cost": costs, "size_mib": args.size_mib})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()

"""Throughput: teleport-sync `upload` against curl -T (one PUT, line rate), boto3's s3transfer
(same part size and concurrency) and a naive sequential client, on the same local sink; plus the
sink's ceiling (zero-copy PUTs with no API calls), to show the sink is not what limits anyone.

    python bench/throughput.py [--sizes 1024,4096] [--runs 3] [--part-mib 32] [--concurrency 8]
    python bench/throughput.py --tls ...   # the same over https (writes throughput-tls.json)
    python bench/throughput.py --md5-etags ...   # storage answers MD5 ETags, as S3 does by
                                                 # default (writes throughput-md5.json)
    python bench/throughput.py --md5-etags --check   # the regression check: exit 1 unless
        # `upload` is >= 1.05x the better s3transfer setting by wall clock, with no more CPU

Prints a table and writes bench/results/throughput.json. Wall time includes each program's
start-up (what a user waits for); "wire" is first to last body byte as the sink saw them.
teleport-sync is measured twice: with the journal of its earlier runs (the usual case) and with
a journal that does not exist yet (a first run). "CPU s/GiB" is each program's own user + system
time per GiB sent.

With `--md5-etags` the sink answers every part with its MD5, as S3 does with its default
encryption: teleport-sync then verifies each part (it hashes what it sends), and s3transfer runs
with boto3's shipped checksum setting (a CRC32 per part). Without it ETags are opaque and nobody
verifies anything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import (
    BENCH,
    MIB,
    PYTHON,
    TELEPORT_SYNC,
    Run,
    make_file,
    median_run,
    save,
    self_signed_cert,
    sink,
    timed,
    write_config,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096", help="file sizes in MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--part-mib", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--tls", action="store_true", help="https to the sink (self-signed certificate)"
    )
    parser.add_argument(
        "--md5-etags", action="store_true", help="storage answers MD5 ETags (as S3 by default)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 unless upload >= 1.05x the better s3transfer row, with no more CPU per GiB",
    )
    args = parser.parse_args()
    part = args.part_mib * MIB
    results: list[dict[str, object]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        sink(
            part, self_signed_cert(Path(tmp)) if args.tls else None, md5_etags=args.md5_etags
        ) as s,
    ):
        workdir = Path(tmp)
        config = write_config(workdir, s, f"[upload]\nconcurrency = {args.concurrency}\n")
        for size_mib in (int(x) for x in args.sizes.split(",")):
            data = make_file(args.data_dir / f"teleport-sync-bench-{size_mib}.mp4", size_mib * MIB)
            clients = {
                "curl -T (one PUT)": [
                    "curl",
                    "-sf",
                    "-T",
                    str(data),
                    "-o",
                    "/dev/null",
                    f"{s.url}/bucket/curl",
                ],
                "teleport-sync upload": [
                    *TELEPORT_SYNC,
                    "--config",
                    str(config),
                    "upload",
                    "--force",
                    str(data),
                ],
                "s3transfer": [
                    PYTHON,
                    str(BENCH / "clients" / "s3transfer_upload.py"),
                    s.url,
                    str(data),
                    str(part),
                    str(args.concurrency),
                    "boto3" if args.md5_etags else "plain",
                ],
                "naive sequential": [
                    PYTHON,
                    str(BENCH / "clients" / "naive_upload.py"),
                    s.url,
                    str(data),
                ],
            }
            if args.md5_etags:  # and as boto3 ships it: 8 MiB parts, 10 threads, CRC32s
                clients["s3transfer (boto3 defaults)"] = [
                    *clients["s3transfer"][:-1],
                    "defaults",
                ]
            if not args.tls:  # zero-copy needs plain http: over TLS every client encrypts
                clients["sink ceiling (sendfile)"] = [
                    PYTHON,
                    str(BENCH / "clients" / "sendfile_put.py"),
                    s.url,
                    str(data),
                    str(args.concurrency),
                ]
            # The same upload with a journal that does not exist yet, as on a first run: it pays
            # for creating the journal and for learning whether storage's ETags are MD5s.
            clients["teleport-sync (new journal)"] = clients["teleport-sync upload"]
            runs: dict[str, list[Run]] = {name: [] for name in clients}
            for run_no in range(args.runs):  # interleaved, so drift hits every client alike
                for name, argv in clients.items():
                    env = None
                    if name == "teleport-sync (new journal)":
                        fresh = workdir / f"fresh-{size_mib}-{run_no}.sqlite3"
                        env = {"TELEPORT_SYNC_JOURNAL__PATH": str(fresh)}
                    runs[name].append(timed(argv, s, env=env))
            medians = {name: median_run(r) for name, r in runs.items()}
            curl = medians["curl -T (one PUT)"]
            best = min(
                (run for name, run in medians.items() if name.startswith("s3transfer")),
                key=lambda run: run.seconds,
            )
            for name, run in medians.items():
                row = {
                    "size_mib": size_mib,
                    "client": name,
                    "seconds": round(run.seconds, 3),
                    "mib_per_s": round(size_mib / run.seconds, 1),
                    "ratio_to_curl": round(curl.seconds / run.seconds, 3),
                    "ratio_to_best_s3transfer": round(best.seconds / run.seconds, 3),
                    "best_s3transfer_cpu_s_per_gib": round(best.cpu_seconds / (size_mib / 1024), 2),
                    "wire_mib_per_s": round(size_mib / run.wire_seconds, 1)
                    if run.wire_seconds
                    else None,
                    "wire_ratio_to_curl": round(curl.wire_seconds / run.wire_seconds, 3)
                    if run.wire_seconds and curl.wire_seconds
                    else None,
                    "peak_rss_mib": round(run.peak_rss_mib, 1),
                    "cpu_s_per_gib": round(run.cpu_seconds / (size_mib / 1024), 2),
                    "runs": [round(r.seconds, 3) for r in runs[name]],
                }
                results.append(row)
    print(
        f"{'size':>6} {'client':<28} {'s':>7} {'MiB/s':>8} {'x curl':>7} {'x s3t':>6} "
        f"{'wire MiB/s':>11} {'wire x curl':>11} {'RSS MiB':>8} {'CPU s/GiB':>9}"
    )
    for r in results:
        print(
            f"{r['size_mib']:>6} {r['client']:<28} {r['seconds']:>7} {r['mib_per_s']:>8} "
            f"{r['ratio_to_curl']:>7} {r['ratio_to_best_s3transfer']:>6} "
            f"{r['wire_mib_per_s']!s:>11} "
            f"{r['wire_ratio_to_curl']!s:>11} {r['peak_rss_mib']:>8} {r['cpu_s_per_gib']:>9}"
        )
    print(
        "wrote",
        save(
            "throughput" + ("-tls" if args.tls else "") + ("-md5" if args.md5_etags else ""),
            {
                "part_mib": args.part_mib,
                "concurrency": args.concurrency,
                "tls": args.tls,
                "md5_etags": args.md5_etags,
                "rows": results,
            },
        ),
    )
    if args.check:
        sys.exit(_check(results))


def _check(results: list[dict[str, object]]) -> int:
    """The goal of the MD5 series: ahead of the better s3transfer setting, on less CPU."""
    failed = 0
    for row in results:
        if row["client"] != "teleport-sync upload":
            continue
        ratio, cpu = float(row["ratio_to_best_s3transfer"]), float(row["cpu_s_per_gib"])  # type: ignore[arg-type]
        theirs = float(row["best_s3transfer_cpu_s_per_gib"])  # type: ignore[arg-type]
        ok = ratio >= 1.05 and cpu <= theirs
        failed += not ok
        print(
            f"check {row['size_mib']} MiB: {ratio}x the better s3transfer (goal >= 1.05), "
            f"{cpu} CPU s/GiB against its {theirs}: {'ok' if ok else 'REGRESSED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    main()

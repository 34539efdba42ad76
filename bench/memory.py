"""Memory: peak RSS of `teleport-sync upload` by file size and part size (sparse files).

    python bench/memory.py [--sizes 256,1024,4096] [--parts 8,64,256]

Memory must be flat: parts are streamed in 1 MiB blocks, never held whole. The naive client,
which holds each part in memory, is measured beside it as the baseline.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import BENCH, MIB, PYTHON, TELEPORT_SYNC, make_file, save, sink, timed, write_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024,4096")
    parser.add_argument("--parts", default="8,64,256")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for part_mib in (int(x) for x in args.parts.split(",")):
            with sink(part_mib * MIB) as s:
                config = write_config(workdir, s)
                for size_mib in (int(x) for x in args.sizes.split(",")):
                    data = make_file(
                        workdir / f"sparse-{size_mib}.mp4", size_mib * MIB, sparse=True
                    )
                    ours = timed(
                        [*TELEPORT_SYNC, "--config", str(config), "upload", "--force", str(data)], s
                    )
                    naive = timed(
                        [PYTHON, str(BENCH / "clients" / "naive_upload.py"), s.url, str(data)], s
                    )
                    rows.append(
                        {
                            "size_mib": size_mib,
                            "part_mib": part_mib,
                            "teleport_sync_rss_mib": round(ours.peak_rss_mib, 1),
                            "naive_rss_mib": round(naive.peak_rss_mib, 1),
                        }
                    )
                    print(
                        f"{size_mib:>5} MiB file, {part_mib:>3} MiB parts: teleport-sync "
                        f"{ours.peak_rss_mib:6.1f} MiB, naive {naive.peak_rss_mib:6.1f} MiB",
                        flush=True,
                    )
    ours_all = [r["teleport_sync_rss_mib"] for r in rows]
    print(
        f"teleport-sync peak RSS: min {min(ours_all)} MiB, max {max(ours_all)} MiB "
        f"(spread {max(ours_all) - min(ours_all):.1f} MiB)"
    )
    print("wrote", save("memory", {"rows": rows}))


if __name__ == "__main__":
    main()

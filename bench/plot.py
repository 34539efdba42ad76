"""Plots for docs/BENCHMARKS.md from bench/results/*.json.

python bench/plot.py   # writes docs/bench-throughput.png and docs/bench-memory.png
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common import RESULTS

DOCS = Path(__file__).parent.parent / "docs"


def throughput() -> None:
    data = json.loads((RESULTS / "throughput.json").read_text())
    rows = data["rows"]
    sizes = sorted({r["size_mib"] for r in rows})
    clients = list(dict.fromkeys(r["client"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, key, title in (
        (axes[0], "mib_per_s", "wall clock (start-up included)"),
        (axes[1], "wire_mib_per_s", "on the wire (first to last body byte)"),
    ):
        width = 0.8 / len(clients)
        for i, client in enumerate(clients):
            values = [
                next(r[key] or 0 for r in rows if r["client"] == client and r["size_mib"] == s)
                for s in sizes
            ]
            ax.bar([x + i * width for x in range(len(sizes))], values, width, label=client)
        ax.set_xticks([x + width * (len(clients) - 1) / 2 for x in range(len(sizes))])
        ax.set_xticklabels([f"{s // 1024} GiB" if s >= 1024 else f"{s} MiB" for s in sizes])
        ax.set_ylabel("MiB/s")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Upload throughput to a local sink ({data['part_mib']} MiB parts, "
        f"{data['concurrency']} in flight; median of runs)"
    )
    fig.tight_layout()
    fig.savefig(DOCS / "bench-throughput.png", dpi=110)


def memory() -> None:
    rows = json.loads((RESULTS / "memory.json").read_text())["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for part in sorted({r["part_mib"] for r in rows}):
        mine = sorted(
            (r["size_mib"], r["teleport_sync_rss_mib"]) for r in rows if r["part_mib"] == part
        )
        naive = sorted((r["size_mib"], r["naive_rss_mib"]) for r in rows if r["part_mib"] == part)
        ax.plot(
            [m[0] for m in mine],
            [m[1] for m in mine],
            "o-",
            label=f"teleport-sync, {part} MiB parts",
        )
        ax.plot(
            [n[0] for n in naive], [n[1] for n in naive], "x--", label=f"naive, {part} MiB parts"
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("file size (MiB, sparse)")
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_title("Peak memory of an upload")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(DOCS / "bench-memory.png", dpi=110)


if __name__ == "__main__":
    throughput()
    memory()
    print("wrote", DOCS / "bench-throughput.png", DOCS / "bench-memory.png")

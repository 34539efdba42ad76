"""Rich progress bars for `teleport-sync upload`: bytes, rate, ETA and parts per file.

Sizes and rates both in binary units (MiB, MiB/s); "file 2 of 5" in the label; once every part
is acknowledged the bar says "completing" while the server is told the upload is complete.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

MIB = 1024 * 1024


class BinarySpeedColumn(ProgressColumn):
    """The transfer rate in MiB/s, matching the MiB of the size column (rich's is MB/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("? MiB/s", style="progress.data.speed")
        return Text(f"{speed / MIB:.1f} MiB/s", style="progress.data.speed")


class RichProgress:
    """Implements the engine's `Progress` protocol with one bar per file."""

    def __init__(self, console: Console) -> None:
        self.bars = Progress(
            TextColumn("[bold]{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            BinarySpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[parts]}"),
            console=console,
            transient=False,
        )
        self._tasks: dict[Path, TaskID] = {}
        self._parts: dict[Path, list[int]] = {}
        self._labels: dict[Path, str] = {}
        self._lock = threading.Lock()

    def announce(self, path: Path, index: int, count: int) -> None:
        """The next file is `index` of `count`: its bar says so."""
        with self._lock:
            self._labels[path.absolute()] = (
                f"file {index} of {count}: {path.name}" if count > 1 else path.name
            )

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def started(self, path: Path, total: int, done: int, num_parts: int, parts_done: int) -> None:
        with self._lock:
            self._parts[path] = [parts_done, num_parts]
            label = f"{parts_done}/{num_parts} parts"
            if path in self._tasks:
                self.bars.update(self._tasks[path], total=total, completed=done, parts=label)
            else:
                name = self._labels.get(path.absolute(), path.name)
                self._tasks[path] = self.bars.add_task(
                    name, total=total, completed=done, parts=label
                )

    def advanced(self, path: Path, nbytes: int) -> None:
        task = self._tasks.get(path)
        if task is not None:
            self.bars.advance(task, nbytes)

    def part_done(self, path: Path, number: int) -> None:
        with self._lock:
            counts = self._parts.get(path)
            task = self._tasks.get(path)
            if counts is None or task is None:
                return
            counts[0] += 1
            label = f"{counts[0]}/{counts[1]} parts"
            if counts[0] >= counts[1]:
                label += ", completing"  # /uploaded and its checks take a few seconds
            self.bars.update(task, parts=label)

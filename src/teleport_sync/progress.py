"""Rich progress bars for `teleport-sync upload`: bytes, rate, ETA and parts per file."""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class RichProgress:
    """Implements the engine's `Progress` protocol with one bar per file."""

    def __init__(self, console: Console) -> None:
        self.bars = Progress(
            TextColumn("[bold]{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[parts]}"),
            console=console,
            transient=False,
        )
        self._tasks: dict[Path, TaskID] = {}
        self._parts: dict[Path, list[int]] = {}
        self._lock = threading.Lock()

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
                self._tasks[path] = self.bars.add_task(
                    path.name, total=total, completed=done, parts=label
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
            self.bars.update(task, parts=f"{counts[0]}/{counts[1]} parts")

"""What the console needs of the daemon: the daemon itself, or a test's stand-in.

A protocol of its own, below both the console's view (`facade`) and its actions
(`operations`), so neither has to import the other to name it.
"""

from __future__ import annotations

from typing import Protocol

from ..config import Settings
from ..journal import Journal
from ..status.metrics import Metrics, MetricsProgress


class DaemonLink(Protocol):
    """What the console needs of the daemon (the daemon itself, or a test's stand-in)."""

    settings: Settings
    journal: Journal
    metrics: Metrics
    progress: MetricsProgress

    def retry_now(self, file_id: int) -> None: ...

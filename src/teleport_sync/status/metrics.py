"""Prometheus metrics, served only when `[metrics] listen` is set.

Each daemon gets its own registry, so tests can run several daemons in one process.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from ..limits import BandwidthLimiter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.bytes_uploaded = Counter(
            "teleport_sync_bytes_uploaded",
            "Bytes of parts acknowledged by storage",
            registry=self.registry,
        )
        self.parts_uploaded = Counter(
            "teleport_sync_parts_uploaded",
            "Parts acknowledged by storage",
            registry=self.registry,
        )
        self.retries = Counter(
            "teleport_sync_retries",
            "Retried API calls and part uploads",
            ["what"],
            registry=self.registry,
        )
        self.failures = Counter(
            "teleport_sync_failures",
            "Files that failed an attempt, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.files_uploaded = Counter(
            "teleport_sync_files_uploaded", "Files uploaded completely", registry=self.registry
        )
        self.queue_depth = Gauge(
            "teleport_sync_queue_depth",
            "Files waiting for an upload slot",
            registry=self.registry,
        )
        self.files = Gauge(
            "teleport_sync_files",
            "Journaled files by upload state",
            ["state"],
            registry=self.registry,
        )
        self.captures = Gauge(
            "teleport_sync_captures",
            "Journaled captures by the last state seen on the server",
            ["state"],
            registry=self.registry,
        )
        self.bwlimit = _bwlimit_gauge(self.registry)
        self._health_gauges()
        self._server = None

    def _health_gauges(self) -> None:
        """The `health` answers, for monitoring that scrapes rather than runs commands."""
        self.phases = Gauge(
            "teleport_sync_phase",
            "Noticed files by phase (settling, queued, uploading, ..., done, failed)",
            ["phase"],
            registry=self.registry,
        )
        self.healthy = Gauge(
            "teleport_sync_healthy",
            "1 when authentication works and every watch root is watched, as `health` says",
            registry=self.registry,
        )
        self.auth_ok = Gauge(
            "teleport_sync_auth_ok",
            "1 when the last authentication worked, 0 while it fails, -1 before the first try",
            registry=self.registry,
        )
        self.roots_unwatched = Gauge(
            "teleport_sync_watch_roots_unwatched",
            "Watch roots not watched now (missing, not a folder, unreadable)",
            registry=self.registry,
        )

    def watch_bwlimit(self, limiter: BandwidthLimiter | None) -> None:
        """Read the limiter's rate when scraped (it follows its timetable by itself)."""
        if limiter is not None:
            self.bwlimit.set_function(lambda: -1.0 if limiter.rate is None else limiter.rate)

    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._server, _thread = start_http_server(
            int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry
        )

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _bwlimit_gauge(registry: CollectorRegistry) -> Gauge:
    gauge = Gauge(
        "teleport_sync_bwlimit_bytes_per_second",
        "The [upload] bwlimit in force: bytes per second, 0 = upload window closed, -1 = no limit",
        registry=registry,
    )
    gauge.set(-1)
    return gauge


class MetricsProgress:
    """The engine's Progress protocol, counting into metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # path -> [bytes sent, total]: finer than acknowledged parts, for the web console.
        self.live: dict[str, list[int]] = {}

    def started(self, path: Path, total: int, done: int, num_parts: int, parts_done: int) -> None:
        self.live[str(path)] = [done, total]

    def advanced(self, path: Path, nbytes: int) -> None:
        # Bytes put on the wire, retransmissions included; a failed attempt's rewind
        # (a negative count) cannot be taken back from a Prometheus counter.
        if nbytes > 0:
            self._metrics.bytes_uploaded.inc(nbytes)
        entry = self.live.get(str(path))
        if entry is not None:
            entry[0] = max(0, min(entry[1], entry[0] + nbytes))

    def part_done(self, path: Path, number: int) -> None:
        self._metrics.parts_uploaded.inc()

"""Prometheus metrics, served only when `[metrics] listen` is set.

Each daemon gets its own registry, so tests can run several daemons in one process. A fleet's
alert rules and dashboard (deploy/) read only what is defined here; every name is
`teleport_sync_*` and has its HELP text.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .. import __version__
from ..api import TeleportClient
from ..limits import BandwidthLimiter
from ..retry import Pacer
from .throughput import SlidingRate

# (listing requests, full walks) so far: `api.listing.Listing.requests` and `.full_walks`.
ListingCounts = Callable[[], tuple[int, int]]


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
        self._preflight_metrics()
        self._health_gauges()
        self._fleet_metrics()
        self.window = UploadWindow()
        self._window_gauges()
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

    def _fleet_metrics(self) -> None:
        """What a fleet's alerts ask of each station beyond `health` (deploy/prometheus)."""
        self.oldest = Gauge(
            "teleport_sync_oldest_seconds",
            "Seconds the longest-waiting file has been in this phase (failed: since its upload "
            "began failing or the server failed it; processing: since its upload completed; "
            "others: since it got there); 0 when no file is in it",
            ["phase"],
            registry=self.registry,
        )
        self.last_part = Gauge(
            "teleport_sync_last_part_timestamp_seconds",
            "Unix time storage last acknowledged a part (the daemon's start before the first)",
            registry=self.registry,
        )
        self.last_part.set(time.time())
        self.captures_to_delete = Gauge(
            "teleport_sync_captures_to_delete",
            "Unfinished captures cut loose from their rows, not yet deleted from the account",
            registry=self.registry,
        )
        self.frames_uploaded = Counter(
            "teleport_sync_frames_uploaded",
            "Frames (zip images, video frames) of the files uploaded completely",
            registry=self.registry,
        )
        self.estimated_cost = Counter(
            "teleport_sync_estimated_cost",
            "Estimated cost of the captures uploaded completely, in [budget] currency "
            "(stays 0 unless [budget] prices are set)",
            registry=self.registry,
        )
        self.journal_free = Gauge(
            "teleport_sync_journal_disk_free_bytes",
            "Bytes this user may still write on the journal's file system",
            registry=self.registry,
        )
        self.journal_size = Gauge(
            "teleport_sync_journal_disk_size_bytes",
            "Size in bytes of the journal's file system",
            registry=self.registry,
        )
        Gauge(
            "teleport_sync_build_info",
            "Always 1; `version` names the teleport-sync this station runs",
            ["version"],
            registry=self.registry,
        ).labels(__version__).set(1)

    def _window_gauges(self) -> None:
        """The upload window of `[upload] bwlimit`, read from the limiter at each scrape."""
        window = self.window
        Gauge(
            "teleport_sync_upload_window_open",
            "1 while new parts may start, 0 while a bwlimit slot of 0 closes the upload window",
            registry=self.registry,
        ).set_function(lambda: float(window.is_open()))
        Gauge(
            "teleport_sync_upload_window_closed_seconds",
            "Seconds the upload window has been closed without a break (as this daemon saw "
            "it; 0 while open)",
            registry=self.registry,
        ).set_function(window.closed_seconds)
        Gauge(
            "teleport_sync_upload_window_opens_in_seconds",
            "Seconds until the bwlimit timetable opens the closed upload window (0 while "
            "open, +Inf when no slot opens it)",
            registry=self.registry,
        ).set_function(window.opens_in_seconds)

    def _preflight_metrics(self) -> None:
        self.preflight_verdicts = Counter(
            "teleport_sync_preflight_verdicts",
            "Pre-flight checks by verdict (ok, warn, hold), one per file version",
            ["verdict"],
            registry=self.registry,
        )
        self.preflight_seconds = Counter(
            "teleport_sync_preflight_seconds",
            "Seconds spent judging inputs before upload",
            registry=self.registry,
        )
        self.preflight_enabled = Gauge(
            "teleport_sync_preflight_enabled",
            "1 when pre-flight judges inputs, 0 when it is off (`health` says why)",
            registry=self.registry,
        )

    def preflight_checked(self, verdict: str, seconds: float) -> None:
        self.preflight_verdicts.labels(verdict).inc()
        self.preflight_seconds.inc(seconds)

    def watch_bwlimit(self, limiter: BandwidthLimiter | None) -> None:
        """Read the limiter's rate when scraped (it follows its timetable by itself)."""
        self.window.follow(limiter)
        if limiter is not None:
            self.bwlimit.set_function(lambda: -1.0 if limiter.rate is None else limiter.rate)

    def watch_api(self, client: TeleportClient) -> None:
        """The pacers' waits and the listing's cost, read at each scrape (they count on their
        own, under their locks; the client is shared by the poller, webhook checks and
        uploads, so these are the whole account's as this station sees it)."""
        pacers = {"api": client.pacer, "storage": client.storage_pacer}
        listing = client.listing
        self.registry.register(
            _ApiCollector(pacers, lambda: (listing.requests, listing.full_walks))
        )

    def watch_journal_disk(self, folder: Path) -> None:
        """Free and total bytes of the journal's file system, asked of the OS at each scrape
        (a full disk stops every journal write: the daemon cannot record progress)."""
        self.journal_free.set_function(_statvfs(folder, lambda st: st.f_bavail * st.f_frsize))
        self.journal_size.set_function(_statvfs(folder, lambda st: st.f_blocks * st.f_frsize))

    def count_uploaded(self, frames: int | None, cost: float | None) -> None:
        """A file uploaded completely: one more capture, its frames and its estimated cost."""
        self.files_uploaded.inc()
        if frames:
            self.frames_uploaded.inc(frames)
        if cost:
            self.estimated_cost.inc(cost)

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


def _statvfs(folder: Path, pick: Callable[[os.statvfs_result], int]) -> Callable[[], float]:
    def read() -> float:
        try:
            return float(pick(os.statvfs(folder)))
        except OSError:  # the folder is gone or unreadable: no figure rather than a wrong one
            return math.nan

    return read


class UploadWindow:
    """Whether the upload window is open, since when it is closed and when it opens again.

    Read at each scrape: the closing is noticed by the first scrape that sees it (a daemon
    restarted while closed counts from its start, as it cannot know better)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._limiter: BandwidthLimiter | None = None
        self._closed_since: float | None = None

    def follow(self, limiter: BandwidthLimiter | None) -> None:
        self._limiter = limiter

    def is_open(self) -> bool:
        limiter = self._limiter
        is_open = limiter is None or limiter.window_open
        if is_open:
            self._closed_since = None
        elif self._closed_since is None:
            self._closed_since = self._clock()
        return is_open

    def closed_seconds(self) -> float:
        if self.is_open() or self._closed_since is None:
            return 0.0
        return max(0.0, self._clock() - self._closed_since)

    def opens_in_seconds(self) -> float:
        if self.is_open() or self._limiter is None:
            return 0.0
        seconds = self._limiter.opens_in_seconds()
        return math.inf if seconds is None else seconds


def _bwlimit_gauge(registry: CollectorRegistry) -> Gauge:
    gauge = Gauge(
        "teleport_sync_bwlimit_bytes_per_second",
        "The [upload] bwlimit in force: bytes per second, 0 = upload window closed, -1 = no limit",
        registry=registry,
    )
    gauge.set(-1)
    return gauge


class MetricsProgress:
    """The engine's Progress protocol, counting into metrics (and the console's throughput)."""

    def __init__(self, metrics: Metrics, rate: SlidingRate | None = None) -> None:
        self._metrics = metrics
        # path -> [bytes sent, total]: finer than acknowledged parts, for the web console.
        self.live: dict[str, list[int]] = {}
        # The uploads' progress per second now (failed attempts taken back).
        self.rate = rate or SlidingRate()

    def started(self, path: Path, total: int, done: int, num_parts: int, parts_done: int) -> None:
        self.live[str(path)] = [done, total]

    def advanced(self, path: Path, nbytes: int) -> None:
        # Bytes put on the wire, retransmissions included; a failed attempt's rewind
        # (a negative count) cannot be taken back from a Prometheus counter.
        if nbytes > 0:
            self._metrics.bytes_uploaded.inc(nbytes)
        self.rate.add(nbytes)
        entry = self.live.get(str(path))
        if entry is not None:
            entry[0] = max(0, min(entry[1], entry[0] + nbytes))

    def part_done(self, path: Path, number: int) -> None:
        self._metrics.parts_uploaded.inc()
        self._metrics.last_part.set(time.time())


class _ApiCollector(Collector):
    """Counters kept by the API client itself, offered to Prometheus as they stand."""

    def __init__(self, pacers: dict[str, Pacer], listing: ListingCounts) -> None:
        self.pacers = pacers
        self.listing = listing

    def collect(self):  # type: ignore[no-untyped-def]  # prometheus_client's own signature
        waits = CounterMetricFamily(
            "teleport_sync_pacer_waits",
            "Calls that waited for their remote's pacer after a 429/503 with Retry-After or "
            "a failure slowed every caller (remote: api or storage)",
            labels=["remote"],
        )
        seconds = CounterMetricFamily(
            "teleport_sync_pacer_wait_seconds",
            "Seconds calls spent waiting for their remote's pacer",
            labels=["remote"],
        )
        for remote, pacer in self.pacers.items():
            waits.add_metric([remote], pacer.waits)
            seconds.add_metric([remote], pacer.waited_seconds)
        requests, full_walks = self.listing()
        yield waits
        yield seconds
        yield CounterMetricFamily(
            "teleport_sync_listing_requests",
            "Pages of the account's capture listing asked for (polls, webhook checks, "
            "completions, actions, adoption)",
            value=requests,
        )
        yield CounterMetricFamily(
            "teleport_sync_listing_full_walks",
            "Walks of the whole listing (a followed capture not found: at most one per "
            "[poll] full_walk_seconds)",
            value=full_walks,
        )

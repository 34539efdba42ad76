"""Knobs of the emulator: credentials, lifetimes, chunk size, processing delay, fault rates.

Every rate is a probability per request, drawn from one seeded RNG so a failing test can be
replayed. `EmulatorConfig` is plain data; the app and the storage gate read it on every request,
so a test may change a knob while the emulator runs.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass
class EmulatorConfig:
    client_id: str = "demo-client"
    client_secret: str = "demo-secret-change-me"
    token_ttl_seconds: float = 3600.0
    url_ttl_seconds: float = 900.0
    chunk_size: int = 8 * MIB
    # Time from `/uploaded` to READY/FAILED; the first 30 % is UPLOADED, the rest PROCESSING.
    processing_delay_seconds: float = 3.0

    # Faults on the API (`/api/v1/...`, `/share/...`; never the token endpoint).
    api_5xx_rate: float = 0.0
    api_503_retry_after_rate: float = 0.0
    retry_after_seconds: float = 1.0
    # Faults on part PUTs (the storage gate in front of moto).
    put_5xx_rate: float = 0.0
    put_reset_rate: float = 0.0
    expired_url_rate: float = 0.0
    # Every URL issued during the emulator's first N seconds is already expired.
    expire_urls_for_first_seconds: float = 0.0
    # `/uploaded` completes on the server, then the answer is lost (HTTP 502).
    lose_uploaded_response_rate: float = 0.0
    # Answer API calls this late (past a client's timeout, to test that path).
    slow_api_seconds: float = 0.0
    slow_api_rate: float = 0.0
    # Hold each part PUT this long before storing it (a slower link, for crash tests).
    put_delay_seconds: float = 0.0
    # Part ETags are replaced with a wrong 32-hex-digit value at this rate (corruption in transit).
    wrong_etag_rate: float = 0.0
    # Answer part PUTs with ETags that are not MD5s ("opaque-..."), as some S3-compatible stores
    # do; completion still accepts them. Not a fault: a kind of storage.
    opaque_etags: bool = False
    # Signed webhooks (X-Teleport-Signature) to this URL when a capture is READY or fails.
    webhook_url: str | None = None
    webhook_secret: str = "demo-webhook-secret"
    webhook_attempts: int = 3
    # Results. `model_bytes` > 0 makes the `ply` profile a zero-filled model of about that size,
    # streamed (memory tests). The next `model_drops` model downloads are cut after
    # `model_drop_after_bytes` bytes of their body (the connection is dropped). The metadata's
    # `models` is an array of SegmentModel ("array", as the reference says) or an object keyed
    # by profile ("object", as public integrations read it).
    model_bytes: int = 0
    model_drop_after_bytes: int = 0
    model_drops: int = 0
    metadata_models_shape: str = "array"

    # The next N `POST /captures` are answered `slow_api_seconds` late (the capture is made):
    # a create that times out on the client.
    slow_creates: int = 0
    # Server clock minus true time, in seconds: every `created`/`uploaded` the API reports is
    # off by this much (a live server's clock can be minutes off a station's).
    clock_offset_seconds: float = 0.0
    # What a capture whose processing failed is called: the reference says FAILED, the webhook
    # documentation ERROR; any letter case may come.
    failed_state_name: str = "FAILED"
    # Every capture completed from now on fails processing with this reason slug (e.g.
    # "NOT_ENOUGH_FRAMES"), whatever its bytes; "" lets the input decide.
    fail_processing_with: str = ""
    # The largest page `GET /captures` returns, whatever `limit` asks (0: no cap).
    list_page_cap: int = 0
    # Capture Metadata v2 (`metadata_v2.py`): 200 serves it; any other status is the answer to
    # every v2 request (an account without v2: 404 as a missing route, or 405).
    metadata_v2_status: int = 200
    # The frames the camera list leaves out (as the service does with frames it cannot pose):
    # these names (file names, any case), else every Nth frame (0: none).
    cameras_left_out: list[str] = field(default_factory=list)
    cameras_leave_out_every: int = 8
    # An account a year old: this many READY captures of other stations and people, older than
    # any made here, spread evenly over `others_span_seconds` before the emulator started. Made
    # up page by page as the listing reaches them (100,000 cost nothing until listed).
    others_captures: int = 0
    others_span_seconds: float = 365 * 86_400.0

    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng.seed(self.seed)

    def take_slow_create(self) -> bool:
        """True for each of the next `slow_creates` creates."""
        with self._lock:
            if self.slow_creates <= 0:
                return False
            self.slow_creates -= 1
            return True

    def roll(self, rate: float) -> bool:
        """True with probability `rate`."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

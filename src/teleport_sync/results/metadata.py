"""Which metadata endpoint a capture's models come through: v2 when the account answers it,
v1 as the fallback, and the account's answer remembered (NOTES "Metadata v2").

`[results] metadata`: `auto` (v2, falling back to v1 on a 403/404/405 and remembering an
account without v2 for `V1_REMEMBERED_FOR`, so the fallback is not retried at every capture),
`v2` (v2 only: a refusal is an error), `v1` (v1 only, as before v2 existed).

v2 takes `content_profile`, `crop_variant` and `coord_system`, not v1's `quality`, `lod` and
`use_cdn`: when those ask for something v2 cannot give (quality `sd`, `lod`, `use_cdn = false`)
the models come through v1 and only the camera list through v2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..api import ApiError, NotFoundError, RequestRejected, redact_url
from ..logging import get_logger
from ..models import SegmentModel

log = get_logger("teleport_sync.results")

METADATA_MODES = ("auto", "v2", "v1")
# An account found without v2 is asked v1 only for this long, then v2 is tried once again
# (an account may gain it).
V1_REMEMBERED_FOR = timedelta(days=7)
# A v2 answer with these statuses means "not here": fall back to v1.
FALLBACK_STATUSES = (403, 404, 405)


@dataclass(frozen=True)
class MetadataChoice:
    """`[results] metadata`, `crop_variant`, `coord_system` (also per `[[watch.folder]]`)."""

    mode: str = "v1"
    crop_variant: str | None = None
    coord_system: str | None = None


class FactStore(Protocol):
    """Where the account's answer is remembered (the journal's facts)."""

    def fact(self, key: str) -> str | None: ...

    def set_fact(self, key: str, value: str) -> None: ...


def fact_key(account: str) -> str:
    return f"metadata-version {account}"


class MetadataRoute:
    """Asks v2 or v1 for one account, learns which it answers, keeps that in `facts`."""

    def __init__(
        self,
        account: str,
        choice: MetadataChoice,
        facts: FactStore | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.account = account
        self.choice = choice
        self.facts = facts
        self.now = now

    def remembered(self) -> tuple[str, datetime] | None:
        """(version, when learned) as remembered for this account, or None."""
        raw = self.facts.fact(fact_key(self.account)) if self.facts is not None else None
        try:
            data = json.loads(raw) if raw else None
            return (str(data["version"]), datetime.fromisoformat(data["at"])) if data else None
        except (ValueError, KeyError, TypeError):
            return None

    def ask_v2(self) -> bool:
        if self.choice.mode != "auto":
            return self.choice.mode == "v2"
        known = self.remembered()
        return not (known and known[0] == "v1" and self.now() - known[1] < V1_REMEMBERED_FOR)

    def learn(self, version: str) -> None:
        if self.facts is None:
            return
        known = self.remembered()
        if known and known[0] == version and version == "v2":
            return  # nothing new; v1 is re-stamped so it is not asked again for a while
        value = json.dumps({"version": version, "at": self.now().isoformat()})
        self.facts.set_fact(fact_key(self.account), value)
        log.info("metadata endpoint learned for the account", version=version)


def is_fallback(exc: ApiError) -> bool:
    """A v2 answer that means the account (or this resource) has no v2: 403/404/405."""
    return isinstance(exc, NotFoundError | RequestRejected) and exc.status in FALLBACK_STATUSES


@dataclass(frozen=True)
class V2Answer:
    # None: the answer carries `models` in a v1 shape (`downloads.read_models` reads it).
    models: list[SegmentModel] | None
    cameras_url: str | None
    kept: dict[str, Any]  # the whole answer, URLs without their queries (for metadata.json)


def read_v2(payload: dict[str, Any]) -> V2Answer:
    """The models and camera list of a v2 answer; fields we do not know are kept, not errors.

    `model_urls` (a list, with `model_sizes`) for several files, else `model_url` (a string
    or a list) with `model_size`/`size`; an answer carrying `models` is left to v1's reader.
    """
    urls = payload.get("model_urls") or payload.get("model_url")
    if isinstance(urls, str):
        urls = [urls]
    if isinstance(urls, list) and all(isinstance(u, str) for u in urls):
        sizes = payload.get("model_sizes")
        if not isinstance(sizes, list) or len(sizes) != len(urls):
            one = payload.get("model_size", payload.get("size"))
            sizes = [one if len(urls) == 1 else None] * len(urls)
        models: list[SegmentModel] | None = [
            SegmentModel(url=u, size=s if isinstance(s, int) and s >= 0 else None)
            for u, s in zip(urls, sizes, strict=True)
        ]
    elif payload.get("models") is not None:
        models = None
    else:
        models = []
    cameras = payload.get("cameras_url")
    return V2Answer(
        models, cameras if isinstance(cameras, str) else None, _without_queries(payload)
    )


def _without_queries(value: Any) -> Any:
    """The answer with every URL's query cut off: signed CDN queries never reach the disk."""
    if isinstance(value, dict):
        return {k: _without_queries(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_queries(v) for v in value]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return redact_url(value)
    return value

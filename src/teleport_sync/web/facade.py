"""The console's one view of the daemon: rows, health, throughput, pictures, and its actions.

Pages never reach past this class: it reads the journal and the daemon's live counters, and hands
actions to `operations`. Everything it returns is already safe to show: no secret, no token, no
presigned URL (text from errors is redacted and URLs lose their query strings).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from ..control import PAUSE_ALL
from ..journal import UploadState, shown_path, utc_now
from ..limits import bwlimit_now
from ..logging import REDACTOR
from ..status.health import AUTH_FACT, confirming_reasons
from ..status.phases import PHASES
from ..status.report import ReportOptions, status_rows
from ..status.view import without_path
from . import operations, posed, poseview, views
from .link import DaemonLink
from .thumbnail import PlyError, frame, load_splats, png, render

_URL_QUERY = re.compile(r"(https?://[^\s?\"'<>]+)\?[^\s\"'<>]*")
THUMBNAILS_KEPT = 64
ROWS_SHOWN = 500


def safe_text(text: str | None) -> str | None:
    """Text fit for a page: secrets masked, and no URL keeps a query (signatures live there)."""
    if text is None:
        return None
    return _URL_QUERY.sub(r"\1?…", REDACTOR.redact(text))


# Finished files the console lists (the most recently changed); `status --all` has them all.
FINISHED_SHOWN = 200
# Phases that wait for the operator: a held file goes nowhere until someone approves it.
NEEDS_ATTENTION = ("held", "failed", "rejected")


class Console:
    def __init__(self, link: DaemonLink) -> None:
        self.link = link
        self._thumbs: dict[tuple[str, int, int], tuple[bytes, dict[str, float]]] = {}

    # -- reading ------------------------------------------------------------------------------

    def _options(self) -> ReportOptions:
        """How the daemon decides held and paused files (when it can), for `status_rows`."""
        options = getattr(self.link, "report_options", None)
        if callable(options):
            return options()  # type: ignore[no-any-return]
        return ReportOptions(
            download_wanted=self.link.settings.results.download,
            waiting=confirming_reasons(self.link.journal),  # a claim being confirmed
        )

    def _status_rows(self) -> list[dict[str, Any]]:
        # Everything in hand, and only the latest finished files: a year of them is not a page.
        return status_rows(self.link.journal, self._options(), finished=FINISHED_SHOWN)

    def _status_row(self, file_id: int) -> dict[str, Any] | None:
        rows = status_rows(self.link.journal, self._options(), file_id=file_id)
        return rows[0] if rows else None

    def rows(self, phase: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
        """Every file, newest first, as the pages show it; filtered by phase and a path fragment.

        Files still settling or being written have no journal id (nothing to link or act on).
        """
        ids = {shown_path(path): file_id for path, file_id in self.link.journal.file_ids()}
        out = []
        for row in sorted(self._status_rows(), key=lambda r: r["updated_at"], reverse=True):
            view = self._view(ids.get(row["path"]), row)
            if phase and view["phase"] != phase:
                continue
            if text and text.lower() not in row["path"].lower():
                continue
            out.append(view)
        return out

    def _view(self, file_id: int | None, row: dict[str, Any]) -> dict[str, Any]:
        phase, reason = views.phase_of(row)
        size = row["bytesize"] or 0
        done = self._bytes_done(row, phase)
        path = Path(row["path"])
        return {
            "id": file_id,
            "path": row["path"],
            "file": path.name,
            "folder": str(path.parent),
            "phase": phase,
            "reason": safe_text(without_path(reason, row["path"])),  # the row names the file
            "error": safe_text(row.get("error")),
            "size": views.human_size(size),
            "bytes_done": done,
            "percent": round(100 * done / size, 1) if size else 0,
            "parts": f"{row['parts_done']}/{row['num_parts']}" if row["num_parts"] else "",
            "capture_state": row["capture_state"],
            "upload_state": row["upload_state"],
            "eid": row["eid"],
            "updated": views.short_time(row["updated_at"]),
            # Kept for the file's whole life: the capture was uploaded with these reasons.
            "preflight_warning": safe_text(views.preflight_warning(row.get("preflight"))),
        }

    def _bytes_done(self, row: dict[str, Any], phase: str) -> int:
        size = row["bytesize"] or 0
        if row["upload_state"] == UploadState.UPLOADED or phase in (
            "processing",
            "downloading",
            "done",
        ):
            return size
        live = self.link.progress.live.get(row["path"])
        if live is not None and row["upload_state"] == UploadState.UPLOADING:
            return live[0]
        if row["num_parts"]:
            return min(size, size * row["parts_done"] // row["num_parts"])
        return 0

    def throughput(self) -> float:
        """The uploads' bytes per second over the last few seconds (`status.throughput`)."""
        return self.link.progress.rate.per_second()

    def overview(self) -> dict[str, Any]:
        rows = self.rows()
        counts = dict.fromkeys(PHASES, 0)
        for row in rows:
            counts[row["phase"]] = counts.get(row["phase"], 0) + 1
        limit = bwlimit_now(self.link.settings.upload.bwlimit, datetime.now())
        return {
            "roots": self._roots(),
            "counts": counts,
            "total": len(rows),
            "throughput": views.human_rate(self.throughput()),
            "bwlimit": limit["limit"],
            "window_open": limit["window_open"],
            "auth": self._auth(),
            "active": [r for r in rows if r["phase"] in ("uploading", "waiting", "completing")],
            "problems": [r for r in rows if r["phase"] in NEEDS_ATTENTION][:10],
            "recent": rows[:10],
            "paused": self._paused(),
        }

    def _roots(self) -> list[dict[str, Any]]:
        """The daemon's own view of its watch roots, or what the file system says of them."""
        watcher = getattr(self.link, "watcher", None)
        statuses = getattr(watcher, "root_statuses", None)
        if callable(statuses):
            return [
                dict(r, path=str(r["path"]), problem=safe_text(r.get("problem")))
                for r in statuses()
            ]
        return [self._root(path) for path in self.link.settings.watch.paths]

    @staticmethod
    def _root(path: Path) -> dict[str, Any]:
        if path.is_dir():
            return {"path": str(path), "watched": True, "problem": None}
        problem = "is a file, not a folder" if path.exists() else "does not exist (not mounted?)"
        return {"path": str(path), "watched": False, "problem": problem}

    def _auth(self) -> dict[str, Any]:
        """Whether the API accepts the daemon's credentials, as the daemon last journaled it."""
        try:
            fact = json.loads(self.link.journal.fact(AUTH_FACT) or "null")
        except ValueError:
            fact = None
        if not isinstance(fact, dict):
            return {"ok": None, "error": None}
        return {"ok": fact.get("ok"), "error": safe_text(fact.get("error"))}

    def _paused(self) -> bool:
        """Whether everything is paused (`pause` with no path, or the console's Pause all)."""
        return PAUSE_ALL in self.link.journal.paused_paths()

    def capture(self, file_id: int) -> dict[str, Any] | None:
        """One file in full: its row, timeline, results, preview and viewer links."""
        journal = self.link.journal
        try:
            record = journal.get(file_id)
        except KeyError:
            return None
        row = self._status_row(file_id)
        if row is None:
            return None
        view = self._view(file_id, row)
        parts = journal.parts(file_id)
        acks = sorted(p.acknowledged_at for p in parts.values())
        steps: list[tuple[str, str | None]] = [
            ("noticed", record.created_at),
            ("capture created", record.intent_at),
            ("first part stored", acks[0] if acks else None),
        ]
        if len(acks) > 1:
            steps.append(("last part stored", acks[-1]))
        steps += [(h["state"], h["observed_at"]) for h in row["state_history"] if h["applied"]]
        view["timeline"] = views.timeline(
            steps, utc_now(), finished=view["phase"] in ("done", "failed", "rejected")
        )
        view["results"] = [self._result(i, p) for i, p in enumerate(row["result_paths"])]
        view["ply_index"] = next(
            (r["index"] for r in view["results"] if r["is_ply"] and r["exists"]), None
        )
        view["frame"] = self.model_frame(file_id) if view["ply_index"] is not None else None
        view["has_preview"] = _first_file(getattr(record, "preview_paths", [])) is not None
        # Teleport's own viewer page for the capture (a share link, not a signed URL).
        view["viewer_url"] = safe_text(getattr(record, "viewer_url", None) or row.get("viewer_url"))
        view["name"] = row.get("name")
        view["advice"] = views.advice(view["phase"], row["upload_state"], row.get("error"))
        view["attempts"] = record.attempts
        view["preflight"] = self._preflight(file_id, row.get("preflight"))
        view["teleport"] = posed.posed_view(record)
        view["pose"] = poseview.pose_view(row.get("preflight"), safe_text)
        return view

    def _preflight(self, file_id: int, found: dict[str, Any] | None) -> dict[str, Any] | None:
        """What pre-flight said, and its worst frames as a strip of thumbnails (by rank)."""
        if not found:
            return None
        why = {w["name"]: w["why"] for w in found.get("worst_frames", [])}
        names = self.link.journal.preflight_frame_names(file_id)
        return {
            "verdict": found["verdict"],
            "reasons": [safe_text(r) for r in found.get("reasons", [])],
            "measures": found.get("measures", []),
            "frames": [
                {"rank": rank, "name": name, "why": why.get(name, "")}
                for rank, name in enumerate(names)
            ],
            "approved_at": views.short_time(found["approved_at"])
            if found.get("approved_at")
            else None,
        }

    def preflight_frame(self, file_id: int, rank: int) -> bytes | None:
        """The JPEG of the `rank`-th worst frame pre-flight found, or None."""
        found = self.link.journal.preflight_frame(file_id, rank)
        return found[1] if found else None

    @staticmethod
    def _result(index: int, path: str) -> dict[str, Any]:
        p = Path(path)
        exists = p.is_file()
        return {
            "index": index,
            "file": p.name,
            "size": views.human_size(p.stat().st_size) if exists else "missing",
            "exists": exists,
            "is_ply": p.suffix.lower() == ".ply",
        }

    def result_path(self, file_id: int, index: int) -> Path | None:
        """A result file of this row (only those: the console serves no other path)."""
        try:
            paths = self.link.journal.get(file_id).result_paths
        except KeyError:
            return None
        if not 0 <= index < len(paths) or not Path(paths[index]).is_file():
            return None
        return Path(paths[index])

    def preview_path(self, file_id: int) -> Path | None:
        """Teleport's preview image of the capture, as downloaded beside the model."""
        try:
            record = self.link.journal.get(file_id)
        except KeyError:
            return None
        return _first_file(getattr(record, "preview_paths", []))

    def _picture(self, file_id: int) -> tuple[bytes, dict[str, float]] | None:
        """The row's first `.ply` drawn as a PNG, and where the model sits (for the 3D view);
        cached until that file changes."""
        try:
            paths = self.link.journal.get(file_id).result_paths
        except KeyError:
            return None
        ply = next((Path(p) for p in paths if p.lower().endswith(".ply")), None)
        if ply is None:
            return None
        try:
            st = ply.stat()
            key = (str(ply), st.st_mtime_ns, st.st_size)
            if key not in self._thumbs:
                if len(self._thumbs) >= THUMBNAILS_KEPT:
                    self._thumbs.clear()  # a plain bound; a picture costs a few ms to redraw
                splats = load_splats(ply)
                (x, y, z), radius = frame(splats)
                where = {"x": x, "y": y, "z": z, "radius": radius}
                self._thumbs[key] = (png(render(splats), 320, 240), where)
        except (OSError, PlyError):
            return None
        return self._thumbs[key]

    def thumbnail(self, file_id: int) -> bytes | None:
        picture = self._picture(file_id)
        return picture[0] if picture else None

    def model_frame(self, file_id: int) -> dict[str, float] | None:
        picture = self._picture(file_id)
        return picture[1] if picture else None

    # -- acting -------------------------------------------------------------------------------

    def act(self, action: str, file_id: int | None) -> str:
        """Run one of the console's actions; `ActionRefused` (or KeyError) says why not."""
        link = self.link
        if action == "pause":
            return operations.pause(link, file_id)
        if action == "resume":
            return operations.resume(link, file_id)
        if file_id is None:
            raise operations.ActionRefused(f"{action} needs a file")
        if action == "retry":
            return operations.retry_now(link, file_id)
        if action == "forget":
            row = self._status_row(file_id)
            if row is None:
                raise KeyError(file_id)
            return operations.forget(link, file_id, row)
        if action == "approve":
            return operations.approve(link, file_id)
        raise operations.ActionRefused(f"unknown action {action!r}")


def _first_file(paths: list[str]) -> Path | None:
    return next((Path(p) for p in paths if Path(p).is_file()), None)

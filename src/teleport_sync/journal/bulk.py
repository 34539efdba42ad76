"""A year of finished rows as `status --json` prints them, rendered by SQLite (issue 32).

`status --json` prints every row, and at 50,000 rows building each row's object in Python and
encoding it costs seconds. A finished row (`report._finished_sql`) needs no Python: its phase
and reason follow from its capture state, and everything else is a column, its state history,
or a JSON text the journal stored with `json.dumps`. So SQLite writes its line, byte for byte
what `json.dumps` prints of the object `status.report` builds (the contract's one reference:
`tests/test_status_json_rows.py` renders every kind of row both ways and compares the bytes).

SQLite renders a row only where that is exact; the others come back as None, and the caller
builds them with the reference (`report_rows(file_ids=...)`): a path stored as bytes (not
UTF-8), a `teleport_posed` (its sentence is Python's), a float that 15 digits do not say
exactly, a pre-flight report that is not strict JSON (NaN) or already holds the keys added to
it. The caller also sends to the reference every line that holds a backslash, DEL or anything
but ASCII: values with escapes, which `json.dumps`, `logging.printable` and `shown_path` write
in their own ways. What passes is printable ASCII that every one of them leaves as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .base import BaseJournal
from .preflight import PREFLIGHT_JOIN
from .report import _finished_sql, finished_where


def _q(column: str) -> str:
    # Most of a finished row's columns are NULL: no function call for those (~10 % of it).
    return f"CASE WHEN {column} IS NULL THEN 'null' ELSE json_quote({column}) END"


def _number(column: str) -> str:
    """A number as Python prints it: a REAL by the same `%!.15g` as `_float_exact` judged it
    by (not json_quote's, whose digits SQLite's versions have changed)."""
    return (
        f"CASE WHEN {column} IS NULL THEN 'null' WHEN typeof({column}) = 'real' "
        f"THEN printf('%!.15g', {column}) ELSE json_quote({column}) END"
    )


def _float_exact(column: str) -> str:
    """A REAL that json_quote writes as Python's repr does: 15 digits say it exactly (so the
    shortest repr has at most 15, DBL_DIG), and both write it without an exponent."""
    return (
        f"({column} IS NULL OR typeof({column}) <> 'real' OR (abs({column}) >= 0.0001 "
        f"AND abs({column}) < 1e15 "
        f"AND CAST(printf('%!.15g', {column}) AS REAL) = {column}))"
    )


def _json_text(column: str, empty: str) -> str:
    """A list or map stored by `json.dumps`, as it prints it again (when it holds no escapes:
    the caller checks)."""
    return f"CASE WHEN COALESCE({column}, '') IN ('', '{empty}') THEN '{empty}' ELSE {column} END"


_ENTRY = (
    """printf('{"state": %s, "observed_at": %s, "source": %s, "applied": %s, "note": %s}', """
    f"json_quote(h.state), json_quote(h.observed_at), {_q('h.source')}, "
    f"CASE WHEN h.applied THEN 'true' ELSE 'false' END, {_q('h.note')})"
)
_HISTORY = f"""'[' || COALESCE((SELECT group_concat({_ENTRY}, ', ')
    FROM (SELECT state, observed_at, source, applied, note FROM state_history h
        WHERE h.file_id = f.id ORDER BY h.id) h), '') || ']'"""

# `{**report, "checked_at": ..., "approved_at": ...}` of a report without those keys.
_PREFLIGHT = """CASE WHEN COALESCE(p.report, '') = '' OR p.fingerprint IS NOT f.fingerprint
    THEN 'null'
    ELSE CASE WHEN p.report = '{}' THEN '{' ELSE substr(p.report, 1, length(p.report) - 1)
        || ', ' END || '"checked_at": ' || json_quote(p.checked_at) || ', "approved_at": '
        || json_quote(p.approved_at) || '}' END"""

_PREFLIGHT_PLAIN = """(p.report IS NULL OR p.report = '' OR (json_valid(p.report)
    AND p.report LIKE '{%}' AND instr(p.report, '"checked_at"') = 0
    AND instr(p.report, '"approved_at"') = 0))"""

# (contract field, SQL giving its JSON text), in the contract's order (`status.report._row`).
_FIELDS = (
    ("path", _q("f.path")),  # `shown_path` changes only paths with escapes
    ("bytesize", _q("f.size")),
    ("input_data_format", _q("f.input_data_format")),
    ("name", _q("f.name")),
    ("eid", _q("f.eid")),
    ("sid", _q("f.sid")),
    ("upload_state", _q("f.upload_state")),
    ("parts_done", "json_quote((SELECT COUNT(*) FROM parts pt WHERE pt.file_id = f.id))"),
    ("num_parts", _q("f.num_parts")),
    ("capture_state", _q("f.capture_state")),
    ("unlisted_since", _q("f.unlisted_since")),
    ("unlisted_confirmed_at", _q("f.unlisted_confirmed_at")),
    ("state_history", _HISTORY),
    ("error", _q("f.error")),
    ("attempts", _q("f.attempts")),
    ("next_attempt_at", _q("f.next_attempt_at")),
    ("result_paths", _json_text("f.result_paths", "[]")),
    ("updated_at", _q("f.updated_at")),
    ("phase", "json_quote(:phase)"),
    (
        "reason",
        "json_quote(CASE WHEN UPPER(f.capture_state) = 'DELETED' THEN :deleted ELSE :ready END)",
    ),
    ("frames", _number("f.frames")),
    ("duration_seconds", _number("f.duration_seconds")),
    ("estimated_cost", _number("f.estimated_cost")),
    ("result_error", _q("f.result_error")),
    ("results_by_profile", _json_text("f.results_by_profile", "{}")),
    ("preview_paths", _json_text("f.preview_paths", "[]")),
    ("result_next_at", _q("f.result_next_at")),
    ("viewer_url", _q("f.viewer_url")),
    ("preflight", _PREFLIGHT),
    ("teleport_posed", "'null'"),
)

# One printf (a chain of || copies the growing line at every step).
_FORMAT = "{" + ", ".join(f'"{name}": %s' for name, _ in _FIELDS) + "}"
_RENDERED = f"printf('{_FORMAT}', {', '.join(sql for _, sql in _FIELDS)})"

_RENDERABLE = " AND ".join(
    [
        "typeof(f.path) = 'text'",
        "(f.teleport_posed IS NULL OR f.teleport_posed = '')",
        *(_float_exact(f"f.{c}") for c in ("frames", "duration_seconds", "estimated_cost")),
        _PREFLIGHT_PLAIN,
    ]
)


class BulkReportMixin(BaseJournal):
    """`status --json`'s finished rows, rendered in one query."""

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one state of the journal (one read transaction), whatever another
        process writes meanwhile: a report made of several queries agrees with itself."""
        with self._lock:
            if self._conn.in_transaction:
                yield
                return
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                self._rollback()  # nothing was written: ending the read is all it does

    def finished_json(
        self,
        *,
        download_wanted: bool,
        phase: str,
        ready: str | None,
        deleted: str | None,
        finished_ids: list[int] | None = None,
    ) -> list[tuple[int, str | None]]:
        """(id, line) of every file row, by id: a finished row's `status --json` object as
        `json.dumps` prints it, or None for a row in hand or one SQLite cannot render exactly
        (the module's docstring). `phase` and the reasons (`ready`, `deleted`) are what
        `status.phases.derive` says of a finished READY and DELETED capture. With
        `finished_ids`, of the finished rows only those (the ones a filter keeps)."""
        done = _finished_sql(download_wanted)
        where, among = finished_where(download_wanted, finished_ids)
        rows = self._query(
            f"""SELECT f.id, CASE WHEN ({done}) AND {_RENDERABLE} THEN {_RENDERED} END AS line
                FROM files f {PREFLIGHT_JOIN} {where} ORDER BY f.id""",
            {"phase": phase, "ready": ready, "deleted": deleted, **among},
        )
        return [(r[0], r[1]) for r in rows]

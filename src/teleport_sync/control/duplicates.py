"""The same bytes under a new name (`second_take.zip` = `scan.zip`; a camera's `CAM_0001.MP4`
copied twice): found by content, never by name, before a second capture is paid for.

Candidates come from the journal's cheap fingerprint (size plus a hash of the first and last
MiB, `inputs.identity`): rows with the same size and fingerprint whose capture exists and did
not fail. A candidate is confirmed by the whole content before anything is held: the new file's
MD5 per part, with the earlier upload's part size, against the part MD5s the journal kept for
it (so the earlier file need not exist any more); where those are not all journaled, a full
hash of both files when the earlier one is still there unchanged. Unconfirmed: not a duplicate.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..api.hashing import part_hasher
from ..inputs import InputProblem, identify
from ..inputs.remux import is_quicktime
from ..journal import FileRecord, Journal

BLOCK = 1 << 20  # read size of the whole-file hash


def find_duplicate(journal: Journal, record: FileRecord) -> FileRecord | None:
    """The earliest uploaded row holding exactly the bytes of `record`'s file now, or None."""
    identity = record.identity
    for earlier in journal.same_content_candidates(record.id, identity.size, identity.fingerprint):
        if same_bytes(Path(record.path), earlier, journal) is True:
            return earlier
    return None


def duplicate_sentence(earlier: FileRecord) -> str:
    if earlier.eid is None:
        return (
            f"the same bytes as {earlier.path}, which is being uploaded now (its capture is not "
            "made yet); a second capture would be paid again"
        )
    return (
        f"the same bytes as {earlier.path}, already uploaded as capture {earlier.eid}; a second "
        "capture would be paid again"
    )


def same_bytes(path: Path, earlier: FileRecord, journal: Journal) -> bool | None:
    """Does `path` hold exactly the bytes `earlier` uploaded? None when it cannot be told."""
    parts = journal.parts(earlier.id)
    # A .mov's parts are of its remux to MP4, not of the file: compare the files themselves.
    complete = not is_quicktime(Path(earlier.path)) and (
        earlier.chunk_size
        and earlier.num_parts
        and len(parts) == earlier.num_parts
        and all(p.md5 for p in parts.values())
    )
    try:
        if complete:
            sums = _part_md5s(path, int(earlier.chunk_size or 0))
            return sums == [parts[n].md5.lower() for n in sorted(parts)]
        other = Path(earlier.path)
        if identify(other).fingerprint != earlier.identity.fingerprint:
            return None  # changed or gone: nothing left to compare with
        return _whole_hash(path) == _whole_hash(other)
    except (OSError, InputProblem):
        return None


def _part_md5s(path: Path, chunk_size: int) -> list[str]:
    """The MD5 of each part, as the upload computes them (eight lanes at a time where the CPU
    can, else a thread per core)."""
    size = path.stat().st_size
    hasher = part_hasher(os.cpu_count() or 1)
    try:
        regions = [(at, min(chunk_size, size - at)) for at in range(0, size, chunk_size)]
        return [future.result() for future in [hasher.submit(path, *r) for r in regions]]
    finally:
        hasher.close()


def _whole_hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=32)
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()

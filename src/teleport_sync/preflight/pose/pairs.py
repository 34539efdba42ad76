"""Which frames are matched with which, and the groups a set of matched pairs falls into.

Pure Python, so the choices are tested alone. A time-ordered set (a video, photos in capture
order) is matched with its next `overlap` neighbours, every `overlap / 2`-th frame also with
frames a power of two apart (a walk that comes back is found: one bridge suffices to join
two groups), and the ends against each other (an orbit closes its loop): about
n x (overlap + 2 log n / overlap) pairs, not n²/2. A small set, or one whose order means nothing, is
matched exhaustively.
"""

from __future__ import annotations

from collections.abc import Iterable


def pairs_for(
    count: int, *, ordered: bool, overlap: int, exhaustive_up_to: int
) -> list[tuple[int, int]]:
    """The pairs (i < j) to match among `count` frames."""
    if count <= exhaustive_up_to or not ordered:
        return [(i, j) for i in range(count) for j in range(i + 1, count)]
    chosen: set[tuple[int, int]] = set()
    for i in range(count):
        for j in range(i + 1, min(count, i + overlap + 1)):
            chosen.add((i, j))
        if i % max(1, overlap // 2):
            continue
        step = 2 * overlap
        while i + step < count:
            chosen.add((i, i + step))
            step *= 2
    ends = min(overlap, count // 2)
    for i in range(ends):  # the loop's closure: the first frames against the last
        for j in range(count - ends, count):
            if i < j:
                chosen.add((i, j))
    return sorted(chosen)


def groups(count: int, edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """The connected groups of frames (largest first; single frames left out of no group)."""
    parent = list(range(count))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        parent[root(a)] = root(b)
    members: dict[int, list[int]] = {}
    for node in range(count):
        members.setdefault(root(node), []).append(node)
    return sorted(members.values(), key=lambda g: (-len(g), g[0]))

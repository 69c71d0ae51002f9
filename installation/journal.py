"""Keeping metrics.jsonl and events.jsonl within a fixed size for a run of weeks.

metrics.jsonl is compacted to the journey as it stands (engine.history: the futures a rewind or resume abandoned go)
and, while that is still too big, its older part is thinned to every k-th iteration (k doubling) so the newest
stretch stays at full density and the whole journey can still be plotted. events.jsonl keeps its first line (the
run's start) and its newest lines. Both are rewritten atomically, so a kill during compaction leaves the old file or
the new one; the reader (journey.read_metrics, engine.history) reads the result as before.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .storage import atomic_write_bytes


def kept_before(iterations: Sequence[int], iteration: int) -> int:
    """How many of the journey's kept lines (their iterations, ascending) stay when a line at `iteration` comes: a
    line at i replaces every kept line at i or later (a resume from an older snapshot, a rewind, a rollback abandon
    that future)."""
    return bisect.bisect_left(iterations, iteration)


def history(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The journey as it stands, from metrics lines in file order (see `kept_before`)."""
    kept: list[dict[str, Any]] = []
    iterations: list[int] = []
    for line in lines:
        stay = kept_before(iterations, line["iteration"])
        del kept[stay:], iterations[stay:]
        kept.append(line)
        iterations.append(line["iteration"])
    return kept


KEEP_SHARE = 0.5  # a compacted file fills this share of its budget, so compaction is rare
RECENT_SHARE = 0.5  # of what is kept, the newest lines at full density


def _lines(path: Path) -> list[bytes]:
    try:
        return [line for line in path.read_bytes().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


_LEADING = b'{"iteration": '  # how the engine writes every metrics line (json.dumps, iteration first)


def _iteration(raw: bytes) -> int | None:
    """A metrics line's iteration, read without parsing the whole line where it leads (a journal of weeks is
    compacted between two training steps); None for a line that is not complete JSON with an iteration."""
    if raw.startswith(_LEADING) and raw.endswith(b"}"):
        digits = raw[len(_LEADING):raw.find(b",", len(_LEADING))]
        if digits.isdigit():
            return int(digits)
    try:
        return int(json.loads(raw)["iteration"])
    except (ValueError, KeyError, TypeError):
        return None


def compact_metrics(path: Path, max_bytes: int) -> bool:
    """Rewrite `path` within `max_bytes * KEEP_SHARE` when it is larger than `max_bytes`; True when rewritten."""
    if not path.exists() or path.stat().st_size <= max_bytes:
        return False
    parsed: list[dict[str, Any]] = []  # only the iteration and the line as written: weeks of lines fit in memory
    for raw in _lines(path):
        iteration = _iteration(raw)
        if iteration is not None:  # a torn or foreign line is dropped: the readers skip it too
            parsed.append({"iteration": iteration, "raw": raw})
    kept = history(parsed)
    journey = [line["raw"] for line in kept]
    iterations = [line["iteration"] for line in kept]
    del parsed, kept
    target = int(max_bytes * KEEP_SHARE)
    split = len(journey) - _newest_fitting(journey, target * RECENT_SHARE)  # the newest, at full density
    recent, journey, iterations = journey[split:], journey[:split], iterations[:split]
    size = sum(len(raw) + 1 for raw in recent)
    step = 1
    older = journey
    while older and sum(len(raw) + 1 for raw in older) + size > target:
        step *= 2
        older = [raw for raw, it in zip(journey, iterations) if it % step == 0]
    atomic_write_bytes(path, b"".join(raw + b"\n" for raw in older + recent))
    return True


def compact_events(path: Path, max_bytes: int) -> bool:
    """Keep the first event and the newest ones within `max_bytes * KEEP_SHARE` once `path` is over `max_bytes`."""
    if not path.exists() or path.stat().st_size <= max_bytes:
        return False
    lines = _lines(path)
    first, rest = lines[:1], lines[1:]
    keep = _newest_fitting(rest, max_bytes * KEEP_SHARE - sum(len(raw) + 1 for raw in first))
    tail = rest[len(rest) - keep:]
    atomic_write_bytes(path, b"".join(raw + b"\n" for raw in first + tail))
    return True


def _newest_fitting(lines: list[bytes], budget: float) -> int:
    """How many of the newest `lines` (each written with its newline) fit within `budget` bytes."""
    size = count = 0
    for raw in reversed(lines):
        if size + len(raw) + 1 > budget:
            break
        size += len(raw) + 1
        count += 1
    return count

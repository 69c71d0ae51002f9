"""File names for what the installation records: never overwrite, never lose a file cut off by a kill.

A name is reserved by creating a file exclusively, so two writers never take the same one. A file written at once
(a picture, written atomically) reserves its own name; a video, written for minutes, reserves its partial name
(`NAME.partial`, which its encoder writes and renames to NAME once complete): a copier that takes `*.mp4` during a
show never finds an empty or half-written file under the real name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PARTIAL = ".partial"  # an encoder's file while it is written; renamed to its real name once complete


def partial_path(path: Path) -> Path:
    """The name `path` is written under until it is complete."""
    return path.with_name(path.name + PARTIAL)


def claim_path(folder: Path, stem: str, suffix: str, stamp: float | None = None) -> Path:
    """A new, unused `folder/stem-YYYYmmdd-HHMMSS[-N]suffix`, created empty so no other writer takes it too: for a
    file written at once."""
    return _claim(folder, stem, suffix, stamp, partial=False)


def claim_partial(folder: Path, stem: str, suffix: str, stamp: float | None = None) -> Path:
    """Like `claim_path`, but the name is reserved by creating its partial name (empty) and the real name stays free
    until the file is complete: for a file written over time (VideoEncoder writes the partial and renames it)."""
    return _claim(folder, stem, suffix, stamp, partial=True)


def _claim(folder: Path, stem: str, suffix: str, stamp: float | None, partial: bool) -> Path:
    """The first name free under both its forms (real and partial), reserved by creating one of them exclusively."""
    folder.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp))}"
    for n in range(1, 10_000):
        path = folder / f"{base}{'' if n == 1 else f'-{n}'}{suffix}"
        mine, other = (partial_path(path), path) if partial else (path, partial_path(path))
        if other.exists():
            continue
        try:
            os.close(os.open(mine, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        if other.exists():  # taken in its other form between the check and the reservation
            mine.unlink()
            continue
        return path
    raise FileExistsError(f"{folder}: no free name for {base}{suffix}")


def recover_partials(folder: Path) -> list[Path]:
    """Give every leftover `NAME.partial` (its writer was killed) its playable name; returns the new names.

    Fragmented files play up to their last complete fragment, so nothing is deleted, only renamed (to a fresh
    name where the real one is taken); an empty one (claimed, never written) goes. Call it only while holding the
    folder's instance lock."""
    recovered = []
    for partial in sorted(folder.glob(f"*{PARTIAL}")) if folder.is_dir() else []:
        final = partial.with_name(partial.name[:-len(PARTIAL)])
        if partial.stat().st_size == 0:
            partial.unlink()
            continue
        if final.exists():
            final = final.with_name(f"{final.stem}-recovered{final.suffix}")
        os.replace(partial, final)
        recovered.append(final)
    return recovered

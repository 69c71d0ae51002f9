"""File names for what the installation records: never overwrite, never lose a file cut off by a kill."""

from __future__ import annotations

import os
import time
from pathlib import Path

PARTIAL = ".partial"  # an encoder's file while it is written; renamed to its real name once complete


def claim_path(folder: Path, stem: str, suffix: str, stamp: float | None = None) -> Path:
    """A new, unused `folder/stem-YYYYmmdd-HHMMSS[-N]suffix`, created empty so no other writer takes it too.

    The partial name beside it is checked as well, so a file still being written keeps its name free."""
    folder.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp))}"
    for n in range(1, 10_000):
        path = folder / f"{base}{'' if n == 1 else f'-{n}'}{suffix}"
        if (path.parent / (path.name + PARTIAL)).exists():
            continue
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{folder}: no free name for {base}{suffix}")


def recover_partials(folder: Path) -> list[Path]:
    """Give every leftover `NAME.partial` (its writer was killed) its playable name; returns the new names.

    Fragmented files play up to their last complete fragment, so nothing is deleted, only renamed (to a fresh
    name where the real one is taken). Call it only while holding the folder's instance lock."""
    recovered = []
    for partial in sorted(folder.glob(f"*{PARTIAL}")) if folder.is_dir() else []:
        final = partial.with_name(partial.name[:-len(PARTIAL)])
        if partial.stat().st_size == 0:  # claimed, never written: no data to keep
            partial.unlink()
            if final.exists() and final.stat().st_size == 0:
                final.unlink()
            continue
        if final.exists() and final.stat().st_size > 0:
            final = final.with_name(f"{final.stem}-recovered{final.suffix}")
        os.replace(partial, final)
        recovered.append(final)
    return recovered

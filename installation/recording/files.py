"""Files the installation records: names that never overwrite, files cut off by a kill or a full disk kept
playable, their length read from what was written, and folders kept within a size.

A name is reserved by creating a file exclusively, so two writers never take the same one. A file written at once
(a picture, written atomically) reserves its own name; a video, written for minutes, reserves its partial name
(`NAME.partial`, which its encoder writes and renames to NAME once complete): a copier that takes `*.mp4` during a
show never finds an empty or half-written file under the real name.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import time
from pathlib import Path

import imageio_ffmpeg

PARTIAL = ".partial"  # an encoder's file while it is written; renamed to its real name once complete
_FPS = re.compile(r"Stream #\S+: Video: .*?, (\d+(?:\.\d+)?) fps")


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
        cut_to_whole_fragments(partial)
        os.replace(partial, final)
        recovered.append(final)
    return recovered


def cut_to_whole_fragments(path: Path) -> bool:
    """Cut a fragmented MP4/MOV whose writer stopped half way (killed, or out of disk space mid-write) after its last
    complete fragment, so that it plays to its end and its length reads true; cutting needs no free space, unlike a
    repair by copying. True when something was cut. A finished file (every box whole) is left as it is."""
    keep, moof_at = 0, None
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            position = 0
            while position + 8 <= size:
                f.seek(position)
                length, kind = struct.unpack(">I4s", f.read(8))
                if length == 1:
                    length = struct.unpack(">Q", f.read(8))[0]
                elif length == 0:  # to the end of the file
                    length = size - position
                if position == 0 and kind != b"ftyp":
                    return False  # not an MP4/MOV as ffmpeg writes them: leave it as it is
                if length < 8 or position + length > size:
                    break  # the box being written when it stopped
                position += length
                if kind == b"moof":
                    moof_at = position - length  # a fragment's index: whole only with the media after it
                else:
                    keep, moof_at = position, None
            if moof_at is not None:
                keep = min(keep, moof_at)
            if keep >= size or keep == 0:
                return False
            f.truncate(keep)
            return True
    except (OSError, struct.error):
        return False


def video_length(path: Path) -> tuple[int, float]:
    """(frames, seconds) of the video stream as written: its packets counted by a stream copy (no decoding, so an
    hour of video takes a second or two), seconds from the file's constant frame rate. RuntimeError when ffmpeg
    cannot read it."""
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map",
                           "0:v:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, start_new_session=True,
                          timeout=300)
    frames = [int(line[6:]) for line in done.stdout.splitlines() if line.startswith("frame=")]
    fps = _FPS.search(done.stderr)
    if done.returncode != 0 or not frames or fps is None:
        raise RuntimeError(f"ffmpeg cannot read {path}")
    return frames[-1], frames[-1] / float(fps.group(1))


def prune_oldest(folder: Path, patterns: tuple[str, ...], budget: float, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Delete the oldest files matching `patterns` in `folder` (by modification time) while together they take more
    than `budget` bytes; `keep` (and files still being written) are never deleted. Returns those deleted."""
    found = {path for pattern in patterns for path in folder.glob(pattern)
             if path.is_file() and not path.name.endswith(PARTIAL)}
    files = sorted(found, key=lambda path: path.stat().st_mtime)
    total = sum(path.stat().st_size for path in files)
    deleted = []
    for path in files:
        if total <= budget:
            break
        if path in keep:
            continue
        total -= path.stat().st_size
        path.unlink(missing_ok=True)
        deleted.append(path)
    return deleted

"""Live recordings' settings ([record] table) and the codec and size rules they share with OSC and the exports."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from ..storage import write_problem
from ..validation import ConfigError, check_choice, check_float, check_int, check_size
from .encoder import CODECS, ENCODERS

SYSTEM_FOLDERS = (Path("/proc"), Path("/sys"))  # the kernel's views, not disks: nothing can be recorded there


def check_codec(value: object) -> str:
    """A video codec name: the one rule for the [record] table and /uncanny/record/start."""
    return check_choice("codec", value, CODECS)


def record_size(text: str) -> tuple[int, int] | None:
    """A recording's "WIDTHxHEIGHT"; None for "" or "0x0" (the output's own size)."""
    return None if text in ("", "0x0") else check_size(text, ' or "" for the output\'s size')


@dataclass(frozen=True)
class RecordConfig:
    """Live recordings of the presented picture ([record] table; started by key v or /uncanny/record/start)."""

    codec: str = "h264"  # the default codec; /uncanny/record/start may name another
    size: str = ""  # "WIDTHxHEIGHT"; "" or "0x0" = the output's size
    fps: float = 30.0  # the file's constant frame rate; the display's frames are repeated or skipped to hold it
    quality: int = 18  # H.264 constant rate factor, 0 (lossless) .. 51; lower = better and larger
    max_minutes: float = 60.0  # a recording stops itself after this long; 0 = no limit
    folder: str = "recordings"  # relative to the run folder, or an absolute path
    hud: bool = False  # record the HUD too (never the red recording dot)
    encoder: str = "auto"  # H.264 with x264 on the CPU, or NVENC on the GPU; auto = NVENC where ffmpeg can use it
    folder_gb: float = 50.0  # the recordings and loop exports in `folder` stay within this; the oldest go first
    live_segment_minutes: float = 60.0  # the headless live video is a new file this often ...
    live_gb: float = 20.0  # ... and its files stay within this, the oldest deleted first

    def __post_init__(self) -> None:
        check_codec(self.codec)
        check_choice("encoder", self.encoder, ENCODERS)
        record_size(self.size)
        check_float("fps", self.fps, 1.0, 240.0)
        check_int("quality", self.quality, 0, 51)
        check_float("max_minutes", self.max_minutes, 0.0, 7 * 24 * 60.0)
        check_float("folder_gb", self.folder_gb, 0.0, 1e6, low_open=True)
        check_float("live_segment_minutes", self.live_segment_minutes, 1.0, 24 * 60.0)
        check_float("live_gb", self.live_gb, 0.0, 1e6, low_open=True)
        if not self.folder.strip() or "\0" in self.folder:
            raise ConfigError(f"folder must name a folder (e.g. \"recordings\", under the run folder), got "
                              f"{self.folder!r}")
        if Path(self.folder).is_absolute():
            _check_not_system(Path(self.folder))

    def folder_in(self, run_dir: Path) -> Path:
        """Where the recordings go: `folder` under the run folder, or where it points when absolute."""
        folder = Path(self.folder).expanduser()
        return folder if folder.is_absolute() else Path(run_dir) / folder

    def check_folder(self, run_dir: Path) -> str | None:
        """At start: ConfigError (one line) for a folder that can never take a recording (a system folder, a file
        in the way, no permission); for one that cannot now (a read-only or vanished disk) the line to say, as the
        show starts without recording; None when it can be written. Touches nothing."""
        folder = self.folder_in(run_dir)
        _check_not_system(folder)
        problem = write_problem(folder)
        if problem is None:
            return None
        text = f"folder {str(folder)!r} cannot be written ({problem.strerror or problem})"
        if problem.errno in (errno.EROFS, errno.ENOSPC, errno.ENOENT, errno.EIO):
            return f"{text}: recording is off until it can be"
        raise ConfigError(f"{text}; choose a folder this user may write")

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the file, None for the output's own size."""
        return record_size(self.size)


def _check_not_system(folder: Path) -> None:
    try:
        resolved = folder.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        raise ConfigError(f"folder {str(folder)!r} cannot be resolved ({error}); choose a real folder") from None
    for system in SYSTEM_FOLDERS:
        if resolved.is_relative_to(system):
            raise ConfigError(f"folder {str(folder)!r} is under {system}, a view of the kernel, not a disk; choose "
                              "a folder on a disk")

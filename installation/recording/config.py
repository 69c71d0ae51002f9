"""Live recordings' settings ([record] table) and the codec and size rules they share with OSC and the exports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..validation import ConfigError, check_choice, check_float, check_int, check_size
from .encoder import CODECS, ENCODERS


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

    def __post_init__(self) -> None:
        check_codec(self.codec)
        check_choice("encoder", self.encoder, ENCODERS)
        record_size(self.size)
        check_float("fps", self.fps, 1.0, 240.0)
        check_int("quality", self.quality, 0, 51)
        check_float("max_minutes", self.max_minutes, 0.0, 7 * 24 * 60.0)
        if not self.folder.strip():
            raise ConfigError("folder must name a folder (e.g. \"recordings\", under the run folder)")

    def folder_in(self, run_dir: Path) -> Path:
        """Where the recordings of a run in `run_dir` go."""
        folder = Path(self.folder).expanduser()
        return folder if folder.is_absolute() else run_dir / folder

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the file, None for the output's own size."""
        return record_size(self.size)

"""The screen and headless output ([display] table)."""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import SIDE_PIXELS, ConfigError, check_choice, check_float, check_int

MODES = ("fit", "fill", "stretch")  # how the picture is placed on an output of another shape (presenter.layout)


@dataclass(frozen=True)
class DisplayConfig:
    fullscreen: bool = True
    monitor: str = ""  # index ("1"; a TOML number is read as one) or name; empty: the primary monitor
    width: int = 1920  # windowed and headless size; full-screen uses the monitor's mode
    height: int = 1080
    mode: str = "fit"  # fit (letterbox) | fill (crop) | stretch
    letterbox: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB 0..1
    crossfade: float = -1.0  # 0 cuts from frame to frame; -1 (or up to 10) blends the frames around the present
    show_grid: bool = False
    hud: bool = False
    keys: bool = True  # development keys; switch off for gallery use
    fps: float = 30.0  # headless output frame rate

    def __post_init__(self) -> None:
        check_int("width", self.width, *SIDE_PIXELS)
        check_int("height", self.height, *SIDE_PIXELS)
        check_choice("mode", self.mode, MODES)
        if len(self.letterbox) != 3:
            raise ConfigError(f"letterbox must be three numbers 0..1 (RGB), got {list(self.letterbox)!r}")
        for value in self.letterbox:
            check_float("letterbox", value, 0.0, 1.0)
        if self.crossfade != -1.0 and not (isinstance(self.crossfade, (int, float))
                                           and not isinstance(self.crossfade, bool) and 0 <= self.crossfade <= 10):
            raise ConfigError(f"crossfade must be -1 (follow the generator's frame interval) or 0..10 seconds "
                              f"(0 cuts), got {self.crossfade!r}")
        check_float("fps", self.fps, 1.0, 240.0)

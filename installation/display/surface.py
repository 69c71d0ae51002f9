"""Where the live loop draws: a window on a monitor or an offscreen framebuffer, behind one small interface.

Like moderngl-window's backends, the two differ only in how a refresh begins and ends; the loop, the presenter and
every output are the same for both (live/loop.py):

    surface.begin()      bind the framebuffer to draw this refresh into
    ... draw ...
    surface.present()    show it (a window swaps buffers and handles its events; offscreen does nothing)

`paced`: whether `present` waits for the screen (a window with vsync); the loop paces an unpaced surface itself.
"""

from __future__ import annotations

from typing import Protocol

import moderngl
import numpy as np


class Surface(Protocol):
    ctx: moderngl.Context

    @property
    def size(self) -> tuple[int, int]: ...

    @property
    def paced(self) -> bool: ...

    @property
    def should_close(self) -> bool: ...

    def begin(self) -> None: ...

    def present(self) -> None: ...

    def close(self) -> None: ...


def read_framebuffer(ctx: moderngl.Context, size: tuple[int, int]) -> np.ndarray:
    """The bound framebuffer (the back buffer just drawn, or the offscreen target) as height x width x 3, top row
    first."""
    width, height = size
    pixels = ctx.fbo.read(viewport=(0, 0, width, height), components=3, alignment=1)
    return np.frombuffer(pixels, np.uint8).reshape(height, width, 3)[::-1]

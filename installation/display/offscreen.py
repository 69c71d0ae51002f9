"""Headless rendering (EGL, no window or X server), for the headless run, tests, benchmarks and loop export."""

from __future__ import annotations

import moderngl
import numpy as np

from .gl import load_triton_before_gl

load_triton_before_gl()  # before any context is made here (see gl.py)


class OffscreenError(Exception):
    """No EGL context here; one line naming what to install."""


def open_offscreen(width: int, height: int, purpose: str) -> Offscreen:
    """An Offscreen on its own EGL context, or OffscreenError saying that `purpose` needs EGL and how to get it."""
    try:
        return Offscreen(width, height)
    except Exception as error:  # moderngl raises plain Exceptions for a missing EGL
        raise OffscreenError(f"cannot render offscreen ({error}); {purpose} needs EGL (Debian: libegl1 libegl-mesa0 "
                             "libgl1-mesa-dri)") from None


class Offscreen:
    """A framebuffer of width x height RGBA8 on a standalone EGL context (or on `ctx` when given), bound on creation.
    A `Surface` (surface.py) for the headless run: nothing waits for a screen, so the loop paces it."""

    paced = False
    should_close = False

    def __init__(self, width: int, height: int, ctx: moderngl.Context | None = None):
        self._owns_context = ctx is None
        self.ctx = ctx if ctx is not None else moderngl.create_standalone_context(backend="egl")
        self.width, self.height = width, height
        self.fbo = self.ctx.framebuffer(color_attachments=[self.ctx.renderbuffer((width, height), 4)])
        self.fbo.use()

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def use(self) -> None:
        self.fbo.use()

    begin = use

    def present(self) -> None:
        """Nothing to show: the outputs took what they wanted while the refresh was drawn."""

    def read(self) -> np.ndarray:
        """The framebuffer as (height, width, 3) uint8, top row first (GL keeps the bottom row first)."""
        data = self.fbo.read(components=3, alignment=1)
        return np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)[::-1])

    def release(self) -> None:
        self.fbo.release()
        if self._owns_context:
            self.ctx.release()

    close = release

    def __enter__(self) -> Offscreen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

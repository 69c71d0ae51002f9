"""What an output of the presented picture is to the live loop (a file, a recording, NDI, a stream), and the GL
readback they share.

A `Sink` is fed once per refresh, never blocking the loop: `capture_for(now, output)` returns the readback to run
with the picture drawn (before the HUD, or after it when the sink's `hud` is set; always before the recording dot),
or None when the sink wants no frame this refresh (its own rate). Whatever a sink does with the pixels beyond the
readback happens on its own thread or process behind a bounded queue; a frame that queue cannot take is dropped and
counted. `state()` says how it is doing, for the HUD, OSC `/uncanny/state/outputs` and status.json. A sink that
shows the picture itself (a further window) takes no readback and has `draw(pixels, hud, blackout, now)` instead,
called after the refresh.

Readbacks are RGBA, bottom row first: GL's own layout, the cheapest read (see recording/live.py); the consumer flips
it for free (ffmpeg's vflip) or on its own thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import moderngl

from .presenter import layout
from .shaders import load_program

SCALE_UNIT = 4  # texture unit of the fitting pass (the presenter uses 0..3)


class OutputStatus(enum.StrEnum):
    OFF = "off"  # configured, not running (a recording not started)
    ON = "on"  # taking frames
    RETRYING = "retrying"  # failed; tried again after a back-off
    FAILED = "failed"  # cannot work here (a missing package or runtime): said once, not retried


@dataclass(frozen=True)
class OutputState:
    name: str  # "headless", "recording", "ndi:uncanny", ...
    status: OutputStatus
    detail: str = ""  # the file, the URL, or why it failed
    frames: int = 0  # taken since it (re)started
    dropped: int = 0  # frames it could not take at once

    def describe(self) -> str:
        """One short phrase: `ndi:uncanny on (1500 frames, 3 dropped)`."""
        counts = f" ({self.frames} frames, {self.dropped} dropped)" if self.status is OutputStatus.ON else ""
        detail = f": {self.detail}" if self.detail and self.status is not OutputStatus.ON else ""
        return f"{self.name} {self.status}{counts}{detail}"


@dataclass(frozen=True)
class SinkContext:
    """What every output is built with (live/run.py: `KINDS[kind][1](config, context)`)."""

    ctx: moderngl.Context  # the GL context the picture is drawn in, for readbacks
    report: Callable[[str], None]  # says a fault on screen, in the log and on OSC /uncanny/error (any thread)
    headless: bool  # no display: the installation draws offscreen
    letterbox: tuple[float, float, float]  # the [display] colour around a picture of another shape


class Sink(Protocol):
    name: str
    hud: bool  # takes the picture with the HUD (what the screen shows) rather than the picture alone

    def capture_for(self, now: float, output: tuple[int, int]) -> Callable[[], None] | None: ...

    def state(self) -> OutputState: ...

    def close(self) -> None: ...


class FittedReadback:
    """The presented picture (the bound framebuffer) fitted, letterboxed, into another `size`: copied into a texture,
    drawn bilinear into a framebuffer of that size, read as RGBA bottom row first. The presented framebuffer is bound
    again afterwards, so the refresh goes on drawing where it was."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int]) -> None:
        self.ctx, self.size = ctx, size
        self._program = load_program(ctx, "fullscreen.vert", "record_scale.frag")
        self._program["u_source"] = SCALE_UNIT
        self._vao = ctx.vertex_array(self._program, [])
        self.texture = ctx.texture(size, 4)  # the fitted picture, which a further pass may sample (yuv420p)
        self._target = ctx.framebuffer(color_attachments=[self.texture])
        self._source: moderngl.Texture | None = None

    def read(self, output: tuple[int, int]) -> bytes:
        presented = self.ctx.fbo
        self.draw(output)
        data = self._target.read(components=4, alignment=1)
        presented.use()
        self.ctx.viewport = (0, 0, *output)
        return data

    def draw(self, output: tuple[int, int]) -> None:
        """The presented picture (the bound framebuffer, `output` in size) fitted into `texture`."""
        ctx, presented = self.ctx, self.ctx.fbo
        if self._source is None or self._source.size != output:
            if self._source is not None:
                self._source.release()
            self._source = ctx.texture(output, 4)
        ctx.copy_framebuffer(self._source, presented)
        self._target.use()
        ctx.viewport = (0, 0, *self.size)
        ctx.clear(0.0, 0.0, 0.0, 1.0)
        x, y, width, height = layout("fit", output, self.size)
        rect = (x, self.size[1] - y - height, width, height)  # GL counts y from the bottom
        ctx.viewport = rect
        self._program["u_rect"] = rect
        self._source.use(SCALE_UNIT)
        self._vao.render(moderngl.TRIANGLES, vertices=3)

    def release(self) -> None:
        for resource in (self._source, self._target.color_attachments[0], self._target, self._vao, self._program):
            if resource is not None:
                resource.release()


def read_rgba(ctx: moderngl.Context, output: tuple[int, int], size: tuple[int, int],
              fitted: FittedReadback | None) -> bytes:
    """The presented picture at `size`, RGBA bottom row first: read as it is where `size` is the output's, else
    through `fitted` (made for `size` by the caller, who keeps it across refreshes)."""
    if size == output:
        return ctx.fbo.read(viewport=(0, 0, *size), components=4, alignment=1)
    assert fitted is not None and fitted.size == size
    return fitted.read(output)

"""Headless rendering (EGL, no window or X server) and mp4 writing, for tests, benchmarks and loop export."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import moderngl
import numpy as np


class Offscreen:
    """A framebuffer of width x height RGBA8 on a standalone EGL context (or on `ctx` when given), bound on creation."""

    def __init__(self, width: int, height: int, ctx: moderngl.Context | None = None):
        self._owns_context = ctx is None
        self.ctx = ctx if ctx is not None else moderngl.create_standalone_context(backend="egl")
        self.width, self.height = width, height
        self.fbo = self.ctx.framebuffer(color_attachments=[self.ctx.renderbuffer((width, height), 4)])
        self.fbo.use()

    def use(self) -> None:
        self.fbo.use()

    def read(self) -> np.ndarray:
        """The framebuffer as (height, width, 3) uint8, top row first (GL keeps the bottom row first)."""
        data = self.fbo.read(components=3, alignment=1)
        return np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)[::-1])

    def release(self) -> None:
        self.fbo.release()
        if self._owns_context:
            self.ctx.release()

    def __enter__(self) -> Offscreen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class VideoWriter:
    """H.264 (libx264, yuv420p) mp4 through imageio-ffmpeg's bundled ffmpeg.

    yuv420p needs even sizes, so an odd last column or row is dropped rather than rescaling the picture.
    Frames are played at a fixed `fps`: feed it frames rendered on a fixed clock (as loop export does), not
    whatever a live display happened to draw. `close()` (or leaving the `with` block, also on an exception)
    always finalises a playable file.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 30.0, crf: int = 18,
                 preset: str = "veryfast"):
        self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise ValueError(f"video size {width}x{height} is too small")
        self.path = Path(path)
        self.frames = 0
        self._encoder = imageio_ffmpeg.write_frames(
            str(self.path), (self.width, self.height), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
            quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-preset", preset, "-crf", str(crf)])
        self._encoder.send(None)  # starts ffmpeg

    def write(self, frame: np.ndarray) -> None:
        """One (H, W, 3) uint8 frame, top row first, at least the writer's size (larger is cropped)."""
        if self._encoder is None:
            raise RuntimeError("VideoWriter is closed")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 \
                or frame.shape[0] < self.height or frame.shape[1] < self.width:
            raise ValueError(f"frame {frame.shape} {frame.dtype}, expected ({self.height}, {self.width}, 3) uint8")
        self._encoder.send(np.ascontiguousarray(frame[:self.height, :self.width]))
        self.frames += 1

    def close(self) -> None:
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            encoder.close()  # closes ffmpeg's input and waits for it to write the moov atom

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

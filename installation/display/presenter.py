"""Draws generator frames, the N x N walk grid and the HUD into whatever framebuffer is bound.

Frames are uploaded only when a new one arrives; `render` runs every screen refresh and blends the previous frame
into the current one: by how far the live playback clock stands between them (`show_pair`, live/motion.py), or,
for frames given with `set_frame`/`set_grid` alone, by time since the newest arrived (`crossfade`).
Bad frames never raise: they are dropped and the reason is shown in the HUD.

RGBA frames are uploaded as they are, into RGBA8 textures: the layout GPUs keep textures in, which the driver
copies straight through, where RGB8 uploads are widened pixel by pixel on the CPU inside the driver (llvmpipe, 1024 x
1024: 0.4 ms against 2.7 ms). RGB frames are uploaded as RGB: widening them here costs more still (8-18 ms), so
frames are best made RGBA where they are drawn.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import moderngl
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .config import MODES
from .shaders import SHADER_DIR, load_program

MAX_AUTO_CROSSFADE = 1.0  # seconds; beyond this a stalled generator would make the picture look frozen mid-fade
HUD_BACKGROUND = (0, 0, 0, 160)
HUD_TEXT = (255, 255, 255, 255)


def layout(mode: str, source: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a source (w, h) placed on a target (w, h), y from the top, whole pixels."""
    (sw, sh), (tw, th) = source, target
    if mode == "stretch":
        return 0, 0, tw, th
    scale = (min if mode == "fit" else max)(tw / sw, th / sh)
    width, height = max(1, round(sw * scale)), max(1, round(sh * scale))
    return (tw - width) // 2, (th - height) // 2, width, height


def as_frames(frames: np.ndarray, max_size: int, max_layers: int) -> np.ndarray:
    """Check and normalise to (N, H, W, 3 or 4) uint8; ValueError says what is wrong."""
    array = np.asarray(frames)
    if array.ndim == 3:
        array = array[None]
    if array.dtype != np.uint8:
        raise ValueError(f"frame dtype {array.dtype}, expected uint8")
    if array.ndim != 4 or array.shape[-1] not in (3, 4) or 0 in array.shape:
        raise ValueError(f"frame shape {array.shape}, expected (H, W, C) or (N, H, W, C), C = 3 (RGB) or 4 (RGBA)")
    if max(array.shape[1:3]) > max_size or array.shape[0] > max_layers:
        raise ValueError(f"frames {array.shape} exceed the GL limits ({max_size} px, {max_layers} layers)")
    return array


class Presenter:
    """Renders the newest frame(s) with crossfade, scaling mode and HUD at (0, 0, width, height).

    crossfade: seconds to fade into a new frame; None follows the recent interval between frames (median of 5),
    so each fade ends about when the next frame arrives (capped at MAX_AUTO_CROSSFADE); 0 cuts.
    """

    def __init__(self, ctx: moderngl.Context, width: int, height: int, *, crossfade: float | None = None,
                 letterbox: tuple[float, float, float] = (0.0, 0.0, 0.0), mode: str = "fit",
                 shader_dir: Path = SHADER_DIR):
        self.ctx = ctx
        self.crossfade = crossfade
        self.letterbox = letterbox
        self.error: str | None = None  # why the last frame was refused, shown in the HUD until a good one comes
        self._rows_program = load_program(ctx, "fullscreen.vert", "resample_x.frag", shader_dir)
        self._program = load_program(ctx, "fullscreen.vert", "present.frag", shader_dir)
        self._hud_program = load_program(ctx, "fullscreen.vert", "hud.frag", shader_dir)
        self._rows_vao = ctx.vertex_array(self._rows_program, [])
        self._vao = ctx.vertex_array(self._program, [])
        self._hud_vao = ctx.vertex_array(self._hud_program, [])
        self._rows_program["u_current"], self._rows_program["u_previous"] = 0, 1
        self._program["u_rows"] = 2
        self._hud_program["u_text"] = 3
        self._rows: moderngl.Framebuffer | None = None  # pass 1's target: mosaic rows at screen width
        self._max_size = ctx.info["GL_MAX_TEXTURE_SIZE"]
        self._max_layers = ctx.info["GL_MAX_ARRAY_TEXTURE_LAYERS"]
        self._textures: list[moderngl.TextureArray | None] = [None, None]  # current, previous
        self._columns = 1
        self._shape: tuple[int, ...] | None = None  # (N, H, W, 3) of the current mosaic
        self._fade = False  # whether the previous texture holds a mosaic of the same layout to fade from
        self._arrived = 0.0
        self._intervals: deque[float] = deque(maxlen=5)  # the median ignores a one-off stall of the engine
        self._hud_text: str | None = None
        self.recording_dot = False  # the red dot that tells the performer a recording runs
        self._hud_shown: str | None = None  # text in the HUD texture
        self._hud_texture: moderngl.Texture | None = None
        self._blackout = (0.0, 0.0, 0.0, 0.0)  # from level, to level, start time, seconds
        self._pair: tuple[int, int] | None = None  # keys of (previous, current) given to show_pair
        self._mix: float | None = None  # the blend show_pair asked for (None: the crossfade by time)
        self.set_mode(mode)
        self.resize(width, height)

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = max(1, width), max(1, height)
        self._text_size = max(10, round(self.height / 60))
        self._font = ImageFont.load_default(size=self._text_size)  # Pillow's own font: no font files needed
        self._hud_shown = None

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}, expected one of {MODES}")
        self.mode = mode

    def set_frame(self, frame: np.ndarray, t_now: float) -> bool:
        """A new (H, W, 3) uint8 frame, top row first, arrived at time t_now (seconds). False if refused."""
        return self.set_grid(frame, t_now, columns=1)

    def set_grid(self, frames: np.ndarray, t_now: float, columns: int | None = None) -> bool:
        """N frames (N, H, W, 3) shown as a grid, ceil(sqrt(N)) columns unless given. False if refused."""
        try:
            frames = as_frames(frames, self._max_size, self._max_layers)
        except ValueError as error:
            self.error = str(error)
            return False
        columns = max(1, min(columns or math.ceil(math.sqrt(len(frames))), len(frames)))
        if math.ceil(len(frames) / columns) * frames.shape[1] > self._max_size:  # pass 1 stacks the cell rows
            self.error = f"a grid of {len(frames)} frames of {frames.shape[1]} px is too tall for the GL"
            return False
        self.error = None
        previous = self._textures[1]
        if previous is None or previous.size != (frames.shape[2], frames.shape[1], frames.shape[0]) \
                or previous.components != frames.shape[3]:
            if previous is not None:
                previous.release()
            previous = self.ctx.texture_array((frames.shape[2], frames.shape[1], frames.shape[0]), frames.shape[3])
        previous.write(np.ascontiguousarray(frames))
        self._fade = self._shape == frames.shape and columns == self._columns
        self._textures = [previous, self._textures[0]]
        if self._shape is not None:
            self._intervals.append(t_now - self._arrived)
        self._shape, self._columns, self._arrived = frames.shape, columns, t_now
        return True

    def set_blackout(self, level: float, seconds: float, t_now: float) -> None:
        """Fade the picture towards black (level 1) or back (0) over `seconds`, from wherever it is now."""
        self._blackout = (self.blackout(t_now), min(max(level, 0.0), 1.0), t_now, max(seconds, 0.0))

    @property
    def blackout_target(self) -> float:
        """The level the blackout is at or fading to."""
        return self._blackout[1]

    def blackout(self, t_now: float) -> float:
        """The blackout level at t_now: 0 = the picture as it is, 1 = black (the HUD is never darkened)."""
        start, target, when, seconds = self._blackout
        if seconds <= 0 or t_now >= when + seconds:
            return target
        return start + (target - start) * max(t_now - when, 0.0) / seconds

    def show_pair(self, older: tuple[int, np.ndarray], newer: tuple[int, np.ndarray], mix: float,
                  t_now: float) -> None:
        """Show `mix` of the way from `older` to `newer` frames, each (key, (N, H, W, 3) pixels); a frame is uploaded
        only the first time its key is seen (as the playback moves on, the newer becomes the older)."""
        if self._pair is None or self._pair[1] != newer[0]:
            if self._pair is None or self._pair[1] != older[0]:
                self.set_grid(older[1], t_now)
            if newer[0] != older[0]:
                self.set_grid(newer[1], t_now)
            self._pair = (older[0], newer[0])
        self._mix = min(max(mix, 0.0), 1.0) if newer[0] != older[0] else 1.0

    def set_hud(self, text: str | None) -> None:
        """Text for the HUD box (None hides it; frame errors are shown regardless)."""
        self._hud_text = text

    def mix(self, t_now: float) -> float:
        """How far the fade from the previous to the current frame has gone at t_now (1 = current only)."""
        if self._mix is not None:
            return self._mix if self._fade else 1.0
        duration = self.crossfade
        if duration is None:
            duration = min(statistics.median(self._intervals), MAX_AUTO_CROSSFADE) if self._intervals else 0.0
        if not self._fade or duration <= 0:
            return 1.0
        return min(max((t_now - self._arrived) / duration, 0.0), 1.0)

    def render(self, t_now: float, before_hud: Sequence[Callable[[], None]] = (),
               after_hud: Sequence[Callable[[], None]] = ()) -> None:
        """Draw the whole bound framebuffer (width x height): the picture at t_now, then the HUD, then the
        recording dot. The outputs' readbacks (display/sinks.py) run with the picture drawn: `before_hud` ones
        without the HUD, `after_hud` ones with it; all before the dot, so the dot is never in a file."""
        self.ctx.viewport = (0, 0, self.width, self.height)
        gain = 1.0 - self.blackout(t_now)
        self.ctx.clear(*(c * gain for c in self.letterbox), 1.0)  # the bars; the picture is shaded over its part
        if self._shape is not None:
            self._render_picture(t_now, gain)
        for capture in before_hud:
            capture()
        self._render_hud()
        for capture in after_hud:
            capture()
        if self.recording_dot:
            self._render_dot()

    def _render_dot(self) -> None:
        """A small red square in the top right corner: a scissored clear, no shader."""
        side = max(6, self._text_size)
        margin = self._text_size // 2
        self.ctx.scissor = (self.width - margin - side, self.height - margin - side, side, side)
        self.ctx.clear(0.9, 0.05, 0.05, 1.0)
        self.ctx.scissor = None

    def _render_picture(self, t_now: float, gain: float) -> None:
        ctx = self.ctx
        count, height, width, _ = self._shape
        grid = (self._columns, math.ceil(count / self._columns))
        rect = layout(self.mode, (width * grid[0], height * grid[1]), (self.width, self.height))
        x0, x1 = max(rect[0], 0), min(rect[0] + rect[2], self.width)  # the visible columns of the mosaic
        target = ctx.fbo  # the caller's framebuffer: window or offscreen
        rows = self._rows_target((x1 - x0, height * grid[1]))
        rows.use()
        ctx.viewport = (0, 0, *rows.size)
        current, previous = self._textures
        current.use(0)
        (previous or current).use(1)
        program = self._rows_program
        program["u_mix"] = self.mix(t_now)
        program["u_span"] = (rect[0] - x0, rect[2])
        program["u_grid"], program["u_count"] = grid, count
        self._rows_vao.render(moderngl.TRIANGLES, vertices=3)

        target.use()
        y0, y1 = max(rect[1], 0), min(rect[1] + rect[3], self.height)
        ctx.viewport = (x0, self.height - y1, x1 - x0, y1 - y0)  # gl_FragCoord stays window-relative
        rows.color_attachments[0].use(2)
        program = self._program
        program["u_rect"], program["u_x0"], program["u_cell_rows"] = rect, x0, height
        program["u_grid"], program["u_count"] = grid, count
        program["u_height"], program["u_letterbox"] = float(self.height), tuple(self.letterbox)
        program["u_gain"] = gain
        self._vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.viewport = (0, 0, self.width, self.height)

    def _rows_target(self, size: tuple[int, int]) -> moderngl.Framebuffer:
        if self._rows is None or self._rows.size != size:
            if self._rows is not None:
                self._rows.color_attachments[0].release()
                self._rows.release()
            self._rows = self.ctx.framebuffer(color_attachments=[self.ctx.texture(size, 4)])
        return self._rows

    def _render_hud(self) -> None:
        text = "\n".join(line for line in (self.error, self._hud_text) if line)
        if not text:
            return
        if text != self._hud_shown:
            image = self._rasterise(text)
            if self._hud_texture is None or self._hud_texture.size != image.size:
                if self._hud_texture is not None:
                    self._hud_texture.release()
                self._hud_texture = self.ctx.texture(image.size, 4)
                self._hud_texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
            self._hud_texture.write(image.tobytes())
            self._hud_shown = text
        margin = self._text_size // 2
        width, height = self._hud_texture.size
        self._hud_texture.use(3)
        self._hud_program["u_box"] = (margin, margin, width, height)
        self._hud_program["u_height"] = float(self.height)
        ctx = self.ctx
        ctx.scissor = (margin, self.height - margin - height, width, height)  # GL counts y from the bottom
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self._hud_vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.disable(moderngl.BLEND)
        ctx.scissor = None

    def _rasterise(self, text: str) -> Image.Image:
        """Text on a translucent box, RGBA top row first."""
        pad = self._text_size // 2
        left, top, right, bottom = ImageDraw.Draw(Image.new("RGBA", (1, 1))).multiline_textbbox(
            (0, 0), text, font=self._font)
        width = min(right - left + 2 * pad, self.width)
        height = min(bottom - top + 2 * pad, self.height)
        image = Image.new("RGBA", (width, height), HUD_BACKGROUND)
        ImageDraw.Draw(image).multiline_text((pad - left, pad - top), text, font=self._font, fill=HUD_TEXT)
        return image

    def release(self) -> None:
        rows = (self._rows, self._rows.color_attachments[0]) if self._rows is not None else ()
        for resource in (*self._textures, *rows, self._hud_texture, self._rows_vao, self._vao, self._hud_vao,
                         self._rows_program, self._program, self._hud_program):
            if resource is not None:
                resource.release()
        self._textures, self._rows, self._hud_texture = [None, None], None, None

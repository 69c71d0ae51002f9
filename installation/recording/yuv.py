"""The presented picture as ffmpeg's planar yuv420p, made by a GL pass, for codecs coded in yuv420p (H.264).

ffmpeg's own RGB to YUV conversion was most of its CPU for a live recording (x264 ultrafast at 1080p: 17.6 ms a
frame from rgb24, 11.2 ms from yuv420p), and the GL pass does it on the rasteriser that drew the picture. The
readback is one glReadPixels of an R8 texture laid out as ffmpeg's frame (half the bytes of RGB, already top row
first), and its bytes go to the encoder's queue as they are: no numpy copy, no flip on the CPU.
"""

from __future__ import annotations

import moderngl

from ..display.shaders import load_program

SOURCE_UNIT = 5  # texture unit of the pass (the presenter uses 0..3, the live recorder's scaler 4)
# GL drivers that rasterise on the CPU: there the pass (about 60 ms a 1080p frame on llvmpipe, 2 cores) costs more
# than ffmpeg's own conversion (6-7 ms), so frames go to ffmpeg as RGBA instead.
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "swiftshader")


def converts_in_gl(ctx: moderngl.Context) -> bool:
    """Whether yuv420p frames are best made by this GL: a GPU's, not a software rasteriser."""
    renderer = ctx.info["GL_RENDERER"].lower()
    return not any(name in renderer for name in SOFTWARE_RENDERERS)


class YuvPass:
    """A texture's top left `size` (even) as yuv420p bytes, BT.709 limited range: Y, then U, then V planes."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int]) -> None:
        if size[0] % 2 or size[1] % 2 or min(size) < 2:
            raise ValueError(f"a yuv420p frame needs an even width and height, not {size[0]}x{size[1]}")
        self.ctx, self.size = ctx, size
        self._program = load_program(ctx, "fullscreen.vert", "record_yuv.frag")
        self._program["u_source"] = SOURCE_UNIT
        self._program["u_size"] = size
        self._vao = ctx.vertex_array(self._program, [])
        width, height = size
        self._planes = ctx.texture((width, height * 3 // 2), 1)
        self._target = ctx.framebuffer(color_attachments=[self._planes])
        self._copy: moderngl.Texture | None = None  # the presented framebuffer, copied to be sampled

    def read_framebuffer(self, framebuffer: moderngl.Framebuffer) -> bytes:
        """The frame from `framebuffer` (the bound, presented one: a window's cannot be sampled, so it is
        copied); `framebuffer` is bound again afterwards."""
        size, viewport = framebuffer.size, self.ctx.viewport
        if self._copy is None or self._copy.size != size:
            if self._copy is not None:
                self._copy.release()
            self._copy = self.ctx.texture(size, 4)
        self.ctx.copy_framebuffer(self._copy, framebuffer)
        data = self.read_texture(self._copy)
        framebuffer.use()
        self.ctx.viewport = viewport
        return data

    def read_texture(self, source: moderngl.Texture) -> bytes:
        """The frame from `source` (at least `size`), leaving the pass's framebuffer bound."""
        if source.width < self.size[0] or source.height < self.size[1]:
            raise ValueError(f"source {source.width}x{source.height} is smaller than the frame {self.size}")
        self._target.use()
        self.ctx.viewport = (0, 0, *self._planes.size)
        source.use(SOURCE_UNIT)
        self._vao.render(moderngl.TRIANGLES, vertices=3)
        return self._target.read(components=1, alignment=1)

    def release(self) -> None:
        for resource in (self._copy, self._target, self._planes, self._vao, self._program):
            if resource is not None:
                resource.release()
        self._copy = None

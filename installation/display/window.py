"""The GLFW window the installation is shown in, with a ModernGL 3.3 core context."""

from __future__ import annotations

import logging
from collections.abc import Callable

import glfw
import moderngl

from .gl import load_triton_before_gl
from .monitors import find_monitor

load_triton_before_gl()  # before any context is made here (see gl.py)
log = logging.getLogger(__name__)

_open_windows = 0  # GLFW is terminated when the last window of the process closes


class Window:
    """A window (windowed for development, or full screen on a chosen monitor at its current video mode).

    Full screen hides the cursor; losing focus never iconifies it (a gallery PC's pop-ups must not blank the
    wall). `handlers` maps GLFW key codes to actions run on key press; `keys_enabled = False` ignores them all
    (gallery mode). Use as a context manager or call `close()`. A `Surface` (surface.py).
    """

    def __init__(self, width: int = 1280, height: int = 720, *, fullscreen: bool = False,
                 monitor: int | str | None = None, title: str = "uncanny", vsync: bool = True,
                 handlers: dict[int, Callable[[], None]] | None = None, strict_monitor: bool = False):
        global _open_windows
        if not glfw.init():
            raise RuntimeError("GLFW could not start (no display? set DISPLAY or run under Xvfb)")
        _open_windows += 1
        try:
            self._open(width, height, fullscreen, monitor, title, vsync, handlers, strict_monitor)
        except BaseException:
            if getattr(self, "handle", None):
                glfw.destroy_window(self.handle)
            self.handle = None
            self._release_glfw()
            raise

    def _open(self, width: int, height: int, fullscreen: bool, monitor: int | str | None, title: str, vsync: bool,
              handlers: dict[int, Callable[[], None]] | None, strict_monitor: bool) -> None:
        glfw.default_window_hints()
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        glfw.window_hint(glfw.AUTO_ICONIFY, False)
        target = find_monitor(monitor, strict_monitor) if fullscreen else None
        if target is not None:
            mode = glfw.get_video_mode(target)  # keep the monitor's mode: no mode switch, no flicker
            width, height = mode.size.width, mode.size.height
            glfw.window_hint(glfw.RED_BITS, mode.bits.red)
            glfw.window_hint(glfw.GREEN_BITS, mode.bits.green)
            glfw.window_hint(glfw.BLUE_BITS, mode.bits.blue)
            glfw.window_hint(glfw.REFRESH_RATE, mode.refresh_rate or glfw.DONT_CARE)
        self.handle = glfw.create_window(width, height, title, target, None)
        if not self.handle:
            raise RuntimeError(f"GLFW could not open a {width}x{height} OpenGL 3.3 core window")
        glfw.make_context_current(self.handle)
        glfw.swap_interval(1 if vsync else 0)
        self.vsync = vsync
        if fullscreen:
            glfw.set_input_mode(self.handle, glfw.CURSOR, glfw.CURSOR_HIDDEN)
        self.fullscreen = fullscreen
        self._monitor_choice = monitor
        # where `f` puts the window back: where it was, or for a full-screen start up to 1280x720 (3/4 of a smaller
        # screen) centred on that screen
        if target is None:
            self._windowed_frame = (*glfw.get_window_pos(self.handle), width, height)
        else:
            x, y, area_width, area_height = glfw.get_monitor_workarea(target)
            size = (min(1280, area_width * 3 // 4), min(720, area_height * 3 // 4))
            self._windowed_frame = (x + (area_width - size[0]) // 2, y + (area_height - size[1]) // 2, *size)
        self.ctx = moderngl.create_context(require=330)
        self.handlers = dict(handlers or {})
        self.keys_enabled = True
        glfw.set_key_callback(self.handle, self._on_key)

    def _on_key(self, _window: object, key: int, _scancode: int, action: int, _mods: int) -> None:
        if action != glfw.PRESS or not self.keys_enabled or key not in self.handlers:
            return
        try:
            self.handlers[key]()
        except Exception:  # a broken key action must not take the show down
            log.exception("key handler for %s failed", glfw.get_key_name(key, 0) or key)

    @property
    def size(self) -> tuple[int, int]:
        """Framebuffer size in pixels (can differ from the window size on HiDPI screens)."""
        return glfw.get_framebuffer_size(self.handle)

    def toggle_fullscreen(self) -> None:
        """Switch between full screen (on the chosen monitor, at its current mode) and a window, put back where
        and as large as it was."""
        if self.fullscreen:
            glfw.set_window_monitor(self.handle, None, *self._windowed_frame, glfw.DONT_CARE)
            glfw.set_input_mode(self.handle, glfw.CURSOR, glfw.CURSOR_NORMAL)
        else:
            self._windowed_frame = (*glfw.get_window_pos(self.handle), *glfw.get_window_size(self.handle))
            monitor = find_monitor(self._monitor_choice)
            mode = glfw.get_video_mode(monitor)
            glfw.set_window_monitor(self.handle, monitor, 0, 0, mode.size.width, mode.size.height,
                                    mode.refresh_rate or glfw.DONT_CARE)
            glfw.set_input_mode(self.handle, glfw.CURSOR, glfw.CURSOR_HIDDEN)
        self.fullscreen = not self.fullscreen
        glfw.swap_interval(1 if self.vsync else 0)

    def move(self, x: int, y: int) -> None:
        """Put the window's top left corner at desktop pixel (x, y)."""
        glfw.set_window_pos(self.handle, x, y)

    @property
    def should_close(self) -> bool:
        return bool(glfw.window_should_close(self.handle))

    def request_close(self) -> None:
        glfw.set_window_should_close(self.handle, True)

    def poll(self) -> None:
        """Handle pending input and window events (runs the key handlers)."""
        glfw.poll_events()

    def swap(self) -> None:
        """Show what was drawn; waits for the vertical blank when vsync is on."""
        glfw.swap_buffers(self.handle)

    @property
    def paced(self) -> bool:
        return self.vsync

    def begin(self) -> None:
        glfw.make_context_current(self.handle)
        self.ctx.screen.use()

    def present(self) -> None:
        self.swap()
        self.poll()

    def close(self) -> None:
        if self.handle is None:
            return
        glfw.make_context_current(self.handle)
        self.ctx.release()
        glfw.destroy_window(self.handle)
        self.handle = None
        self._release_glfw()

    @staticmethod
    def _release_glfw() -> None:
        global _open_windows
        _open_windows -= 1
        if _open_windows == 0:  # the process's last window: GLFW has no other user
            glfw.terminate()

    def __enter__(self) -> Window:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

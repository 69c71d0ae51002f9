"""The live installation: the engine process fine-tunes and draws walk frames, this process shows them.

Data flows one way: keys (and later OSC) -> engine commands -> engine -> frames (shared memory) -> display
(window or headless video). The display never waits for the engine: every refresh it takes the newest frame if
one came, cross-fades towards it and draws. When the engine dies, the last frame stays on screen with the error,
and the engine is restarted from its newest snapshot after a short, growing back-off.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections import deque
from pathlib import Path
from typing import Any


from .engine import EngineProcess
from .frames import FrameChannel
from .presets import Preset, RenderConfig, WalkConfig

log = logging.getLogger(__name__)

RESTART_BACKOFF = (2.0, 5.0, 15.0, 60.0)  # seconds before restarting a dead engine, growing with each failure
MESSAGE_SECONDS = 10.0  # how long an engine error stays in the HUD after it was reported


class DisplayError(Exception):
    """The picture cannot be shown here (no GL, no display, not enough shared memory); one line."""


class FrameRenderer:
    """The engine's between-steps hook: draws walk frames with the current weights into the frame channel.

    It gives drawing about `share` of the engine's time (measured against the training step it follows) and no
    more than `max_fps` frames a second; while training is paused it just draws at `max_fps`. Waiting for the next
    frame's time counts as drawing time, unless a training step fits into the wait: then it trains first. Walk time is wall
    clock minus `epoch`, so the walk continues seamlessly across an engine restart. `view` is shared with the
    display: 0 = one walk full-screen, 1 = the N x N population grid.
    """

    def __init__(self, channel_name: str, walk: WalkConfig, render: RenderConfig, epoch: float,
                 view: Any) -> None:
        self.channel_name, self.walk, self.render, self.epoch, self.view = channel_name, walk, render, epoch, view
        self._channel: FrameChannel | None = None
        self._walks: list = []
        self._last_exit = 0.0
        self._next_frame = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_channel", "_walks")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _channel=None, _walks=[])

    def __call__(self, engine: Any) -> None:
        from .walks import make_walks, render_walk_frames

        gan = engine.gan
        if self._channel is None:
            self._channel = FrameChannel.attach(self.channel_name)
            self._walks = make_walks(self.walk.grid**2, gan.latent_dim, self.walk.keyframes, self.walk.period,
                                     self.walk.seed)
        entered = time.monotonic()
        trained = entered - self._last_exit if self._last_exit and not engine.paused else 0.0
        budget = trained * self.render.share / (1 - self.render.share)
        while True:
            wait = self._next_frame - time.monotonic()
            if wait > 0:
                if self._next_frame - entered > budget or wait >= trained:
                    break  # the next frame is due after this hook's share of time, or a step fits: train
                time.sleep(wait)
            start = time.monotonic()
            self._next_frame = max(self._next_frame + 1 / self.render.max_fps, start)
            walks = self._walks if self.view.value else self._walks[:1]
            frames = render_walk_frames(gan, walks, time.time() - self.epoch, self.walk.truncation)
            self._channel.publish(frames, iteration=engine.iteration, walk_time=time.time() - self.epoch)
            if time.monotonic() - entered >= budget:
                break
        self._last_exit = time.monotonic()


class Installation:
    """Engine process + frame channel + presenter; `tick()` once per screen refresh."""

    def __init__(self, preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, ctx: Any,
                 size: tuple[int, int]) -> None:
        from .display.presenter import Presenter

        self.preset = preset
        display = preset.display
        self.view = multiprocessing.get_context("spawn").Value("b", int(display.show_grid), lock=False)
        _check_shared_memory(resolution, preset.walk.grid)
        self.channel = FrameChannel.create(resolution, resolution, max_count=preset.walk.grid**2)
        try:
            crossfade = None if display.crossfade < 0 else display.crossfade
            self.presenter = Presenter(ctx, *size, crossfade=crossfade, letterbox=display.letterbox,
                                       mode=display.mode)
        except BaseException:
            self.channel.close()
            raise
        renderer = FrameRenderer(self.channel.name, preset.walk, preset.render, time.time(), self.view)
        self.engine = EngineProcess(checkpoint, run_dir, preset.engine, resolution=resolution,
                                    use_ema=not preset.model.raw_generator, between_steps=renderer)
        self.hud = display.hud
        self.state: dict[str, Any] = {}
        self._last_sequence = 0
        self._refreshes: deque[float] = deque(maxlen=60)
        self._failures = 0
        self._restart_at: float | None = None
        self._message: tuple[str, float] | None = None
        try:
            self.engine.start()
        except BaseException:
            self.presenter.release()
            self.channel.close()
            raise

    # ------------------------------------------------------------------------------------------ controls
    def toggle_pause(self) -> None:
        self._send("resume" if self.state.get("status") == "paused" else "pause")

    def reset(self) -> None:
        self._send("reset")

    def rewind_one(self) -> None:
        """Back to the snapshot before the current iteration (iteration 0 at the most)."""
        iteration = self.state.get("iteration", 0)
        earlier = [s for s in self.state.get("snapshots", []) if s < iteration]
        self._send(f"rewind {max(earlier, default=0)}")

    def toggle_grid(self) -> None:
        self.view.value = 0 if self.view.value else 1

    def toggle_hud(self) -> None:
        self.hud = not self.hud

    def _send(self, command: str) -> None:
        try:
            self.engine.send(command)
        except Exception as error:  # the engine is down: say so, keep showing
            self._say(f"{command}: {error}")

    def _say(self, message: str) -> None:
        log.warning("%s", message)
        self._message = (message, time.monotonic())

    # ------------------------------------------------------------------------------------------ the loop
    def tick(self, size: tuple[int, int]) -> None:
        """Take the newest frame and engine state, look after the engine, draw one refresh."""
        now = time.monotonic()
        self._refreshes.append(now)
        frame = self.channel.read(newer_than=self._last_sequence)
        if frame is not None:
            self._last_sequence = frame.sequence
            if len(frame.pixels) > 1:
                self.presenter.set_grid(frame.pixels, now)
            else:
                self.presenter.set_frame(frame.pixels[0], now)
        self._watch_engine(now)
        if (self.presenter.width, self.presenter.height) != size:
            self.presenter.resize(*size)
        self.presenter.set_hud(self._hud_text(now))
        self.presenter.render(now)

    def _watch_engine(self, now: float) -> None:
        previous_errors = self.state.get("error_count", 0)
        self.state = self.engine.poll()
        if self.state.get("error_count", 0) > previous_errors and self.state.get("errors"):
            self._say(f"engine: {self.state['errors'][-1]}")
        if self.state["alive"] or self.state.get("status") == "starting":
            if self.state.get("status") == "running":
                self._failures = 0  # it came back: the next failure starts the back-off again
            return
        if self._restart_at is None:
            delay = RESTART_BACKOFF[min(self._failures, len(RESTART_BACKOFF) - 1)]
            self._failures += 1
            self._restart_at = now + delay
            self._say(f"engine stopped: {self.state.get('error') or self.state.get('status')}; "
                      f"restarting from the last snapshot in {delay:g} s")
        elif now >= self._restart_at:
            self._restart_at = None
            try:
                self.engine.restart()
            except Exception as error:
                self._say(f"engine restart failed: {error}")

    def _hud_text(self, now: float) -> str | None:
        lines = []
        if self._message is not None and now - self._message[1] < MESSAGE_SECONDS:
            lines.append(self._message[0])  # errors show even with the HUD off
        if self.hud:
            s = self.state
            fps = (len(self._refreshes) - 1) / (self._refreshes[-1] - self._refreshes[0]) \
                if len(self._refreshes) > 1 and self._refreshes[-1] > self._refreshes[0] else 0.0
            numbers = [f"iteration {s.get('iteration', 0)}", f"loss {_fmt(s.get('loss'))}",
                       f"D {_fmt(s.get('probe_d'))}", f"{s.get('steps_per_second') or 0:.1f} steps/s",
                       f"{fps:.0f} fps", str(s.get("status", ""))]
            if s.get("collapsed"):
                numbers.append("collapsed")
            lines.append("  ".join(numbers))
        return "\n".join(lines) or None

    def close(self) -> None:
        try:
            self.engine.stop()
        finally:
            self.presenter.release()
            self.channel.close()


def _check_shared_memory(resolution: int, grid: int, slots: int = 3) -> None:
    """The frame channel lives in /dev/shm, which containers often keep small (Docker: 64 MB)."""
    need = slots * grid**2 * resolution**2 * 3
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return  # not Linux-like: shared memory is not a file system here
    free = stats.f_bavail * stats.f_frsize
    if need > free:
        raise DisplayError(f"the frames need {_size_text(need)} of shared memory but /dev/shm has "
                           f"{_size_text(free)} free; lower [walk] grid (now {grid}) or enlarge /dev/shm")


def _size_text(size: float) -> str:
    """Bytes as KB, MB or GB with one decimal: a nearly full /dev/shm must not read '0 MB free'."""
    for unit in ("KB", "MB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GB"


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _monitor(text: str) -> int | str | None:
    return int(text) if text.isdigit() else (text or None)


def run_window(preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, seconds: float | None) -> None:
    """Full-screen (or windowed) until quit, closed or `seconds` have passed."""
    import glfw

    from .display.window import Window

    display = preset.display
    try:
        window = Window(display.width, display.height, fullscreen=display.fullscreen,
                        monitor=_monitor(display.monitor))
    except Exception as error:  # no X server, no GL 3.3, no libglfw: environment problems, not bugs
        raise DisplayError(f"cannot open the window ({error}); check DISPLAY and the GL driver, or use --headless") \
            from None
    with window:
        window.keys_enabled = display.keys
        installation = Installation(preset, checkpoint, resolution, run_dir, window.ctx, window.size)
        window.handlers.update({
            glfw.KEY_SPACE: installation.toggle_pause, glfw.KEY_R: installation.reset,
            glfw.KEY_B: installation.rewind_one, glfw.KEY_LEFT: installation.rewind_one,
            glfw.KEY_G: installation.toggle_grid, glfw.KEY_H: installation.toggle_hud,
            glfw.KEY_F: window.toggle_fullscreen, glfw.KEY_Q: window.request_close,
            glfw.KEY_ESCAPE: window.request_close,
        })
        start = time.monotonic()
        try:
            while not window.should_close and (seconds is None or time.monotonic() - start < seconds):
                window.ctx.screen.use()
                installation.tick(window.size)
                window.swap()
                window.poll()
        finally:
            installation.close()


def run_headless(preset: Preset, checkpoint: Path, resolution: int, run_dir: Path,
                 seconds: float | None) -> tuple[Path, Path]:
    """Offscreen (EGL) into `run_dir/live.mp4` at the preset's fps, and the last picture as `last_frame.png`."""
    from .display.offscreen import Offscreen, VideoWriter
    from .images import save_png

    display = preset.display
    video_path, png_path = run_dir / "live.mp4", run_dir / "last_frame.png"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        surface = Offscreen(display.width, display.height)
    except Exception as error:
        raise DisplayError(f"cannot render offscreen ({error}); headless mode needs EGL (Debian: libegl1 "
                           "libegl-mesa0 libgl1-mesa-dri)") from None
    with surface:
        installation = Installation(preset, checkpoint, resolution, run_dir, surface.ctx,
                                    (display.width, display.height))
        image = None
        try:
            with VideoWriter(video_path, display.width, display.height, fps=display.fps) as video:
                start = time.monotonic()
                due = start
                while seconds is None or time.monotonic() - start < seconds:
                    surface.use()
                    installation.tick((display.width, display.height))
                    image = surface.read()
                    video.write(image)
                    due += 1 / display.fps
                    time.sleep(max(0.0, due - time.monotonic()))
        except KeyboardInterrupt:
            pass  # Ctrl-C ends a headless run; the video is finalised on the way out
        finally:
            installation.close()
            if image is not None:
                save_png(png_path, image)
    return video_path, png_path

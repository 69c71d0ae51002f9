"""The live installation: the engine process fine-tunes and draws walk frames, this process shows them.

Data flows one way: keys (and later OSC) -> engine commands -> engine -> frames (shared memory) -> display
(window or headless video). The display never waits for the engine: every refresh it takes the newest frame if
one came, cross-fades towards it and draws. When the engine dies, the last frame stays on screen with the error,
and the engine is restarted from its newest snapshot after a short, growing back-off.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .engine import EngineProcess
from .frames import FrameChannel
from .presets import Preset, RenderConfig, WalkConfig
from .signals import StopSignals

log = logging.getLogger(__name__)

RESTART_BACKOFF = (2.0, 5.0, 15.0, 60.0)  # seconds before restarting a dead engine, growing with each failure
MESSAGE_SECONDS = 10.0  # how long an engine error stays in the HUD after it was reported


class DisplayError(Exception):
    """The picture cannot be shown here (no GL, no display, not enough shared memory); one line."""


class RunRefused(Exception):
    """The engine refused the run folder for good (another engine holds it, another model's); one line."""


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
        self._send("toggle_pause")  # the engine decides from its own state, never from a stale copy of it

    def reset(self) -> None:
        self._send("reset")

    def rewind_one(self) -> None:
        """One snapshot further back with each press, counted by the engine, down to iteration 0."""
        self._send("back")

    def toggle_grid(self) -> None:
        self.view.value = 0 if self.view.value else 1

    def toggle_hud(self) -> None:
        self.hud = not self.hud

    def _send(self, command: str) -> None:
        try:
            self.engine.send(command)
        except Exception as error:  # the engine is down: say so, keep showing
            self.say(f"{command}: {error}")

    def say(self, message: str) -> None:
        """One line in the log and on screen (also with the HUD off) for MESSAGE_SECONDS."""
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
            self.say(f"engine: {self.state['errors'][-1]}")
        if self.state.get("status") == "refused":
            raise RunRefused(self.state.get("error") or "the engine refused the run folder")
        if self.state["alive"] or self.state.get("status") == "starting":
            if self.state.get("status") == "running":
                self._failures = 0  # it came back: the next failure starts the back-off again
            return
        if self._restart_at is None:
            delay = RESTART_BACKOFF[min(self._failures, len(RESTART_BACKOFF) - 1)]
            self._failures += 1
            self._restart_at = now + delay
            self.say(f"engine stopped: {self.state.get('error') or self.state.get('status')}; "
                      f"restarting from the last snapshot in {delay:g} s")
        elif now >= self._restart_at:
            self._restart_at = None
            try:
                self.engine.restart()
            except Exception as error:
                self.say(f"engine restart failed: {error}")

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


@contextlib.contextmanager
def open_run_folder(run_dir: Path, gan: Any) -> Iterator[list[Path]]:
    """Hold `run_dir` for this installation for the length of the `with`. A folder that cannot be one, that another
    installation holds, or that the engine would refuse raises RunFolderError (one line) before anything in it is
    touched. Yields the recordings of a killed earlier run that were given playable names."""
    from .engine.engine import RunFolderError, check_run_folder
    from .frames import sweep_stale
    from .recording import recover_partials

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        check_run_folder(run_dir, gan)  # reads only: a refused folder is left exactly as it was
        lock = open(run_dir / ".live.lock", "a")
    except OSError as error:
        raise RunFolderError(f"run folder {run_dir}: cannot be used ({error.strerror or error}); choose a folder "
                             "that can be created and written") from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(f"run folder {run_dir}: another installation is running on it; stop it or "
                                 "choose another --run-dir") from None
        sweep_stale()
        yield recover_partials(run_dir)
    finally:
        lock.close()


def _check_shared_memory(resolution: int, grid: int, slots: int = 3) -> None:
    """The frame channel lives in /dev/shm, which containers often keep small (Docker: 64 MB)."""
    need = slots * grid**2 * resolution**2 * 3
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return  # not Linux-like: shared memory is not a file system here
    free = stats.f_bavail * stats.f_frsize
    if need > free:
        raise DisplayError(f"the frames need {need / 2**20:.0f} MB of shared memory but /dev/shm has "
                           f"{free / 2**20:.0f} MB free; lower [walk] grid (now {grid}) or enlarge /dev/shm")


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _monitor(text: str) -> int | str | None:
    return int(text) if text.isdigit() else (text or None)


@dataclass
class RunReport:
    """How a live run ended: what it wrote and why it stopped (printed by the CLI as one line)."""

    videos: list[Path] = field(default_factory=list)
    picture: Path | None = None
    iteration: int | None = None
    stopped_by: str = ""  # "SIGTERM", "quit", "--seconds", ...
    error: str | None = None  # set when the run could not go on (the exit code is then non-zero)
    refused: bool = False  # the engine refused the run folder: bad input, exit code 2

    def summary(self) -> str:
        wrote = [f"{path} ({_video_seconds(path)})" for path in self.videos]
        if self.picture is not None:
            wrote.append(str(self.picture))
        parts = [f"stopped ({self.stopped_by})" if self.stopped_by else "stopped"]
        if self.iteration is not None:
            parts.append(f"final snapshot at iteration {self.iteration}")
        parts.append("wrote " + ", ".join(wrote) if wrote else "wrote no video or picture")
        return "; ".join(parts)


def _video_seconds(path: Path) -> str:
    try:
        import imageio_ffmpeg

        frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
        return f"{seconds:.1f} s, {frames} frames"
    except Exception:
        return "unreadable"


def _save_picture(run_dir: Path, image: np.ndarray | None, report: RunReport) -> None:
    """The last picture shown, under a new name (nothing a run wrote is overwritten); a full disk is one line."""
    if image is None:
        return
    from .images import save_png
    from .recording import claim_path

    try:
        path = claim_path(run_dir, "last_frame", ".png")
        save_png(path, image)
        report.picture = path
    except OSError as error:
        report.error = report.error or f"could not save the last picture in {run_dir}: {error.strerror or error}"


def _end(installation: Installation, report: RunReport) -> None:
    """Stop the engine (its final snapshot) and release GL and shared memory; note the final iteration."""
    installation.close()
    report.iteration = installation.engine.poll().get("iteration")  # the state it published as it stopped


def run_window(preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, seconds: float | None,
               stop: StopSignals) -> RunReport:
    """Full-screen (or windowed) until quit, closed, a stop signal or `seconds` have passed."""
    import glfw

    from .display.window import Window

    display = preset.display
    try:
        window = Window(display.width, display.height, fullscreen=display.fullscreen,
                        monitor=_monitor(display.monitor))
    except Exception as error:  # no X server, no GL 3.3, no libglfw: environment problems, not bugs
        raise DisplayError(f"cannot open the window ({error}); check DISPLAY and the GL driver, or use --headless") \
            from None
    report = RunReport()
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
        image = None
        try:
            while not window.should_close and not stop.requested and \
                    (seconds is None or time.monotonic() - start < seconds):
                window.ctx.screen.use()
                installation.tick(window.size)
                window.swap()
                window.poll()
            window.ctx.screen.use()
            installation.tick(window.size)  # once more into the back buffer, to keep what the audience saw
            width, height = window.size
            pixels = window.ctx.screen.read(viewport=(0, 0, width, height), components=3, alignment=1)
            image = np.frombuffer(pixels, np.uint8).reshape(height, width, 3)[::-1]
        except RunRefused as error:
            report.error, report.refused = str(error), True
        finally:
            _end(installation, report)
        report.stopped_by = stop.name or ("--seconds" if seconds is not None and not window.should_close
                                          else "quit")
        _save_picture(run_dir, image, report)
    return report


def run_headless(preset: Preset, checkpoint: Path, resolution: int, run_dir: Path, seconds: float | None,
                 stop: StopSignals) -> RunReport:
    """Offscreen (EGL) into `run_dir/live-DATE-TIME.mp4` at the preset's fps (a new file whenever ffmpeg has to be
    restarted), and the last picture as `last_frame-DATE-TIME.png`."""
    from .display.offscreen import Offscreen
    from .recording.supervised import SupervisedVideo

    display = preset.display
    try:
        surface = Offscreen(display.width, display.height)
    except Exception as error:
        raise DisplayError(f"cannot render offscreen ({error}); headless mode needs EGL (Debian: libegl1 "
                           "libegl-mesa0 libgl1-mesa-dri)") from None
    report = RunReport()
    with surface:
        installation = Installation(preset, checkpoint, resolution, run_dir, surface.ctx,
                                    (display.width, display.height))
        image = None
        video = None
        try:
            video = SupervisedVideo(run_dir, "live", display.width, display.height, display.fps,
                                    say=installation.say)
            start = time.monotonic()
            due = start
            while not stop.requested and video.stopped is None and \
                    (seconds is None or time.monotonic() - start < seconds):
                surface.use()
                installation.tick((display.width, display.height))
                image = surface.read()
                video.write(image)
                due += 1 / display.fps
                time.sleep(max(0.0, due - time.monotonic()))
        except RunRefused as error:
            report.error, report.refused = str(error), True
        finally:
            if video is not None:
                report.videos = video.close()  # first: ffmpeg finishes while the engine takes its snapshot
                report.error = report.error or video.stopped
            _end(installation, report)
        report.stopped_by = stop.name or ("--seconds" if seconds is not None else "")
        _save_picture(run_dir, image, report)
    return report

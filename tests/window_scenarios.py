"""Window scenarios for tests/test_app.py, each run in its own process (GLX cannot follow EGL in one process).

    python tests/window_scenarios.py NAME CHECKPOINT RUN_DIR

Exits 0 when the scenario's assertions hold; an AssertionError exits non-zero with the reason.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from installation.live.loop import LiveLoop  # noqa: E402
from installation.live.run import live_show  # noqa: E402
from installation.control.service import ControlService  # noqa: E402
from installation.control.config import OscConfig  # noqa: E402
from installation.control.actions import action  # noqa: E402
from installation.display.window import Window  # noqa: E402
from installation.engine import EngineConfig  # noqa: E402
from installation.presets import Preset  # noqa: E402
from installation.display.config import DisplayConfig  # noqa: E402
from installation.engine.config import RenderConfig, WalkConfig  # noqa: E402

SIZE = (320, 240)


def preset(period: float) -> Preset:
    return Preset(engine=EngineConfig(device="cpu", threads=1, snapshot_every=10, probe_every=5, lr=3e-3),
                  walk=WalkConfig(keyframes=3, period=period, grid=2),
                  display=DisplayConfig(fullscreen=False, width=SIZE[0], height=SIZE[1], crossfade=0.0),
                  render=RenderConfig(share=0.5, max_fps=20))


def run_for(loop: LiveLoop, window: Window, seconds: float) -> np.ndarray:
    """Tick the display for a while; return the last picture (read before the swap, top row first)."""
    end = time.monotonic() + seconds
    image = None
    while time.monotonic() < end or image is None:
        window.begin()
        loop.tick()
        width, height = window.size
        pixels = window.ctx.screen.read(viewport=(0, 0, width, height), components=3)
        image = np.frombuffer(pixels, np.uint8).reshape(height, width, 3)[::-1]
        window.swap()
        window.poll()
    return image.copy()


def wait(loop: LiveLoop, window: Window, predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate(loop.supervisor.state):
        assert time.monotonic() < end, f"timed out; engine state {loop.supervisor.state.status}"
        run_for(loop, window, 0.1)


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def train_and_kill(loop: LiveLoop, window: Window) -> None:
    """Not blank; still while paused; changed by training; grid view; survives the engine being killed."""
    wait(loop, window, lambda s: s.iteration >= 5)
    loop.stage.send("pause")
    wait(loop, window, lambda s: s.status == "paused")
    # frames drawn ahead before the pause show the weights of a step or two before: played out, then still
    wait(loop, window, lambda s: loop.picture.shown_iteration == s.iteration)
    run_for(loop, window, 0.5)
    paused_a = run_for(loop, window, 0.3)
    paused_b = run_for(loop, window, 0.3)
    assert paused_a.std() > 10, "the window is blank"
    # paused weights and a walk of an hour per loop: the picture holds still
    assert differ(paused_a, paused_b) < 1.0, f"picture moves while paused: {differ(paused_a, paused_b)}"

    iteration = loop.supervisor.state.iteration
    loop.stage.send("resume")
    wait(loop, window, lambda s: s.iteration >= iteration + 15)
    trained = run_for(loop, window, 0.5)
    assert differ(trained, paused_b) > 2.0, "weight updates do not show"

    loop.stage.apply(action("grid"))
    run_for(loop, window, 1.5)
    assert loop.presenter._shape[0] == 4, "the 2 x 2 population view did not arrive from the engine"

    before = loop.picture.last_sequence
    loop.supervisor.engine.kill()
    shown = run_for(loop, window, 0.3)
    assert "engine stopped" in (loop.presenter._hud_text or ""), "the error is not shown"
    assert shown.std() > 10, "the last frame must stay on screen"
    wait(loop, window, lambda s: s.alive and s.status == "running")
    run_for(loop, window, 1.0)
    assert loop.picture.last_sequence > before, "the walk did not resume after the restart"


def walk_moves(loop: LiveLoop, window: Window) -> None:
    loop.stage.send("pause")
    wait(loop, window, lambda s: s.status == "paused")
    a = run_for(loop, window, 0.4)
    b = run_for(loop, window, 0.4)
    assert differ(a, b) > 1.0, "the latent walk does not move"


def fullscreen_toggle(loop: LiveLoop, window: Window) -> None:
    wait(loop, window, lambda s: loop.picture.last_sequence > 0)  # a first frame is on screen
    window.toggle_fullscreen()
    image = run_for(loop, window, 0.5)
    assert window.fullscreen and image.shape[:2] == (720, 1280), f"full-screen gave {image.shape}"
    assert image.std() > 10, "nothing drawn full-screen"
    window.toggle_fullscreen()
    image = run_for(loop, window, 0.5)
    assert not window.fullscreen and image.shape[:2] == (SIZE[1], SIZE[0]), f"windowed gave {image.shape}"


SCENARIOS = {"train-and-kill": (train_and_kill, 3600.0), "walk-moves": (walk_moves, 2.0),
             "fullscreen-toggle": (fullscreen_toggle, 8.0)}


def main(name: str, checkpoint: str, run_dir: str) -> None:
    scenario, period = SCENARIOS[name]
    with Window(*SIZE) as window:
        with live_show(preset(period), Path(checkpoint), 32, Path(run_dir), window,
                       ControlService(OscConfig(enabled=False))) as loop:
            loop.supervisor.backoff = (0.5,)  # restart the killed engine quickly
            scenario(loop, window)


if __name__ == "__main__":
    main(*sys.argv[1:])

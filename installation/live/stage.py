"""What the controllers' actions act on in the display process: the `Stage` of control/actions.py.

Engine actions go down the engine's command pipe; each display action runs the effect its Spec registers, on the
methods here: the walk the engine draws (every change is one `render` command), the view (grid, HUD, blackout), the
performer's recording, loop exports, and the window. Whatever cannot be done is said on screen and told to the
action's sender (an OSC controller). The collaborators are built in live/run.py and passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..control.actions import Action
from ..control.service import ControlService
from ..display.presenter import Presenter
from ..engine.process import EngineProcess
from ..exports.background import LoopExports
from ..recording.live import LiveRecorder
from ..engine.drawer import FrameDrawer, WalkSettings


class Stage:
    def __init__(self, engine: EngineProcess, drawer: FrameDrawer, presenter: Presenter, grid: int,
                 recorder: LiveRecorder, exports: LoopExports, control: ControlService, say: Callable[[str], None],
                 hud: bool, shown_iteration: Callable[[], int]) -> None:
        """`drawer`: the display's copy of the engine's frame drawer, which every (re)started engine process gets, so
        walk changes made here survive an engine restart. `grid`: N of the N x N view. `shown_iteration`: the
        iteration of the weights that drew the picture on screen (recordings are named by it)."""
        self.engine, self.drawer, self.presenter, self.grid = engine, drawer, presenter, grid
        self.recorder, self.exports, self.control, self.say = recorder, exports, control, say
        self.hud, self.shown_iteration = hud, shown_iteration
        self.window_actions: dict[str, Callable[[], None]] = {}  # "fullscreen", "quit": set by a window's loop

    @property
    def walk(self) -> WalkSettings:
        return self.drawer.settings

    def apply(self, action: Action) -> None:
        spec = action.spec
        if spec.kind == "engine":
            self.send(action.engine_command(), action)
        elif spec.effect is not None:
            spec.effect(self, action)

    def send(self, command: Any, action: Action | None = None) -> None:
        """An engine command; when the engine is down, say so (and tell the action's sender) and keep showing."""
        try:
            self.engine.send(command)
        except Exception as error:
            self.say(f"{command}: {error}")
            if action is not None:
                self.control.failed(action, str(error))

    # ------------------------------------------------------------------------------------ the Stage protocol
    def set_walk(self, **changes: Any) -> None:
        """Change the walk (period, truncation, seed, grid) without a jump."""
        settings = self.drawer.settings
        if "period" in changes:
            settings = settings.with_period(changes.pop("period"))
        self.drawer.settings = settings = settings.replace(**changes)
        self.send(("render", settings))

    def set_grid(self, on: bool | None) -> None:
        self.set_walk(grid=not self.walk.grid if on is None else on)

    def set_hud(self, on: bool | None) -> None:
        self.hud = not self.hud if on is None else on

    def set_blackout(self, level: float, seconds: float) -> None:
        self.presenter.set_blackout(level, seconds, time.monotonic())

    def record(self, action: Action) -> None:
        self.recorder.apply(action.name, action.value, self.shown_iteration(), self._output, self._teller(action))

    def export_loop(self, iteration: int, seconds: float, action: Action) -> None:
        self.exports.start(iteration, seconds, self._output, self.grid if self.walk.grid else 0, self.walk.seed,
                           self._teller(action))

    def toggle_fullscreen(self) -> None:
        self.window_actions.get("fullscreen", _nothing)()

    def quit(self) -> None:
        self.window_actions.get("quit", _nothing)()

    # ------------------------------------------------------------------------------------------------
    @property
    def _output(self) -> tuple[int, int]:
        return self.presenter.width, self.presenter.height

    def _teller(self, action: Action) -> Callable[[str], None]:
        """Tells the sender of `action` (an OSC controller) that it failed, later too (a recording cut short)."""
        return lambda text: self.control.failed(action, text)


def _nothing() -> None:
    """A window action headless: there is no window to change."""

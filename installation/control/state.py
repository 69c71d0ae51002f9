"""The show's state as one typed, immutable snapshot, made once per refresh by the live loop (live/loop.py).

It gathers the engine's state, the picture (fps), the controls' values, the director, the recorder and the outputs;
everything that reports state reads it and nothing else: OSC feedback and queries, OSCQuery, the HUD, status.json.
The OSC threads only ever read the newest one (a reference swap), so no lock is shared with the display. Every field
but `snapshots`, `controls` and the LOCAL ones is sent as `/uncanny/state/<field>`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..display.sinks import OutputState
from .actions import BY_NAME, ROOT


# the gallery director's phases (control/director.py), named here so the OSC docs list them from one place
PHASES = ("off", "journey", "hold", "fade_out", "return", "fade_in", "rewind", "closed")


@dataclass(frozen=True)
class ControlState:
    iteration: int = 0  # the engine's training iteration
    status: str = "starting"  # starting | running | paused | stopped | error ... as the engine reports it
    paused: bool = False
    loss: float | None = None  # None until the first step
    d: float | None = None  # the discriminator's score of the fixed probe latents
    diversity: float | None = None  # 1 - MS-SSIM of the probe images
    collapsed: bool = False
    fps: float = 0.0  # frames presented per second
    steps_per_second: float = 0.0
    recording: bool = False
    recording_path: str = ""
    export: str = ""  # the newest loop export (/uncanny/record/loop): its path once finished, or what went wrong
    cycle: int = 0  # journeys the gallery director has completed (control/director.py), kept across restarts
    phase: str = "off"  # where the director is: one of PHASES
    storage: str = ""  # why the run folder cannot be written now and what to do (the show goes on); "" while it can
    snapshots: tuple[int, ...] = ()  # iterations that can be rewound to, oldest first
    # the value each control has now, by action name (e.g. {"lr": 5e-05, "grid": 0, "blackout": 0.0}): echoed
    # to controllers when it changes, so a fader snaps to what was really applied
    controls: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[OutputState, ...] = ()  # sent as each output's name and status
    # for the HUD, status.json and the web page only (LOCAL)
    message: str = ""  # what the screen says now: errors and notices, "" for nothing
    last_error: str = ""  # the newest error said, kept after it has left the screen
    uptime: float = 0.0  # seconds since the installation started
    disk_free: int = 0  # bytes free where the run folder is (measured every few seconds)
    engine_restarts: int = 0
    model: str = ""
    run_dir: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.controls) - set(BY_NAME)
        if unknown:
            raise ValueError(f"controls for unknown actions: {', '.join(sorted(unknown))}")


# fields sent as soon as they change; the measured ones (loss, fps, ...) change every step and go out with the
# periodic broadcast only
ON_CHANGE = ("iteration", "status", "paused", "collapsed", "recording", "recording_path", "export", "cycle", "phase",
             "outputs", "storage")
LOCAL = ("message", "last_error", "uptime", "disk_free", "engine_restarts", "model", "run_dir")
STATE_FIELDS = tuple(f.name for f in dataclasses.fields(ControlState)
                     if f.name not in ("snapshots", "controls", *LOCAL))
TYPE_TAGS = {"iteration": "i", "status": "s", "paused": "i", "loss": "f", "d": "f", "diversity": "f",
             "collapsed": "i", "fps": "f", "steps_per_second": "f", "recording": "i", "recording_path": "s",
             "export": "s", "cycle": "i", "phase": "s", "outputs": "s", "storage": "s"}
DESCRIPTIONS = {
    "iteration": "training iteration", "status": "engine status (running, paused, ...)",
    "paused": "1 while training is paused", "loss": "the inverted loss of the last step",
    "d": "discriminator score of the fixed probe images", "diversity": "1 - MS-SSIM of the probe images",
    "collapsed": "1 once diversity fell below the collapse line", "fps": "frames presented per second",
    "steps_per_second": "training steps per second", "recording": "1 while recording",
    "recording_path": "the file being recorded",
    "export": "the finished loop export's path (or why it failed)",
    "cycle": "journeys the gallery director has completed",
    "phase": f"the gallery director's phase ({', '.join(PHASES)})",
    "outputs": "each output (headless file, recording, NDI, stream, windows) and its status: `ndi:uncanny on; ...`",
    "storage": "why the run folder cannot be written now and what to do (the show goes on); empty while it can",
}


def state_address(name: str) -> str:
    return f"{ROOT}/state/{name}"


def state_value(state: ControlState, name: str) -> int | float | str | None:
    """The OSC value of one state field: bools as 0/1, None (or non-finite) when there is nothing to show yet."""
    value = getattr(state, name)
    if name == "outputs":
        return "; ".join(f"{output.name} {output.status}" for output in value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def control_values(state: ControlState, name: str) -> tuple[Any, ...]:
    """The echo arguments of one control: its published value, one argument or several."""
    value = state.controls[name]
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)

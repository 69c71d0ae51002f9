"""The show's state as one typed, immutable snapshot, made once per refresh by the live loop (live/loop.py).

It gathers the engine's state, the picture (fps), the controls' values, the director, the recorder and the outputs;
everything that reports state reads it and nothing else: OSC feedback and queries, OSCQuery, the HUD, status.json.
The OSC threads only ever read the newest one (a reference swap), so no lock is shared with the display. Every field
in STATE_FIELDS is sent as `/uncanny/state/<field>`. `branch` and `landed` let feedback report where a jump went
although the engine stepped on before the state was made; `refusals` (the engine's refused commands, by action id)
are routed to the sender of each refused action.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..display.sinks import OutputState
from ..engine.state import EngineStatus
from .actions import BY_NAME, ROOT


class Phase(StrEnum):
    """The gallery director's phases (control/director.py), named here so the OSC docs list them from one place."""

    OFF = "off"
    JOURNEY = "journey"
    HOLD = "hold"
    FADE_OUT = "fade_out"
    RETURN = "return"
    FADE_IN = "fade_in"
    REWIND = "rewind"
    CLOSED = "closed"


PHASES = tuple(Phase)


@dataclass(frozen=True)
class ControlState:
    iteration: int = 0  # the engine's training iteration
    shown_iteration: int = 0  # the training iteration of the weights that drew the frame on screen
    status: EngineStatus = EngineStatus.STARTING  # as the engine reports it
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
    phase: Phase = Phase.OFF  # where the director is
    midi_learn: str = ""  # the address waiting for a MIDI control to be moved (control/midi.py); "" = none
    device: str = ""  # the engine's device, named ("cuda:0 NVIDIA GeForce RTX 4090", "cpu"; "" until it is up)
    uptime: float = 0.0  # seconds since the installation started
    disk_free: float = 0.0  # bytes free where the run folder is (a float: OSC integers stop at 2 GB); measured
    # every few seconds
    last_error: str = ""  # the newest problem the installation reported (also on screen), "" for none
    storage: str = ""  # why the run folder cannot be written now and what to do (the show goes on); "" while it can
    snapshots: tuple[int, ...] = ()  # iterations that can be rewound to, oldest first
    # the value each control has now, by action name (e.g. {"lr": 5e-05, "grid": 0, "blackout": 0.0}): echoed
    # to controllers when it changes, so a fader snaps to what was really applied; only ECHOED actions have one
    controls: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[OutputState, ...] = ()  # sent as each output's name and status
    branch: int = 0  # EngineState.branch: grows with every rewind, back, reset and rollback
    landed: int = 0  # EngineState.landed: the iteration the newest of those jumps went to
    refusals: tuple[tuple[int, str], ...] = ()  # EngineState.refusals: (action id, why) of refused engine commands
    # for the HUD, status.json and the web page only (LOCAL)
    message: str = ""  # what the screen says now: errors and notices, "" for nothing
    engine_restarts: int = 0
    degraded: str = ""  # "degraded: ..." while a run that had a GPU goes on on the CPU
    snapshots_suspended: str = ""  # why snapshots are not written now (the run folder is full, read-only ...)
    saved_iteration: int | None = None  # the newest snapshot durable on disk
    snapshot_bytes_hour: int = 0  # bytes of snapshots written in the last hour
    batch_limit: int = 0  # the largest training batch found to fit the device (0: none found)
    model: str = ""
    run_dir: str = ""

    def __post_init__(self) -> None:
        if unknown := set(self.controls) - set(BY_NAME):
            raise ValueError(f"controls for unknown actions: {', '.join(sorted(unknown))}")
        if valueless := set(self.controls) - set(ECHOED):
            raise ValueError(f"controls for actions that have no value to report: {', '.join(sorted(valueless))}")
        object.__setattr__(self, "status", EngineStatus(self.status))  # a plain "running" becomes the member
        object.__setattr__(self, "phase", Phase(self.phase))


# the controls whose applied value the live loop publishes in `controls`: readable (OSCQuery ACCESS 3) and echoed;
# every other action is write-only
ECHOED = ("lr", "loss", "batch", "speed", "journey_minutes", "walk_period", "walk_truncation", "walk_seed", "grid",
          "hud", "blackout")


# fields sent as soon as they change; the measured ones (loss, fps, ...) change every step and go out with the
# periodic broadcast only
ON_CHANGE = ("iteration", "shown_iteration", "status", "paused", "collapsed", "recording", "recording_path", "export",
             "cycle", "phase", "outputs", "midi_learn", "device", "last_error", "storage")
LOCAL = ("message", "engine_restarts", "degraded", "snapshots_suspended", "saved_iteration", "snapshot_bytes_hour",
         "batch_limit", "model", "run_dir")  # for the HUD, status.json and the web page only
NOT_SENT = ("snapshots", "controls", "branch", "landed", "refusals")  # answered or used otherwise
STATE_FIELDS = tuple(f.name for f in dataclasses.fields(ControlState) if f.name not in (*NOT_SENT, *LOCAL))
TYPE_TAGS = {"iteration": "i", "shown_iteration": "i", "status": "s", "paused": "i", "loss": "f", "d": "f",
             "diversity": "f", "collapsed": "i", "fps": "f", "steps_per_second": "f", "recording": "i",
             "recording_path": "s", "export": "s", "cycle": "i", "phase": "s", "midi_learn": "s", "device": "s",
             "uptime": "f", "disk_free": "f", "last_error": "s", "outputs": "s", "storage": "s"}
DESCRIPTIONS = {
    "iteration": "training iteration",
    "shown_iteration": "training iteration of the weights that drew the frame on screen (0 at once after a reset)",
    "status": "engine status (running, paused, ...)",
    "paused": "1 while training is paused", "loss": "the inverted loss of the last step",
    "d": "discriminator score of the fixed probe images", "diversity": "1 - MS-SSIM of the probe images",
    "collapsed": "1 once diversity fell below the collapse line", "fps": "frames presented per second",
    "steps_per_second": "training steps per second", "recording": "1 while recording",
    "recording_path": "the file being recorded",
    "export": "the finished loop export's path (or why it failed)",
    "cycle": "journeys the gallery director has completed",
    "phase": f"the gallery director's phase ({', '.join(PHASES)})",
    "midi_learn": "the address waiting for a MIDI control to be moved (MIDI learn); empty when none",
    "device": "the device the engine runs on, e.g. cuda:0 NVIDIA GeForce RTX 4090, or cpu",
    "uptime": "seconds since the installation started",
    "disk_free": "bytes free where the run folder is", "last_error": "the newest problem reported, empty for none",
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


_TYPES = {"i": int, "f": float, "s": str}


def control_values(state: ControlState, name: str) -> tuple[Any, ...]:
    """The echo arguments of one control: its published value, one argument or several, each of the type its
    address declares (a float control set with T or an int echoes a float, as a fader expects)."""
    value = state.controls[name]
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return tuple(_TYPES[arg.tag](v) for arg, v in zip(BY_NAME[name].args, values))

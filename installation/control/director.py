"""The gallery director: one more controller, which plays the journey on its own, for weeks, within opening hours.

It produces the same validated Actions as the keys and OSC (pause, resume, reset, rewind, back, blackout), which the
live loop puts into the same inbox, and it reads what flows back (`ControlState`: iteration, status, paused,
collapsed). `Director.tick(now, wall, state)` is a pure state machine: `now` is the monotonic clock (phase
timers), `wall` the local wall-clock time (opening hours), so tests drive it as fast as they like.

The `[gallery]` cycle (GalleryConfig):

    collapse   journey (train until collapsed or max_iterations) -> hold -> fade_out -> return (reset to
               iteration 0) -> fade_in -> journey ...
    pingpong   journey -> hold -> rewind (one snapshot back every step_seconds, down to 0) -> journey ...
    loop       journey (until loop_to) -> hold -> fade_out -> return (rewind to loop_from) -> fade_in -> journey ...

The journey's length follows the engine's: `max_iterations = 0` (the default) is `[engine] journey_iterations`, the
arc's length, so a journey paced over `journey_minutes` ends after those minutes if the collapse flag has not come;
the director's own phases (hold, fades, pingpong's steps) are in seconds already and need no pace.

A cycle counts as completed when the return to its start is asked for (collapse, loop) or reached (pingpong).
Outside the opening hours the phase is `closed`: black and training paused; at opening it goes through return
(reset to realism) and fade_in. Training is paused in every phase but journey; a restarted engine (which comes up
training) is paused again. The cycle count, the phase and the return target are written atomically to
`director.json` in the run folder on every change, so a restarted installation goes on where it was.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from ..engine.config import EngineConfig
from ..schedule import parse_hours
from ..storage import atomic_write_bytes
from ..validation import ConfigError, check_choice, check_float, check_int
from .actions import Action, action
from .state import PHASES, ControlState

log = logging.getLogger(__name__)

PAUSED_PHASES = frozenset(PHASES) - {"off", "journey"}  # training holds still in these
BLACK_PHASES = frozenset({"fade_out", "return", "closed"})  # the screen is (going) black in these
ENGINE_UP = ("running", "paused", "failed")  # statuses in which the engine takes commands
RESEND_SECONDS = 3.0  # a request the engine's state does not show carried out yet is sent again after this
FILE_NAME = "director.json"


CYCLES = ("off", "collapse", "pingpong", "loop")


@dataclass(frozen=True)
class GalleryConfig:
    """The gallery director ([gallery] table, control/director.py): the journey cycling on its own, opening hours."""

    cycle: str = "off"  # off | collapse | pingpong | loop
    max_iterations: int = 0  # collapse, pingpong: the journey ends here if the collapse flag has not come first;
    # 0 = [engine] journey_iterations, the arc's length
    hold_seconds: float = 60.0  # the end of the journey stays on screen (training paused) this long
    fade_seconds: float = 5.0  # fades to black and back
    step_seconds: float = 2.0  # pingpong: seconds per snapshot on the way back to realism
    loop_from: int = 0  # loop: the journey travels from this iteration ...
    loop_to: int = 1000  # ... to this one, again and again
    hours: str = ""  # opening hours, e.g. "mon-fri 10:00-18:00, sat 12:00-16:00"; empty = always open

    def __post_init__(self) -> None:
        check_choice("cycle", self.cycle, CYCLES)
        check_int("max_iterations", self.max_iterations, 0)
        check_float("hold_seconds", self.hold_seconds, 0.0, 86400.0)
        check_float("fade_seconds", self.fade_seconds, 0.0, 600.0)
        check_float("step_seconds", self.step_seconds, 0.0, 3600.0)
        check_int("loop_from", self.loop_from, 0)
        check_int("loop_to", self.loop_to, 1)
        if self.loop_to <= self.loop_from:
            raise ConfigError(f"loop_to must be above loop_from ({self.loop_from}), got {self.loop_to}")
        parse_hours(self.hours)

    @property
    def active(self) -> bool:
        """Whether the director has anything to do: a cycle, or opening hours to keep."""
        return self.cycle != "off" or bool(self.hours.strip())


@dataclass(frozen=True)
class DirectorState:
    """What survives a restart: completed cycles, the phase, and where the return phase goes (an iteration)."""

    cycle: int = 0
    phase: str = "off"
    target: int = 0


class Director:
    """`tick(now, wall, state)` once per refresh; returns the actions to put into the inbox."""

    def __init__(self, config: GalleryConfig, path: Path | None = None,
                 journey_iterations: int = EngineConfig.journey_iterations) -> None:
        self.config = config
        self.max_iterations = config.max_iterations or journey_iterations
        self.schedule = parse_hours(config.hours)
        self.path = path
        self.state = self._load() if config.active else DirectorState()
        self._since = 0.0  # monotonic time the phase began
        self._started = False
        self._asked_pause: tuple[bool, float] | None = None  # the last pause (True) / resume (False) and when
        self._asked_return = -math.inf
        self._back_sent: tuple[int, float] | None = None  # pingpong: the iteration seen and the time of the last back
        self._write_failed = False

    @property
    def cycle(self) -> int:
        return self.state.cycle

    @property
    def phase(self) -> str:
        return self.state.phase

    def describe(self) -> str | None:
        """For the HUD: `cycle 2 hold`, or None while the director is off."""
        return f"cycle {self.cycle} {self.phase}" if self.config.active else None

    # -------------------------------------------------------------------------------------------- the machine
    def tick(self, now: float, wall: datetime, state: ControlState) -> list[Action]:
        if not self.config.active:
            return []
        actions: list[Action] = []
        if not self._started:
            self._started = True
            actions += self._restore(now)
        is_open = self.schedule.is_open(wall)
        if not is_open and self.phase != "closed":
            log.warning("gallery: closed (outside %s): black, training paused", self.config.hours)
            actions += self._enter("closed", now, [self._blackout(1.0, self.config.fade_seconds)])
        elif is_open and self.phase == "closed":
            log.warning("gallery: opening: back to realism")
            actions += self._return(now, 0)
        else:
            actions += self._advance(now, state)
        return actions + self._keep_paused(now, state)

    def _advance(self, now: float, state: ControlState) -> list[Action]:
        config, phase, elapsed = self.config, self.phase, now - self._since
        engine_up = state.status in ENGINE_UP
        if phase == "journey":
            if engine_up and self._journey_done(state):
                log.warning("gallery: cycle %d: the journey reached iteration %d%s; holding", self.cycle + 1,
                            state.iteration, " (collapsed)" if state.collapsed else "")
                return self._enter("hold", now)
        elif phase == "hold":
            if elapsed >= config.hold_seconds:
                if config.cycle == "pingpong":
                    return self._enter("rewind", now)
                return self._enter("fade_out", now, [self._blackout(1.0, config.fade_seconds)])
        elif phase == "fade_out":
            if elapsed >= config.fade_seconds:
                target = config.loop_from if config.cycle == "loop" else 0
                self.state = replace(self.state, cycle=self.cycle + 1)
                log.warning("gallery: cycle %d completed; %s", self.cycle,
                            "reset to realism" if target == 0 else f"rewind to iteration {target}")
                return self._return(now, target)
        elif phase == "return":
            if engine_up and state.iteration <= self.state.target:
                return self._enter("fade_in", now, [self._blackout(0.0, config.fade_seconds)])
            if engine_up and now - self._asked_return >= RESEND_SECONDS:
                self._asked_return = now
                return [self._return_action()]
        elif phase == "fade_in":
            if elapsed >= config.fade_seconds:
                self._asked_pause = (False, now)  # told here, also where the journey is the performer's (cycle off)
                return self._enter("journey", now, [action("resume", source="director")])
        elif phase == "rewind":
            if engine_up and state.iteration == 0:
                self.state = replace(self.state, cycle=self.cycle + 1)
                log.warning("gallery: cycle %d completed: walked back to realism", self.cycle)
                return self._enter("journey", now)
            return self._step_back(now, state) if engine_up else []
        return []

    def _journey_done(self, state: ControlState) -> bool:
        cycle = self.config.cycle
        if cycle == "off":
            return False  # hours only: the journey is the performer's
        if state.status == "failed":
            return True  # the engine paused itself after repeated rollbacks: the return cures that too
        if cycle == "loop":
            return state.iteration >= self.config.loop_to
        return state.collapsed or state.iteration >= self.max_iterations

    def _step_back(self, now: float, state: ControlState) -> list[Action]:
        """One snapshot back per step_seconds, once the previous back shows in the state (or it seems lost)."""
        if self._back_sent is not None:
            seen, when = self._back_sent
            if now - when < self.config.step_seconds or (state.iteration == seen and now - when < RESEND_SECONDS):
                return []
        self._back_sent = (state.iteration, now)
        return [action("back", source="director")]

    def _keep_paused(self, now: float, state: ControlState) -> list[Action]:
        """Training paused in every phase but journey; a (restarted) engine that disagrees is told again."""
        if state.status not in ENGINE_UP:
            return []
        if self.phase in PAUSED_PHASES:
            want = True
        elif self.config.cycle != "off":
            want = False
        else:
            return []  # hours only, while open: pausing is the performer's
        if state.paused == want:
            return []
        if self._asked_pause is not None and self._asked_pause[0] == want and \
                now - self._asked_pause[1] < RESEND_SECONDS:
            return []
        self._asked_pause = (want, now)
        return [action("pause" if want else "resume", source="director")]

    # ------------------------------------------------------------------------------------------ transitions
    def _enter(self, phase: str, now: float, actions: list[Action] | None = None) -> list[Action]:
        self.state = replace(self.state, phase=phase)
        self._since = now
        self._back_sent = None
        self._save()
        return actions or []

    def _return(self, now: float, target: int) -> list[Action]:
        """Black at once (it already is, after a fade or while closed), then back to `target`."""
        self.state = replace(self.state, target=target)
        self._asked_return = now
        return self._enter("return", now, [self._blackout(1.0, 0.0), self._return_action()])

    def _return_action(self) -> Action:
        target = self.state.target
        return action("reset", source="director") if target == 0 else action("rewind", target, source="director")

    def _restore(self, now: float) -> list[Action]:
        """The first tick: go on from the phase the last run left, with the screen as that phase shows it."""
        phase, cycle = self.phase, self.config.cycle
        if phase == "off" or (phase == "rewind" and cycle != "pingpong") or \
                (cycle == "off" and phase not in ("closed", "return", "fade_in")):  # the preset changed since
            phase = "journey"
        elif phase == "fade_out" and cycle not in ("collapse", "loop"):
            phase = "return"
        if self.state != DirectorState():
            log.warning("gallery: going on from cycle %d, phase %s (%s)", self.cycle, phase, self.path)
        if phase == "return":
            return self._return(now, self.state.target)
        actions = [self._blackout(1.0, 0.0)] if phase in BLACK_PHASES or phase == "fade_in" else []
        if phase == "fade_in":
            actions.append(self._blackout(0.0, self.config.fade_seconds))
        return self._enter(phase, now, actions)

    def _blackout(self, level: float, seconds: float) -> Action:
        return action("blackout", level, seconds, source="director")

    # ------------------------------------------------------------------------------------------ persistence
    def _load(self) -> DirectorState:
        if self.path is None or not self.path.exists():
            return DirectorState()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            state = DirectorState(**data)
            if not (type(state.cycle) is int and state.cycle >= 0 and state.phase in PHASES
                    and type(state.target) is int and state.target >= 0):
                raise ValueError("values out of range")
            return state
        except (OSError, ValueError, TypeError) as error:
            log.warning("gallery: %s cannot be read (%s); starting again from cycle 0", self.path, error)
            return DirectorState()

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            atomic_write_bytes(self.path, json.dumps(asdict(self.state)).encode())
            self._write_failed = False
        except OSError as error:
            if not self._write_failed:  # once per failure spell: a full disk must not flood the log
                log.warning("gallery: cannot write %s (%s); the cycle count is kept in memory", self.path,
                            error.strerror or error)
            self._write_failed = True

"""Keeping the engine alive: a dead engine is restarted from its newest snapshot after a growing back-off; one that
refuses the run folder for good ends the run instead of being retried."""

from __future__ import annotations

from collections.abc import Callable

from ..engine import EngineProcess
from ..engine.state import EngineState

RESTART_BACKOFF = (2.0, 5.0, 15.0, 60.0)  # seconds before restarting a dead engine, growing with each failure


class RunRefused(Exception):
    """The engine refused to start for good (the run folder is taken or another model's, the checkpoint is
    unusable); one line."""


class EngineSupervisor:
    """`watch(now)` once per refresh: the newest engine state, and a restart when one is due. `say` reports."""

    def __init__(self, engine: EngineProcess, say: Callable[[str], None],
                 backoff: tuple[float, ...] = RESTART_BACKOFF) -> None:
        self.engine, self.say, self.backoff = engine, say, backoff
        self.state = EngineState()
        self.restarts = 0  # engine restarts so far in this run
        self._failures = 0  # failures since the engine last ran
        self._restart_at: float | None = None

    def watch(self, now: float) -> EngineState:
        previous_errors = self.state.error_count
        self.state = state = self.engine.poll()
        if state.error_count > previous_errors and state.errors:
            self.say(f"engine: {state.errors[-1]}")
        if state.status == "refused":
            raise RunRefused(state.error or "the engine refused to start")
        if state.alive or state.status == "starting":
            if state.status == "running":
                self._failures = 0  # it came back: the next failure starts the back-off again
            return state
        if self._restart_at is None:
            delay = self.backoff[min(self._failures, len(self.backoff) - 1)]
            self._failures += 1
            self._restart_at = now + delay
            self.say(f"engine stopped: {state.error or state.status}; restarting from the last snapshot in "
                     f"{delay:g} s")
        elif now >= self._restart_at:
            self._restart_at = None
            self.restarts += 1
            try:
                self.engine.restart()
            except Exception as error:
                self.say(f"engine restart failed: {error}")
        return state

"""Keeping the engine alive: a dead engine is restarted from its newest snapshot after a growing back-off; one that
is alive but silent (a deadlock, a stuck driver call, SIGSTOP) longer than `hang_seconds` is killed (SIGKILL) and
restarted the same way; one that refuses the run folder for good ends the run instead of being retried.

Silence is judged by the engine's heartbeat (EngineState.heartbeat, one count per pass of its loop, paused or not),
timed on this process's clock, so the two processes' clocks never meet. Until its first state arrives an engine is
loading its checkpoint and snapshot, which may be slow: that start is allowed at least START_SECONDS.

A lost or hung GPU is one of these crashes or hangs: the engine is restarted with the back-off (a lost GPU under
device "auto" comes back on the CPU and says so: EngineState.degraded). An engine that outlives SIGKILL (stuck in
the GPU driver) cannot be replaced, since it holds the run folder: `watch` raises EngineStuck, and the installation
ends with arguments.EXIT_TRY_AGAIN so the service starts it again (by then the driver may have let go)."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..engine import EngineProcess
from ..exits import TryAgain
from ..engine.process import EngineUnkillable
from ..engine.state import EngineState

RESTART_BACKOFF = (2.0, 5.0, 15.0, 60.0)  # seconds before restarting a dead engine, growing with each failure
START_SECONDS = 180.0  # the least silence allowed before an engine's first state (checkpoint load, first probe)


class RunRefused(Exception):
    """The engine refused to start for good (the run folder is taken or another model's, the checkpoint is
    unusable); one line."""


class EngineStuck(TryAgain):
    """The engine process cannot be killed (stuck in the kernel, most likely the GPU driver) and holds the run
    folder: the installation must end with arguments.EXIT_TRY_AGAIN; one line."""


class EngineSupervisor:
    """`watch(now)` once per refresh: the newest engine state, and a kill or restart when one is due. `say`
    reports; `notice(now)` is the line to keep on screen while a restart waits."""

    def __init__(self, engine: EngineProcess, say: Callable[[str], None],
                 backoff: tuple[float, ...] = RESTART_BACKOFF, hang_seconds: float = 60.0) -> None:
        self.engine, self.say, self.backoff, self.hang_seconds = engine, say, backoff, hang_seconds
        self.state = EngineState()
        self.restarts = 0  # engine restarts so far in this run
        self.hangs = 0  # of which for silence
        self._failures = 0  # failures since the engine last ran
        self._restart_at: float | None = None
        self._beat: tuple[int | None, int, str] | None = None  # (pid, heartbeat, status) last seen changing ...
        self._beat_at = 0.0  # ... and when
        self._hung: str | None = None  # why the engine being restarted was killed

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
            if not (state.alive and self._silent(now, state)):
                return state
            self.state = state = self.engine.poll()  # killed: now it reads as crashed
        if self._restart_at is None:
            delay = self.backoff[min(self._failures, len(self.backoff) - 1)]
            self._failures += 1
            self._restart_at = now + delay
            again = f" (failure {self._failures} in a row)" if self._failures > 1 else ""
            self.say(f"engine stopped: {self._hung or state.error or state.status}; restarting from the last "
                     f"snapshot in {delay:g} s{again}")
        elif now >= self._restart_at:
            self._restart_at = None
            self.restarts += 1
            try:
                self.engine.restart(cause=None if self._hung is None else f"the engine {self._hung} and was killed")
            except EngineUnkillable as error:
                raise EngineStuck(str(error)) from None
            except Exception as error:
                self.say(f"engine restart failed: {error}")
            self._hung = None
        return state

    def notice(self, now: float) -> str | None:
        """While a restart waits: what the screen says, so a crash loop reads as one, not as a frozen picture."""
        if self._restart_at is None:
            return None
        return f"engine down: restarting in {math.ceil(max(0.0, self._restart_at - now))} s (failure {self._failures})"

    def _silent(self, now: float, state: EngineState) -> bool:
        """Whether the engine has been silent too long; if so it is killed here (SIGKILL) and True is returned."""
        beat = (state.pid, state.heartbeat, state.status)
        if beat != self._beat:
            self._beat, self._beat_at = beat, now
            return False
        allowed = max(self.hang_seconds, START_SECONDS) if state.status == "starting" else self.hang_seconds
        silent = now - self._beat_at
        if silent <= allowed:
            return False
        self.hangs += 1
        self._hung = f"hung (no heartbeat for {silent:.0f} s, the limit is {allowed:g} s)"
        self.say(f"engine {self._hung}: killing process {state.pid}")
        try:
            self.engine.kill()
        except EngineUnkillable as error:
            self.say(f"engine: {error}")
            raise EngineStuck(str(error)) from None
        self._beat = None
        return True

"""Smooth motion from frames that arrive in bursts: each is played at the moment it was drawn for.

The engine's frame drawer draws them ahead and tags each with `show_at`, the wall-clock moment it depicts
(engine/drawer.py); they come in bursts when the device is busy. `FrameQueue` keeps
the last few and a display clock that runs a small delay behind real time; each refresh shows the two frames that
bracket the clock, blended by where the clock stands between them, so motion is continuous at the screen's rate
whatever the generator's rhythm. The delay is sized from what was measured: the longest recent wait for a frame,
less how far ahead that frame was drawn. When the buffer runs dry anyway the clock slows down smoothly towards
the newest frame instead of stopping dead, and catches up (at most MAX_RATE) once frames come again.

Each frame also carries the generation of the weights that drew it. A frame of a newer generation (the weights
jumped: rewind, reset, a rollback, a restarted engine) drops every frame of the older ones at once, also those the
clock has not reached yet, so the new weights are on screen at the next refresh; frames of an older generation that
still arrive are stale and ignored.
"""

from __future__ import annotations

from collections import deque

from ..frames import Frame

MAX_DELAY = 2.0  # seconds the picture may run behind real time to keep moving smoothly
SPARE = 0.05  # seconds of margin on top of the measured need
LOW_WATER = 0.25  # seconds of frames left ahead of the clock below which it slows down
MAX_RATE = 1.25  # how much faster than real time the clock may run to catch up
CATCH_UP = 0.5  # per second of lag, how much faster the clock runs (a gentle pull towards the target)
MAX_LAG = 3.0  # further behind than this (start-up, a long stall) the clock jumps to the present
ACCELERATION = 3.0  # per second: how fast the clock's rate may rise again (0 to real time in a third of a second)
BRAKING = 8.0  # per second: how fast it may fall (enough to ease to a halt within LOW_WATER)
KEPT = 256  # frames held at the most (more than the channel's ring); those the clock has passed go first


class FrameQueue:
    def __init__(self) -> None:
        self._frames: deque[Frame] = deque(maxlen=KEPT)
        self._needs: deque[float] = deque(maxlen=32)  # per arrival: how late the frame before would have run out
        self._last_arrival: tuple[float, float] | None = None  # (arrived at, show_at) of the newest frame
        self.clock: float | None = None  # the moment on screen (wall-clock seconds)
        self._last_tick: float | None = None
        self._rate = 1.0  # the clock's speed against real time
        self.delay = 0.0
        self.generation = 0  # of the newest frames

    def add(self, frame: Frame, arrived: float) -> None:
        """A frame that just arrived (at wall-clock `arrived`)."""
        if frame.generation < self.generation:
            return  # drawn for weights that have been replaced
        if frame.generation > self.generation:
            self.generation = frame.generation
            self._frames.clear()  # new weights: what was drawn for the old ones goes, unplayed
        while self._frames and self._frames[-1].show_at >= frame.show_at:
            self._frames.pop()  # drawn anew from an earlier moment (rewind, reset, a new walk): the stale future goes
        self._frames.append(frame)
        if self._last_arrival is not None and frame.sequence > 1:  # not the wait for the engine's very first frame
            previous_arrival, previous_show = self._last_arrival
            need = arrived - previous_show  # > 0: the previous frame's moment had passed by now
            if need < MAX_LAG:  # a start-up or a restart is not jitter to be absorbed
                self._needs.append(need)
        self._last_arrival = (arrived, frame.show_at)
        self.delay = min(max(max(self._needs, default=0.0), 0.0) + SPARE, MAX_DELAY)

    def position(self, now: float) -> tuple[Frame, Frame, float] | None:
        """The frames around the moment to show at wall-clock `now`, and how far between them (0 = the older)."""
        if not self._frames:
            return None
        target, newest = now - self.delay, self._frames[-1].show_at
        if self.clock is None or self._last_tick is None or abs(target - self.clock) > MAX_LAG:
            self.clock, self._rate = min(target, newest), 1.0
        else:
            dt = now - self._last_tick
            rate = min(1.0 + CATCH_UP * (target - self.clock), MAX_RATE)
            rate *= min(max(newest - self.clock, 0.0) / LOW_WATER, 1.0)  # running dry: ease off, do not stop dead
            change = min(max(rate - self._rate, -BRAKING * dt), ACCELERATION * dt)  # and start again gently
            self._rate = max(self._rate + change, 0.0)
            self.clock = min(self.clock + self._rate * dt, newest)
        self._last_tick = now
        while len(self._frames) > 2 and self._frames[1].show_at <= self.clock:
            self._frames.popleft()  # passed: only the one just before the clock is still needed
        older = self._frames[0]
        for frame in self._frames:
            if frame.show_at > self.clock:
                span = frame.show_at - older.show_at
                return older, frame, (self.clock - older.show_at) / span if span > 0 else 1.0
            older = frame
        return older, older, 1.0

"""The outputs the loop feeds each refresh: the sinks of display/sinks.py (the headless file, the performer's
recording, NDI, streams), kept from ever stopping the show.

A sink that raises (a GL error in its readback, a bug) is said once on screen and in the log, left out for a
growing back-off and tried again; its state says so. Sinks that talk to the outside world retry on their own
threads; this is the guard around what runs on the loop's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..display.sinks import OutputState, OutputStatus, Sink
from ..messages import first_line

log = logging.getLogger(__name__)

BACKOFF = (1.0, 5.0, 30.0, 120.0)  # seconds a failing sink is left out, growing with each failure in a row


class Outputs:
    def __init__(self, sinks: Sequence[Sink], say: Callable[[str], None]) -> None:
        self.sinks, self.say = list(sinks), say
        self._failures: dict[str, tuple[int, float, str]] = {}  # name -> (failures in a row, retry at, why)

    def captures(self, now: float,
                 output: tuple[int, int]) -> tuple[list[Callable[[], None]], list[Callable[[], None]]]:
        """The readbacks due this refresh: (those without the HUD, those with it)."""
        before, after = [], []
        for sink in self.sinks:
            failing = self._failures.get(sink.name)
            if failing is not None and now < failing[1]:
                continue
            try:
                capture = sink.capture_for(now, output)
            except Exception as error:
                self._failed(sink, now, error)
                continue
            if capture is not None:
                (after if sink.hud else before).append(self._guarded(sink, capture, now))
        return before, after

    def _guarded(self, sink: Sink, capture: Callable[[], None], now: float) -> Callable[[], None]:
        def run() -> None:
            try:
                capture()
            except Exception as error:
                self._failed(sink, now, error)
            else:
                self._failures.pop(sink.name, None)
        return run

    def _failed(self, sink: Sink, now: float, error: Exception) -> None:
        count = self._failures.get(sink.name, (0, 0.0, ""))[0]
        delay = BACKOFF[min(count, len(BACKOFF) - 1)]
        why = f"{type(error).__name__}: {first_line(error)}"
        self._failures[sink.name] = (count + 1, now + delay, why)
        log.exception("output %s failed", sink.name)
        self.say(f"output {sink.name} failed ({why}); trying again in {delay:g} s")

    def draw(self, pixels: Any, hud: str | None, blackout: float, now: float) -> bool:
        """The refresh on the outputs that show it themselves (further windows); whether any did (their GL
        contexts were made current: the caller makes its own current again)."""
        drew = False
        for sink in self.sinks:
            draw = getattr(sink, "draw", None)
            failing = self._failures.get(sink.name)
            if draw is None or (failing is not None and now < failing[1]):
                continue
            drew = True
            try:
                draw(pixels, hud, blackout, now)
            except Exception as error:
                self._failed(sink, now, error)
        return drew

    def states(self) -> tuple[OutputState, ...]:
        states = []
        for sink in self.sinks:
            state = sink.state()
            if (failing := self._failures.get(sink.name)) is not None:
                state = OutputState(sink.name, OutputStatus.RETRYING, failing[2], state.frames, state.dropped)
            states.append(state)
        return tuple(states)

    def close(self) -> None:
        """Close every sink (finalising files), each whatever the others do."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing output %s failed", sink.name)

"""The common part of the outputs that send the picture to other software (NDI, streams): a `Sink`
(display/sinks.py) whose frames leave on a thread of its own.

On the loop's thread it only reads the picture back when a frame is due at its own rate (on the display clock) and
puts it in a one-frame mailbox: the newest frame wins, one still waiting is dropped and counted, the loop never waits.
The sender thread opens its target (the NDI sender, the ffmpeg streaming process), sends what arrives, and when
anything fails closes it, says so once and opens it again after a growing back-off; `state()` shows which.
A target that can never open here (a missing package or runtime) raises `Unavailable`: said once, not retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..display.sinks import FittedReadback, OutputState, OutputStatus, SinkContext, read_rgba
from ..messages import first_line

log = logging.getLogger(__name__)

BACKOFF = (1.0, 2.0, 5.0, 15.0, 30.0)  # seconds before opening a failed target again, growing with each failure
# After a failure, a target counts as working again only once it has taken frames this long (a process that dies
# at once, e.g. on a busy port, still takes the first frames into its pipe): until then the state says retrying.
HEALTHY_SECONDS = 5.0
STOP_SECONDS = 5.0  # a sender thread still busy this long after close() is left behind (it is a daemon)


class Unavailable(Exception):
    """The output cannot work on this machine as installed; one line naming the fix."""


class FrameSender:
    """Subclasses name their `kind` and implement `_open()`, `_send(pixels)` (RGBA, bottom row first, `size`) and
    `_shut()`, all called on the sender thread only."""

    kind = "output"

    def __init__(self, name: str, size: tuple[int, int], fps: float, hud: bool, context: SinkContext) -> None:
        self.name, self.size, self.fps, self.hud = name, size, fps, hud
        self.ctx, self.report = context.ctx, context.report
        self.frames = self.dropped = 0
        self.status, self.detail = OutputStatus.RETRYING, "starting"
        self._fitted: FittedReadback | None = None
        self._due = 0.0  # the display clock's moment of the next frame
        self._mailbox: bytes | None = None
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"output-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------- the loop's thread
    def capture_for(self, now: float, output: tuple[int, int]) -> Callable[[], None] | None:
        if now < self._due or self.status is OutputStatus.FAILED:
            return None
        self._due = max(self._due + 1 / self.fps, now - 0.5 / self.fps)  # a late refresh is not made up in a burst
        if self.size != output and (self._fitted is None or self._fitted.size != self.size):
            self._fitted = FittedReadback(self.ctx, self.size)
        return lambda: self._post(read_rgba(self.ctx, output, self.size, self._fitted))

    def _post(self, pixels: bytes) -> None:
        with self._ready:
            if self._mailbox is not None:
                self.dropped += 1  # the sender had not taken the last one yet: the newest wins
            self._mailbox = pixels
            self._ready.notify()

    def state(self) -> OutputState:
        return OutputState(self.name, self.status, self.detail, self.frames, self.dropped)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(STOP_SECONDS)
        if self._fitted is not None:
            self._fitted.release()

    # ------------------------------------------------------------------------------------ the sender thread
    def _run(self) -> None:
        failures, opened_at = 0, None  # failures in a row; when the target was opened (None: it is not)
        while True:
            if opened_at is None:
                try:
                    self._open()
                except Unavailable as error:
                    self.status, self.detail = OutputStatus.FAILED, str(error)
                    self.report(f"output {self.name}: {error}")
                    return
                except Exception as error:
                    failures = self._failed(failures, f"cannot start: {first_line(error)}")
                    if self._wait(BACKOFF[min(failures - 1, len(BACKOFF) - 1)]):
                        return
                    continue
                opened_at = time.monotonic()
            with self._ready:
                self._ready.wait_for(lambda: self._mailbox is not None or self._closed)
                pixels, self._mailbox = self._mailbox, None
            if self._closed:
                break
            try:
                self._send(pixels)
                self.frames += 1
                if not failures or time.monotonic() - opened_at >= HEALTHY_SECONDS:
                    failures, self.status, self.detail = 0, OutputStatus.ON, self._describe()
            except Exception as error:
                self._quietly_shut()
                opened_at = None
                failures = self._failed(failures, first_line(error))
                if self._wait(BACKOFF[min(failures - 1, len(BACKOFF) - 1)]):
                    return
        self._quietly_shut()

    def _failed(self, failures: int, why: str) -> int:
        delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
        self.status, self.detail = OutputStatus.RETRYING, f"{why}; again in {delay:g} s"
        if failures == 0:  # said once per outage, not at every retry
            self.report(f"output {self.name} failed: {why}; trying again every few seconds")
        log.info("output %s: %s", self.name, self.detail)
        return failures + 1

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds` unless closed first; True when closed."""
        with self._ready:
            return self._ready.wait_for(lambda: self._closed, timeout=seconds)

    def _quietly_shut(self) -> None:
        try:
            self._shut()
        except Exception:
            log.exception("output %s did not close cleanly", self.name)

    # ------------------------------------------------------------------------------------------ per kind
    def _describe(self) -> str:
        return f"{self.size[0]}x{self.size[1]} at {self.fps:g} fps"

    def _open(self) -> None:
        raise NotImplementedError

    def _send(self, pixels: bytes) -> None:
        raise NotImplementedError

    def _shut(self) -> None:
        raise NotImplementedError


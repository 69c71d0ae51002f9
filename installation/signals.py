"""Stopping the installation: SIGINT, SIGTERM and SIGHUP all end a run the same clean way.

A terminal's Ctrl-C and hang-up go to the whole process group, a service manager sends SIGTERM (to the main
process, or to the group), `kill PID` sends SIGTERM. The handlers only note the signal; the display loop sees
`requested` at its next refresh and shuts down in order: the video finalised, the engine's final snapshot, GL and
shared memory released, the last picture saved. No KeyboardInterrupt is ever raised in the middle of a write.
The command line takes them from its first instant, before the seconds of importing torch and loading the model,
so a stop during start-up ends it with one line too (cli.main).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """Within `with StopSignals() as stop:`, the three signals set `stop.received` instead of ending the process."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            self._previous = {s: signal.signal(s, self._note) for s in STOP_SIGNALS}
        return self

    def __exit__(self, _type: type[BaseException] | None, _value: BaseException | None,
                 _traceback: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def hand_back(self) -> None:
        """Restore the handlers there were, and deliver a signal noted meanwhile as they would have (for a command
        that takes its signals the ordinary way: Ctrl-C is then its KeyboardInterrupt)."""
        received = self.received
        self.__exit__(None, None, None)
        if received is not None:
            signal.raise_signal(received)

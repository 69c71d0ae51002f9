"""One-line reasons from library exceptions, for messages of the form "what went wrong (reason); the fix".

Library texts run to paragraphs (torch.load's weights-only refusal is 700 characters with terminal colour codes),
and a message cut at a fixed length ends mid-word. The reason is the first sentence of the first line, shortened at
a word, so the fix that follows it is always read in full.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

MAX_REASON = 160
LOG_EVERY = 10.0  # seconds between log lines per (source, kind) of bad input
MAX_LOG_KEYS = 1024  # (source, kind) pairs remembered; more (a scan, spoofed senders) and they are forgotten
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # torch's weights-only unpickler names the class it refused
_UNPICKLER = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")  # or the pickle instruction it cannot read
_SENTENCE_END = re.compile(r"(?<=[^\s.])\. (?=[A-Z])")


def first_line(error: BaseException, limit: int = MAX_REASON) -> str:
    """The gist of `error` in at most `limit` characters, ending at a word."""
    text = _COLOUR.sub("", str(error)).strip()
    if found := _GLOBAL.search(text):
        return f"it holds the Python object {found.group(1)}, not only weights"
    if found := _UNPICKLER.search(text):
        text = f"the weights-only reader cannot read it: {found.group(1)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    reason = _SENTENCE_END.split(lines[0])[0].rstrip(".")
    if len(reason) <= limit:
        return reason
    return reason[:limit - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


@contextmanager
def quiet_torch_load() -> Iterator[None]:
    """torch.load warns about pickle protocols and TorchScript archives on stderr; the caller's message says enough."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def size_text(size: float) -> str:
    """Bytes as KB, MB or GB with one decimal: a nearly full disk must not read '0 MB free'."""
    for unit in ("KB", "MB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GB"


class RateLimitedLog:
    """One warning per (sender, kind) per `every` seconds, saying how many like it were held back, so a flood of
    bad input can neither fill the disk nor hide the first line. Memory stays bounded: past `max_keys` senders and
    kinds (a scan, spoofing) it forgets them all rather than grow. Thread-safe."""

    def __init__(self, logger: logging.Logger, prefix: str, every: float = LOG_EVERY,
                 max_keys: int = MAX_LOG_KEYS) -> None:
        self.logger, self.prefix, self.every, self.max_keys = logger, prefix, every, max_keys
        self._seen: dict[tuple[str, str], list[float]] = {}  # (sender, kind) -> [last logged, held back]
        self._lock = threading.Lock()

    def __call__(self, sender: str, kind: str, text: str) -> bool:
        """Log it unless a line of this kind from this sender went out less than `every` seconds ago; True if
        logged."""
        now = time.monotonic()
        with self._lock:
            if len(self._seen) >= self.max_keys:
                self._seen.clear()
            entry = self._seen.get((sender, kind))
            if entry is not None and now - entry[0] < self.every:
                entry[1] += 1
                return False
            held = int(entry[1]) if entry else 0
            self._seen[(sender, kind)] = [now, 0]
        self.logger.warning("%s: %s from %s: %s%s", self.prefix, kind, sender, text,
                            f" ({held} more like it in the last {self.every:g} s)" if held else "")
        return True

"""The inbox between controllers (OSC thread, key callbacks, the director) and the display loop.

The display loop drains it once per refresh. A continuous control (a fader: lr, speed, walk period, blackout...)
keeps only its newest value, placed where it was last set, so a fader swept during a slow frame costs one
action, not a backlog; discrete actions (reset, rewind, back, snapshot...) are kept in order. At most `capacity`
discrete actions wait: a flood is refused at the door (put() returns False) instead of growing memory.
"""

from __future__ import annotations

import itertools
import threading

from .actions import Action

CAPACITY = 256  # discrete actions waiting; a performer presses a few per second, a drained loop holds ~0


class Inbox:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.refused = 0  # discrete actions refused because the inbox was full
        self._lock = threading.Lock()
        # continuous actions keyed by name, discrete ones by a sequence number; dict order = arrival order
        self._items: dict[str | int, Action] = {}
        self._discrete = 0
        self._sequence = itertools.count()

    def put(self, action: Action) -> bool:
        """Queue one action; False when it was refused because `capacity` discrete actions are waiting."""
        with self._lock:
            if action.spec.continuous:
                self._items.pop(action.name, None)  # re-inserted at the end: the newest value, at its newest place
                self._items[action.name] = action
                return True
            if self._discrete >= self.capacity:
                self.refused += 1
                return False
            self._items[next(self._sequence)] = action
            self._discrete += 1
            return True

    def drain(self) -> list[Action]:
        """Everything waiting, oldest first; the inbox is empty afterwards."""
        with self._lock:
            actions = list(self._items.values())
            self._items.clear()
            self._discrete = 0
        return actions

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

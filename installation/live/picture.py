"""The picture on screen: frames from the engine's ring, played at their moments (motion.py) by the presenter."""

from __future__ import annotations

import time

import numpy as np

from ..display.presenter import Presenter
from ..frames import Frame, FrameChannel
from .motion import FrameQueue


class Picture:
    """Each refresh, `update(wall, now)` takes the frames that came since the last one, finds the two around the
    moment to show and has the presenter blend them (or cut, with `cut`). `shown_iteration` is the training iteration
    of the weights that drew the frame on screen. `poster`, a first picture drawn before the engine is up, is shown
    at walk time 0 until its frames come. Each frame holds one walk or the N x N population; the screen shows the
    grid, or the first walk when `grid` is off. `shown` keeps the whole frames around the moment, for other windows."""

    def __init__(self, channel: FrameChannel, presenter: Presenter, cut: bool, poster: np.ndarray | None,
                 epoch: float) -> None:
        self.channel, self.presenter, self.cut = channel, presenter, cut
        self.motion = FrameQueue()
        if poster is not None:
            self.motion.add(Frame(poster, 0, 0, 0.0, epoch, epoch), time.time())
        self.last_sequence = 0  # of the newest frame received
        self.shown_iteration = 0
        self.shown: tuple[tuple[int, np.ndarray], tuple[int, np.ndarray], float] | None = None

    def update(self, wall: float, now: float, grid: bool) -> None:
        """`wall`: time.time() (the frames' moments), `now`: time.monotonic() (the presenter's clock), `grid`: whether
        the screen shows the population."""
        for frame in self.channel.read_since(self.last_sequence):
            self.last_sequence = frame.sequence
            self.motion.add(frame, wall)
        if (shown := self.motion.position(wall)) is None:
            return
        older, newer, mix = shown
        if self.cut:
            older, mix = (newer, 1.0) if mix >= 1.0 else (older, 0.0)
        self.shown = (older.sequence, older.pixels), (newer.sequence, newer.pixels), mix
        cells = slice(None) if grid else slice(1)
        self.presenter.show_pair((older.sequence, older.pixels[cells]), (newer.sequence, newer.pixels[cells]), mix, now)
        self.shown_iteration = (newer if mix >= 0.5 else older).iteration

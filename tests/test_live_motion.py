"""Smooth playback of frames that arrive in bursts (live/motion.py), and a first picture at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from installation.frames import Frame
from installation.live.motion import MAX_RATE, FrameQueue
from installation.models import create_stylegan1, save_gan

ROOT = Path(__file__).resolve().parents[1]
REFRESH = 1 / 60


def frame(show_at: float, sequence: int) -> Frame:
    return Frame(np.zeros((1, 2, 2, 3), np.uint8), sequence, 0, show_at, show_at, show_at)


def play(arrivals: list[tuple[float, float]], until: float) -> tuple[list[float], FrameQueue]:
    """Refresh at 60 Hz; frames (arrival time, show_at) join the queue when they arrive; the clock at each refresh."""
    queue, clocks, pending, sequence = FrameQueue(), [], sorted(arrivals), 0
    now = 0.0
    while now < until:
        while pending and pending[0][0] <= now:
            sequence += 1
            queue.add(frame(pending.pop(0)[1], sequence), now)
        if queue.position(now) is not None:
            clocks.append(queue.clock)
        now += REFRESH
    return clocks, queue


def test_frames_in_bursts_play_at_an_even_pace():
    # a burst every second (a training step in between), each frame drawn 1.6 s ahead, 1/30 s apart
    arrivals = [(burst + k * 0.01, burst + 1.6 + k / 30) for burst in range(10) for k in range(30)]
    clocks, _ = play(arrivals, 10.0)
    clocks = np.array(clocks)
    steps = np.diff(clocks[60:])
    assert np.allclose(steps, REFRESH, atol=REFRESH * 0.05)  # real time, no holds, no jumps


def test_a_buffer_that_runs_dry_slows_down_gently_and_catches_up():
    # frames up to t = 2 s, then nothing until 3.5 s (a long stall of the engine), then frames again
    arrivals = [(k / 30, k / 30 + 0.1) for k in range(60)] + [(3.5 + k / 30, 3.5 + k / 30 + 0.1) for k in range(60)]
    clocks, _ = play(arrivals, 5.5)
    clocks = np.array(clocks)
    steps = np.diff(clocks)
    assert (steps >= -1e-9).all()  # never backwards
    assert steps.max() <= MAX_RATE * REFRESH * 1.01  # never a jump forwards
    assert np.abs(np.diff(steps)).max() <= 0.25 * REFRESH  # the speed changes gradually, no stop dead
    assert steps[-30:].mean() > 1.1 * REFRESH  # behind real time once frames come again: catching up, gently


def test_frames_drawn_anew_replace_the_stale_future():
    queue = FrameQueue()
    for k in range(10):
        queue.add(frame(1.0 + k / 10, k + 1), 0.5)
    queue.add(frame(1.05, 11), 0.6)  # after a reset: drawn from now, with the new weights
    older, newer, _ = queue.position(1.3)
    assert {older.sequence, newer.sequence} <= {1, 11}  # the old frames beyond 1.05 are gone


def test_the_first_picture_is_on_screen_at_once(tmp_path):
    checkpoint = tmp_path / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), checkpoint)
    result = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "--checkpoint", str(checkpoint),
                             "--headless", "--seconds", "3", "--size", "160x120", "--device", "cpu", "--no-osc",
                             "--http-port", "0",
                             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (video,) = (tmp_path / "run").glob("live-*.mp4")
    reader = imageio_ffmpeg.read_frames(str(video))
    next(reader)
    frames = [np.frombuffer(f, np.uint8) for f in reader]
    assert len(frames) >= 60 and min(f.max() for f in frames) > 16  # not one black frame, from the very first

"""Shared-memory frame channel: in one process, and between real processes with a writer that gets killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from installation.frames import FrameChannel

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (4, 128, 128, 3)  # a grid batch, big enough that copies take a while and the two sides race


def pattern(sequence: int) -> np.ndarray:
    """Frame `sequence`'s pixels: 8 patterns in turn, so a read torn between two publishes cannot match."""
    return ((np.arange(np.prod(SHAPE)).reshape(SHAPE) + 37 * (sequence % 8)) % 251).astype(np.uint8)


# The writer: publishes frame i (pattern(i), iteration 10*i, walk time i/8) as fast as it can, `limit` frames
# (0: until killed), then says so and waits to be killed.
WRITER = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
sys.path.insert(0, {str(ROOT / "tests")!r})
from installation.frames import FrameChannel
from test_frames import pattern
channel = FrameChannel.attach(sys.argv[1])
limit = int(sys.argv[2])
patterns = [pattern(k) for k in range(8)]
i = 0
while not limit or i < limit:
    i += 1
    channel.publish(patterns[i % 8], iteration=10 * i, walk_time=i / 8)
print("done", flush=True)
sys.stdin.read()
"""


def check(frame) -> None:
    """A complete frame: pixels and metadata all from the same publish."""
    assert frame.iteration == 10 * frame.sequence and frame.walk_time == frame.sequence / 8
    assert np.array_equal(frame.pixels, pattern(frame.sequence))


def start_writer(name: str, limit: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, name, str(limit)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_newest_frame_with_metadata_in_one_process():
    with FrameChannel.create(8, 6, slots=4) as owner, FrameChannel.attach(owner.name) as reader:
        assert reader.read() is None
        for i in range(1, 6):
            assert owner.publish(np.full((6, 8, 3), i, np.uint8), iteration=100 + i, walk_time=i / 2) == i
        frame = reader.read()
        assert frame.sequence == 5 and frame.iteration == 105 and frame.walk_time == 2.5
        assert frame.pixels.shape == (1, 6, 8, 3) and (frame.pixels == 5).all()
        assert abs(frame.time - time.time()) < 5
        assert reader.read(newer_than=5) is None  # nothing new: the display keeps its frame
        reader.publish(np.zeros((2, 4, 4, 3), np.uint8))  # either end may write; a smaller grid batch fits
        assert owner.read(newer_than=5).pixels.shape == (2, 4, 4, 3)
        for bad in (np.zeros((6, 8, 3), np.float32), np.zeros((3, 6, 8, 3), np.uint8), np.zeros((6, 8, 4), np.uint8)):
            with pytest.raises(ValueError):
                owner.publish(bad)


def test_owner_close_unlinks_but_an_attached_reader_keeps_its_last_frame():
    owner = FrameChannel.create(4, 4)
    reader = FrameChannel.attach(owner.name)
    owner.publish(np.full((4, 4, 3), 7, np.uint8), iteration=3)
    owner.close()
    with pytest.raises(FileNotFoundError):
        FrameChannel.attach(owner.name)
    assert reader.read().iteration == 3
    reader.close()


def test_create_replaces_a_leftover_segment_of_the_same_name():
    name = f"uncanny-test-{os.getpid()}"
    crashed = FrameChannel.create(4, 4, name=name)  # an owner that "died" without closing
    crashed.publish(np.full((4, 4, 3), 1, np.uint8))
    with FrameChannel.create(8, 8, name=name) as fresh, FrameChannel.attach(name) as reader:
        assert reader.slot_bytes == fresh.slot_bytes and reader.read() is None
    assert crashed.read().sequence == 1  # the old mapping stays readable
    crashed.owner = False  # its name now belongs to nobody: already unlinked
    crashed.close()


def test_reader_sees_only_complete_newest_frames_and_survives_the_writer_being_killed():
    with FrameChannel.create(SHAPE[2], SHAPE[1], slots=2 * SHAPE[0]) as channel:
        writer = start_writer(channel.name, 0)
        try:
            frames, last, slowest = [], 0, 0.0
            launched = time.monotonic()
            while channel.read() is None and time.monotonic() < launched + 10:  # the writer is starting
                time.sleep(0.01)
            deadline = time.monotonic() + 1.0
            while len(frames) < 200 and time.monotonic() < deadline:  # copy flat out, to race the writer
                started = time.perf_counter()
                frame = channel.read()
                slowest = max(slowest, time.perf_counter() - started)
                if frame is None:  # every retry raced the writer: allowed, the display keeps its frame
                    continue
                assert frame.sequence >= last
                if frame.sequence > last:
                    frames.append(frame)
                    last = frame.sequence
            assert len(frames) >= 20
        finally:
            writer.kill()  # SIGKILL, possibly in the middle of a publish
            writer.wait(5)
        for frame in frames:
            check(frame)
        sequences = [frame.sequence for frame in frames]
        assert sequences == sorted(set(sequences))
        assert last > len(frames)  # the writer outpaced the reader: stale frames were skipped, not queued
        assert slowest < 0.25  # bounded retries, no waiting (generous: 2 shared cores)
        print(f"{len(frames)} frames read, {channel.torn_reads} torn reads retried")
        final = channel.read()
        check(final)
        assert final.sequence >= last
        assert channel.read(newer_than=final.sequence) is None
        assert channel.read().sequence == final.sequence  # still there, still complete


def test_reader_gets_the_newest_frame_once_the_writer_stops():
    with FrameChannel.create(SHAPE[2], SHAPE[1], slots=3 * SHAPE[0]) as channel:
        writer = start_writer(channel.name, 300)
        try:
            assert writer.stdout.readline().strip() == "done"
            frame = channel.read()
            check(frame)
            assert frame.sequence == 300
        finally:
            writer.kill()
            writer.wait(5)

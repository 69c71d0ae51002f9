"""Shared-memory frame channel: in one process, between real processes with a writer that gets killed, sized from
what is shown, and with /dev/shm too small or filling up (a private mount namespace)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from installation.engine.config import RenderConfig, WalkConfig
from installation.engine.drawer import FrameDrawer, WalkSettings
from installation.frames import (FrameChannel, SharedMemoryError, check_shared_memory, ring_bytes, ring_slots,
                                 shared_memory_free)
from installation.models import create_stylegan1
from installation.walks import make_walks, render_walk_frames

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
    # six moments: the newest survives five more publishes of a writer that never pauses, so a copy slowed down by a
    # loaded machine still completes now and then (with two, the copy must beat the writer: flaky under load)
    with FrameChannel.create(SHAPE[2], SHAPE[1], slots=6 * SHAPE[0]) as channel:
        writer = start_writer(channel.name, 0)
        try:
            frames, last, slowest = [], 0, 0.0
            launched = time.monotonic()
            while channel.read() is None and time.monotonic() < launched + 10:  # the writer is starting
                time.sleep(0.01)
            soon, deadline = time.monotonic() + 1.0, time.monotonic() + 60.0
            # copy flat out, to race the writer, for a second, or on a loaded machine until 20 frames came
            while len(frames) < 200 and time.monotonic() < (soon if len(frames) >= 20 else deadline):
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
        print(f"{len(frames)} frames read, {channel.torn_reads} torn reads retried, slowest read {slowest:.3f} s")
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


def test_one_ring_holds_one_walk_or_the_grid_switched_on_at_any_moment():
    """Publishes of 1 and of 4 frames (the grid switched on and off) share the slots: every frame read is whole and
    its own, the newest is always there, and the ring never claims more frames than it has."""
    def frames_of(sequence: int, count: int) -> np.ndarray:
        return ((np.arange(count * 5 * 5 * 3).reshape(count, 5, 5, 3) + 11 * sequence) % 251).astype(np.uint8)

    with FrameChannel.create(5, 5, slots=10) as ring:
        counts = [1, 1, 4, 1, 4, 4, 1, 1, 1, 4, 1, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 4, 1] * 3
        for sequence, count in enumerate(counts, 1):
            assert ring.publish(frames_of(sequence, count), iteration=sequence, generation=sequence // 10) == sequence
            held = ring.read_since(0)
            assert held[-1].sequence == sequence and ring.read().sequence == sequence
            assert sum(len(f.pixels) for f in held) <= ring.slots
            for frame in held:
                assert frame.iteration == frame.sequence and frame.generation == frame.sequence // 10
                assert np.array_equal(frame.pixels, frames_of(frame.sequence, counts[frame.sequence - 1]))
        assert ring.generation == len(counts) // 10 and ring.capacity(4) == 2
        with pytest.raises(ValueError, match="do not fit 5 slots"):
            ring.publish(frames_of(0, 6))  # more than half the ring: the newest would not outlast the next


def test_a_1024_px_walk_gets_the_slots_to_draw_one_and_a_half_steps_ahead():
    """The ring for the paper's 1024 px model (here a random one of tiny widths, built with the project's classes) and
    one walk holds what the drawer draws ahead of a GPU's training step: the slowest 1024 px step a GPU should take
    (batch 4) is about 70 ms, and the drawer draws 1.5 steps and two frames ahead (engine/drawer.py)."""
    gan = create_stylegan1([8] * 9, code_dim=8, n_mlp=1)
    assert gan.resolution == 1024
    fps, step = RenderConfig().max_fps, 0.070
    slots = ring_slots(gan.resolution, WalkConfig().grid, fps)
    if (shared_memory_free() or 0) < ring_bytes(1024, 1024, slots):
        pytest.skip("/dev/shm is too small here for a 1024 px ring")
    frame = render_walk_frames(gan, make_walks(1, gan.latent_dim)[:1], 0.0)  # (1, 1024, 1024, 3)
    with FrameChannel.create(gan.resolution, gan.resolution, slots) as ring:
        drawer = FrameDrawer(ring.name, WalkConfig(), RenderConfig(), WalkSettings.start(WalkConfig(), False))
        drawer._channel = ring
        drawer.follow(gan.generator, 0, 0, seconds=step)  # a step as the trainer reports it
        lead = drawer._lead(1, list(drawer._steps))
        assert lead == pytest.approx(1.5 * step + 2 / fps)  # not cut short by the ring
        ahead = math.ceil(lead * fps)
        for k in range(ahead + 2):  # the frames ahead, the one on screen and the one being written
            ring.publish(frame, iteration=k, show_at=k / fps)
        assert [f.iteration for f in ring.read_since(0)] == list(range(ahead + 2))  # none overwritten
        assert np.array_equal(ring.read().pixels, frame)
        grid = np.repeat(frame, WalkConfig().grid**2, axis=0)  # the 3 x 3 view switched on in the same ring
        for k in range(3):
            ring.publish(grid, iteration=100 + k)
        assert [f.iteration for f in ring.read_since(0)][-2:] == [101, 102]


def test_shared_memory_too_small_is_one_line_naming_it_and_the_fix():
    with pytest.raises(SharedMemoryError) as info:
        check_shared_memory(5 * 2**40)
    message = info.value.strerror
    assert re.fullmatch(r"the frames need 5120\.0 GB of shared memory but /dev/shm has [0-9.]+ [KMG]B free; enlarge "
                        r"/dev/shm \(Docker: --shm-size=\d+m\) or lower \[render\] max_fps or \[walk\] grid", message)


UNSHARED = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from installation.frames import FrameChannel, SharedMemoryError
ring = FrameChannel.create(256, 256, slots=8)  # 1.5 MB, reserved when created
with open("/dev/shm/filler", "wb", buffering=0) as filler:  # then something else fills /dev/shm
    try:
        while True:
            filler.write(bytes(2**16))
    except OSError:
        pass
for k in range(20):  # every slot written after the fill: the pages are the ring's already
    ring.publish(np.full((256, 256, 3), k, np.uint8), iteration=k)
print("published", ring.read().iteration, flush=True)
try:
    FrameChannel.create(256, 256, slots=8)
except SharedMemoryError as error:
    print("refused:", error.strerror)
"""


def private_shm(size: str, command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`command` in a private mount namespace whose /dev/shm is a tmpfs of `size` (root only; skips elsewhere)."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("a private mount namespace needs root (unshare -m)")
    return subprocess.run(["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec "$@"',
                           "sh", *command], capture_output=True, text=True, timeout=300, **kwargs)


def test_dev_shm_filling_later_cannot_kill_the_writer_and_a_full_one_is_refused_in_one_line():
    result = private_shm("4m", [sys.executable, "-c", UNSHARED.format(root=str(ROOT))])
    assert result.returncode == 0, (result.returncode, result.stderr)  # -7 would be SIGBUS
    lines = result.stdout.splitlines()
    assert lines[0] == "published 19"
    assert re.fullmatch(r"refused: the frames need 1\.5 MB of shared memory but /dev/shm has [0-9.]+ KB free; "
                        r"enlarge /dev/shm \(Docker: --shm-size=\d+m\) .*", lines[1])


def test_the_installation_refuses_a_small_dev_shm_in_one_line(tmp_path):
    result = private_shm("1m", [sys.executable, str(ROOT / "run_installation.py"), "--headless", "--seconds", "5",
                                "--size", "160x120", "--device", "cpu", "--no-osc", "--http-port", "0",
                                "--run-dir", str(tmp_path / "run")])
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 75, result.stderr  # shared memory may be freed or enlarged: a start to try again
    assert len(errors) == 1 and re.fullmatch(r"uncanny: error: the frames need [0-9.]+ MB of shared memory but "
                                             r"/dev/shm has [0-9.]+ [KM]B free; enlarge /dev/shm \(Docker: "
                                             r"--shm-size=\d+m\) .*", errors[0]), result.stderr
    assert "Traceback" not in result.stderr

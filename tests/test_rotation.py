"""A month on one disk: the headless live video in segments within a budget (each a whole file that ffmpeg
decodes), suspended while its disk is full and recording again by itself; files cut off mid-write made playable;
lengths read from what was written; the recordings folder within [record] folder_gb."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from installation.presets import PresetError, load_preset
from installation.recording import RotatingVideo, VideoEncoder, cut_to_whole_fragments, prune_oldest, video_length

FPS = 30.0


def decoded_frames(path: Path) -> int:
    """Frames ffmpeg decodes from the file (every one decoded, not its packets counted)."""
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def noise(rng: np.random.Generator, width: int = 64, height: int = 48) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), np.uint8)


def test_the_live_video_rotates_into_whole_segments_and_keeps_within_its_budget(tmp_path):
    rng = np.random.default_rng(0)
    sizing = RotatingVideo(tmp_path, "live", 64, 48, FPS, segment_seconds=1.0, budget_bytes=1e12)
    for _ in range(90):
        sizing.write(noise(rng))
    segment = max(path.stat().st_size for path in sizing.close())
    folder = tmp_path / "run"
    folder.mkdir()  # the run folder (a missing one is waited for, not made: see the next test)

    said: list[str] = []
    video = RotatingVideo(folder, "live", 64, 48, FPS, segment_seconds=1.0, budget_bytes=2.5 * segment,
                          say=said.append)
    for _ in range(300):  # ten segments of 30 frames
        video.write(noise(rng))
    assert video.frames == 300
    kept = video.close()
    on_disk = sorted(folder.glob("live-*.mp4"), key=lambda path: path.stat().st_mtime)
    assert kept == on_disk and 2 <= len(kept) < 10  # the oldest went, the newest stayed
    assert sum(path.stat().st_size for path in kept) <= 2.5 * segment
    assert [decoded_frames(path) for path in kept] == [30] * len(kept)  # each a whole, playable file
    assert [video_length(path) for path in kept] == [(30, 1.0)] * len(kept)
    deleted = [line for line in said if line.startswith("deleted the oldest live video")]
    assert len(deleted) == 10 - len(kept) and not list(folder.glob("*.partial"))


def test_a_full_disk_suspends_the_live_video_and_it_records_again_once_there_is_room(small_disk, fill_disk):
    disk = small_disk("80m")  # room to record again: twice the free space every writer leaves, and more
    rng = np.random.default_rng(1)
    said: list[str] = []
    video = RotatingVideo(disk, "live", 320, 240, FPS, segment_seconds=600.0, budget_bytes=1e12, say=said.append)
    for _ in range(90):
        video.write(noise(rng, 320, 240))
    partial = video.path.with_name(video.path.name + ".partial")
    deadline = time.monotonic() + 60
    while partial.stat().st_size < 100_000:  # a fragment or two on disk
        assert time.monotonic() < deadline
        time.sleep(0.1)
    filler = fill_disk(disk)
    while video.suspended is None:  # ffmpeg meets the full disk, or the guard sees it first
        assert time.monotonic() < deadline, said
        video.write(noise(rng, 320, 240))
    (first,) = video.files
    frames, seconds = video_length(first)
    assert decoded_frames(first) == frames > 0 and seconds == frames / FPS  # it plays, and its length is true
    assert any("the live video is suspended" in line and "starts again by itself" in line for line in said), said
    assert not video.write(noise(rng, 320, 240))  # waiting, not failing
    filler.unlink()
    while video.suspended is not None:
        assert time.monotonic() < deadline + 60, said
        video.write(noise(rng, 320, 240))
        time.sleep(0.05)
    for _ in range(40):
        video.write(noise(rng, 320, 240))
    assert any(line.startswith("the live video records again") for line in said), said
    first_again, second = video.close()
    assert first_again == first and decoded_frames(second) >= 40


def test_a_file_cut_off_mid_fragment_is_cut_to_its_whole_fragments_and_plays(tmp_path):
    rng = np.random.default_rng(2)
    encoder = VideoEncoder(tmp_path / "cut.mp4", 160, 120, FPS)
    for _ in range(100):
        encoder.write(noise(rng, 160, 120))
    time.sleep(1.0)
    os.kill(encoder._process.pid, signal.SIGKILL)  # as the kernel's OOM killer or a power cut would
    encoder._process.wait()
    partial = encoder.partial
    size = partial.stat().st_size
    with open(partial, "r+b") as f:
        f.truncate(size - 1000)  # the last box half written
    assert cut_to_whole_fragments(partial)
    assert not cut_to_whole_fragments(partial)  # whole now: nothing more to cut
    frames, _ = video_length(partial)
    assert 0 < frames == decoded_frames(partial) < 100
    encoder.close()


def test_prune_oldest_deletes_by_age_within_the_budget_and_keeps_what_it_is_told(tmp_path):
    now = time.time()
    for i, name in enumerate(["recording-a.mp4", "loop-b.mov", "recording-c.mp4", "notes.txt", "recording-d.mp4"]):
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, (now - 100 + i, now - 100 + i))
    (tmp_path / "recording-e.mp4.partial").write_bytes(b"x" * 1000)  # being written: never counted or deleted
    deleted = prune_oldest(tmp_path, ("recording-*", "loop-*"), 250, keep=(tmp_path / "recording-a.mp4",))
    assert [path.name for path in deleted] == ["loop-b.mov", "recording-c.mp4"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "notes.txt", "recording-a.mp4", "recording-d.mp4", "recording-e.mp4.partial"]


@pytest.mark.parametrize("text, message", [
    ("[record]\nlive_gb = 0\n", r"\[record\] live_gb must be a finite number > 0"),
    ("[record]\nlive_segment_minutes = 0.5\n", r"\[record\] live_segment_minutes must be a finite number >= 1"),
    ("[record]\nfolder_gb = -1\n", r"\[record\] folder_gb must be a finite number > 0"),
])
def test_bad_budgets_are_one_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PresetError, match=message):
        load_preset(path)

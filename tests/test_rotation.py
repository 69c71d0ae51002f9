"""A month on one disk: the headless video in files of a fixed length within a budget (each a whole file that
ffmpeg decodes), suspended while its disk is full and recording again by itself, never making a run folder that has
gone; files cut off mid-write made playable; lengths read from what was written; the recordings folder within
[record] folder_gb."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from installation.display.offscreen import Offscreen
from installation.display.presenter import Presenter
from installation.presets import PresetError, load_preset
from installation.recording import RecordConfig, VideoEncoder, cut_to_whole_fragments, prune_oldest, video_length
from installation.recording.live import HEADLESS_RETRY, HeadlessVideo

FPS = 30.0
SIZE = (64, 48)


def decoded_frames(path: Path) -> int:
    """Frames ffmpeg decodes from the file (every one decoded, not its packets counted)."""
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def noise(rng: np.random.Generator, width: int = 64, height: int = 48) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), np.uint8)


@pytest.fixture
def screen(egl_ctx):
    """A presenter on an offscreen target, as the headless installation draws (one refresh: `show(video, now)`)."""
    surface = Offscreen(*SIZE, ctx=egl_ctx)
    presenter = Presenter(egl_ctx, *SIZE, crossfade=0.0)
    rng = np.random.default_rng(0)

    def show(video: HeadlessVideo, now: float) -> None:
        """A refresh at `now` on the display clock; presented again while the encoder could not take its picture
        (a clock faster than real time outruns ffmpeg)."""
        presenter.set_frame(noise(rng), now)  # a new picture every refresh: the files have a real size
        deadline = time.monotonic() + 30
        while True:
            dropped = video.counts.dropped
            surface.use()
            capture = video.capture_for(now, SIZE)
            presenter.render(now, () if capture is None else (capture,))
            if video.counts.dropped == dropped or not video.recording or time.monotonic() > deadline:
                return
            time.sleep(0.005)

    yield show
    presenter.release()
    surface.release()


def headless(ctx, folder: Path, said: list[str], **settings) -> HeadlessVideo:
    """The headless video as the live run makes it, at 1 fps (a one-minute file is 60 frames)."""
    config = RecordConfig(**{"codec": "h264", "fps": 1.0, "max_minutes": 0.0, "folder": ".", "hud": True, **settings})
    return HeadlessVideo(config, folder, ctx, said.append)


def test_the_headless_video_rotates_into_whole_files_and_keeps_within_live_gb(screen, egl_ctx, tmp_path):
    sizing = headless(egl_ctx, tmp_path, [], live_segment_minutes=1.0)
    for second in range(120):  # refreshes on a clock of their own: one file frame each
        screen(sizing, 1000.0 + second)
    sizing.close()
    segment = max(path.stat().st_size for path in sizing.files)

    folder = tmp_path / "run"
    folder.mkdir()
    said: list[str] = []
    video = headless(egl_ctx, folder, said, live_segment_minutes=1.0, live_gb=2.5 * segment / 2**30)
    for second in range(600):  # ten files of a minute
        screen(video, 1000.0 + second)
    video.close()
    on_disk = sorted(folder.glob("live-*.mp4"), key=lambda path: path.stat().st_mtime)
    assert video.files == on_disk and 2 <= len(on_disk) < 10  # the oldest went, the newest stayed
    assert sum(path.stat().st_size for path in on_disk) <= 2.5 * segment
    assert [decoded_frames(path) for path in on_disk[:-1]] == [60] * (len(on_disk) - 1)  # whole, playable files
    assert all(video_length(path) == (60, 60.0) for path in on_disk[:-1])
    deleted = [line for line in said if line.startswith("deleted the oldest headless file")]
    assert len(deleted) == 10 - len(on_disk) and all("([record] live_gb)" in line for line in deleted)
    assert not list(folder.glob("*.partial"))


def test_a_full_disk_suspends_the_headless_video_and_it_starts_again_once_there_is_room(screen, egl_ctx, small_disk,
                                                                                       fill_disk):
    disk = small_disk("80m")  # 16 MB above the free space a recording leaves
    said: list[str] = []
    video = headless(egl_ctx, disk, said, fps=30.0)
    now = 1000.0
    while not list(disk.glob("live-*.partial")) or max(p.stat().st_size for p in disk.glob("*.partial")) < 50_000:
        screen(video, now)  # a fragment or two on disk
        now += 1 / 30
    filler = fill_disk(disk)
    deadline = time.monotonic() + 60
    while video.recording:  # ffmpeg meets the full disk, or the guard sees it first
        assert time.monotonic() < deadline, said
        screen(video, now)
        now += 1 / 30
    (first,) = video.files
    frames, seconds = video_length(first)
    assert decoded_frames(first) == frames > 0 and seconds == frames / 30  # it plays, and its length is true
    assert any(line.startswith("recording stopped (") and "free" in line for line in said), said
    for _ in range(3):  # tries every HEADLESS_RETRY seconds of the display clock, each failing quietly
        now += HEADLESS_RETRY
        screen(video, now)
    assert not video.recording and len([line for line in said if "cannot start recording" in line]) == 1
    filler.unlink()
    now += HEADLESS_RETRY
    screen(video, now)
    assert video.recording  # by itself, at the next try
    for _ in range(40):
        now += 1 / 30
        screen(video, now)
    video.close()
    assert video.files[0] == first and decoded_frames(video.files[1]) >= 30


def test_a_run_folder_that_has_gone_is_waited_for_not_made_by_the_headless_video(screen, egl_ctx, tmp_path):
    folder = tmp_path / "run"
    video = headless(egl_ctx, folder, [], fps=30.0)
    for frame in range(30):
        screen(video, 1000.0 + frame / 30)
    assert not video.recording and not folder.exists()  # the engine's RunFolder makes it, run.json first
    folder.mkdir()
    screen(video, 1000.0 + HEADLESS_RETRY + 1)
    assert video.recording
    video.close()


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

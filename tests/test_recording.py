"""The encoder: real ffmpeg encodes read back, a killed ffmpeg, a full disk, names that never overwrite."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import imageio_ffmpeg
import numpy as np
import pytest

from installation.display.offscreen import Offscreen
from installation.display.presenter import Presenter
from installation.recording import (EncoderError, RecordConfig, VideoEncoder, choose_encoder, claim_partial,
                                    claim_path, partial_path, recover_partials)
from installation.recording.encoder import nvenc_problem
from installation.recording.supervised import SupervisedVideo
from installation.validation import ConfigError


def decoded(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return meta, [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]


def probe(path):
    """codec and pixel format as the bundled ffmpeg reads them."""
    text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True).stderr
    return next(line for line in text.splitlines() if "Video:" in line)


def test_rendered_frames_become_an_h264_mp4_with_every_frame(egl_ctx, tmp_path):
    path = tmp_path / "loop.mp4"
    with Offscreen(96, 64, ctx=egl_ctx) as screen, VideoEncoder(path, 96, 64, fps=30) as video:
        presenter = Presenter(egl_ctx, 96, 64, crossfade=0)  # each video frame shows its own picture
        for i in range(30):
            presenter.set_frame(np.full((16, 16, 3), i * 8, np.uint8), i / 30)
            presenter.render(i / 30)
            assert video.write(screen.read())
        presenter.release()
        deadline = time.monotonic() + 20
        while not video.partial.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert video.partial.exists() and not path.exists()  # written under its partial name until complete
    assert video.frames == 30 and video.failed is None
    assert path.exists() and not video.partial.exists()
    assert imageio_ffmpeg.count_frames_and_secs(str(path)) == (30, 1.0)
    meta, frames = decoded(path)
    assert meta["size"] == (96, 64) and len(frames) == 30
    assert abs(int(frames[-1][32, 48].mean()) - 29 * 8) <= 4  # the picture, not just a valid container
    assert "h264" in probe(path) and "yuv420p" in probe(path)
    with pytest.raises(EncoderError):
        video.write(np.zeros((64, 96, 3), np.uint8))


def test_odd_sizes_are_cropped_and_bad_frames_refused(tmp_path):
    with VideoEncoder(tmp_path / "odd.mp4", 65, 49, fps=25) as video:
        assert (video.width, video.height) == (64, 48)  # yuv420p needs even sizes
        for i in range(10):
            video.write(np.full((49, 65, 3), 20 * i, np.uint8))
        with pytest.raises(ValueError):
            video.write(np.zeros((48, 64), np.uint8))
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "odd.mp4")) == (10, 0.4)
    with pytest.raises(EncoderError, match="unknown codec 'theora'"):
        VideoEncoder(tmp_path / "x.ogv", 64, 48, fps=25, codec="theora")


def decodable(path) -> int:
    """Frames a file being written already holds (0 while it has no complete fragment)."""
    try:
        return len(decoded(path)[1])
    except (OSError, RuntimeError, StopIteration):
        return 0


def test_a_killed_ffmpeg_never_blocks_the_caller_and_its_file_plays(tmp_path):
    rng = np.random.default_rng(0)
    video = VideoEncoder(tmp_path / "killed.mp4", 160, 120, fps=30)
    for _ in range(90):
        video.write(rng.integers(0, 255, (120, 160, 3), np.uint8))
    deadline = time.monotonic() + 60  # ffmpeg's pace on a loaded machine: wait for its first 1 s fragments
    while (on_disk := decodable(video.partial)) < 30:
        assert time.monotonic() < deadline, f"only {on_disk} frames on disk after 60 s"
        time.sleep(0.1)
    os.kill(video._process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while video.failed is None and time.monotonic() < deadline:
        video.write(rng.integers(0, 255, (120, 160, 3), np.uint8))
    assert video.failed == "ffmpeg was killed (signal 9)"
    assert not video.write(np.zeros((120, 160, 3), np.uint8))  # dropped, not blocked
    assert video.close() == tmp_path / "killed.mp4"
    _, frames = decoded(tmp_path / "killed.mp4")
    assert on_disk <= len(frames) <= 90  # what was on disk before the kill, up to about its last second


def test_a_full_disk_is_one_line_and_the_file_plays_up_to_it(small_disk):
    disk = small_disk("1m")
    rng = np.random.default_rng(0)
    video = VideoEncoder(disk / "full.mp4", 160, 120, fps=30)
    deadline = time.monotonic() + 60
    while video.failed is None and time.monotonic() < deadline:
        video.write(rng.integers(0, 255, (120, 160, 3), np.uint8))
    assert video.failed is not None and "No space left on device" in video.failed
    assert "\n" not in video.failed
    video.close()
    _, frames = decoded(disk / "full.mp4")
    assert len(frames) > 0


def test_claimed_names_never_collide_and_leftover_partials_become_playable(tmp_path):
    first, second = claim_path(tmp_path, "live", ".mp4", stamp=0), claim_path(tmp_path, "live", ".mp4", stamp=0)
    assert first != second and first.exists() and second.name.endswith("-2.mp4")
    # a video's name is held by its partial name: nothing under the real name until the file is complete
    third = claim_partial(tmp_path, "live", ".mp4", stamp=0)
    assert third.name.endswith("-3.mp4") and not third.exists() and partial_path(third).stat().st_size == 0
    assert claim_path(tmp_path, "live", ".mp4", stamp=0).name.endswith("-4.mp4")  # either form holds the name
    (tmp_path / "cut.mp4.partial").write_bytes(b"fragments")
    (tmp_path / "cut.mp4").write_bytes(b"someone's recording")  # the real name is taken: never overwritten
    (tmp_path / "empty.mp4.partial").write_bytes(b"")  # claimed, never written
    recovered = recover_partials(tmp_path)
    assert [p.name for p in recovered] == ["cut-recovered.mp4"]
    assert (tmp_path / "cut.mp4").read_bytes() == b"someone's recording"
    assert (tmp_path / "cut-recovered.mp4").read_bytes() == b"fragments"
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / "empty.mp4").exists()


def encode_ramp(path, encoder):
    with VideoEncoder(path, 64, 48, 30, "h264", encoder=encoder, options={"-crf": "20"}) as video:
        for k in range(10):
            video.write(np.full((48, 64, 3), 20 * k, np.uint8))
    meta, frames = decoded(path)
    assert len(frames) == 10 and "h264" in probe(path)
    assert abs(int(frames[5].mean()) - 100) <= 3
    return video


@pytest.mark.skipif(nvenc_problem() is None, reason="NVENC works here: the fallback is for machines without it")
def test_h264_falls_back_to_x264_where_nvenc_does_not_work_saying_why_once(tmp_path):
    why = nvenc_problem()
    assert why and "\n" not in why  # ffmpeg's own reason, e.g. "Cannot load libcuda.so.1"
    assert choose_encoder("auto") == ("x264", None)  # auto: quietly the CPU
    encoder, note = choose_encoder("nvenc")  # asked for by name: said, and recorded all the same
    assert encoder == "x264" and note == (f"[record] encoder nvenc: ffmpeg's h264_nvenc does not work here ({why}); "
                                          "H.264 is encoded with x264 on the CPU instead")
    video = encode_ramp(tmp_path / "fallback.mp4", encoder)
    assert not video.nvenc and b"x264 - core" in (tmp_path / "fallback.mp4").read_bytes()  # x264's own tag


@pytest.mark.skipif(nvenc_problem() is not None, reason=f"NVENC does not work here ({nvenc_problem()})")
def test_nvenc_encodes_h264_on_the_gpu(tmp_path):
    assert choose_encoder("auto") == ("nvenc", None) == choose_encoder("nvenc")
    video = encode_ramp(tmp_path / "gpu.mp4", "nvenc")
    assert video.nvenc and b"x264 - core" not in (tmp_path / "gpu.mp4").read_bytes()


def test_the_encoder_setting_is_checked_and_other_codecs_ignore_it(tmp_path):
    for bad in ("gpu", "", 5, None):
        with pytest.raises(ConfigError, match="encoder must be one of auto, x264, nvenc"):
            RecordConfig(encoder=bad)
        with pytest.raises(ConfigError, match="encoder must be one of auto, x264, nvenc"):
            choose_encoder(bad)
    assert choose_encoder("x264", problem=lambda: None) == ("x264", None)  # x264 asked for: NVENC is never tried
    with VideoEncoder(tmp_path / "p.mov", 64, 48, 30, "prores", encoder="nvenc") as video:
        video.write(np.zeros((48, 64, 3), np.uint8))
    assert not video.nvenc and "prores" in probe(tmp_path / "p.mov")


def test_the_export_commands_take_the_encoder_and_refuse_a_bad_one_in_one_line(tmp_path):
    from installation.cli import main

    out = tmp_path / "loop.mp4"
    result = subprocess.run([os.sys.executable, "-m", "installation", "loop", "--seconds", "0.2", "--fps", "10",
                             "--size", "64x48", "--encoder", "nvenc", "--device", "cpu", "--threads", "1",
                             "--out", str(out)], capture_output=True, text=True, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr
    assert decoded(out)[1] and ("h264_nvenc does not work here" in result.stderr) == (nvenc_problem() is not None)
    with pytest.raises(SystemExit) as exit_:
        main(["loop", "--seconds", "1", "--encoder", "gpu", "--out", str(tmp_path / "x.mp4")])
    assert exit_.value.code == 2


def test_a_video_has_no_file_under_its_real_name_until_it_is_complete(tmp_path):
    """A copier taking *.mp4 during a show must never get an empty or half-written file: while a video is written
    only its .partial exists."""
    video = SupervisedVideo(tmp_path, "live", 64, 48, 30)
    path = video.path
    assert path.name.startswith("live-") and path.suffix == ".mp4"
    for _ in range(40):
        video.write(np.zeros((48, 64, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name + ".partial"]
    assert video.close() == [path]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert len(decoded(path)[1]) == 40

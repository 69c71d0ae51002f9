"""Every codec preset encoded for real by the bundled ffmpeg and read back: frames, codec, pixel format, size,
keyframes, the index of a cleanly stopped file, and what a SIGKILL leaves."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time

import imageio_ffmpeg
import numpy as np
import pytest

from installation.recording import CODECS, EncoderError, VideoEncoder

# what `ffmpeg -i` prints for each preset: the codec (with its profile or texture format) and the pixel format
EXPECTED = {
    "h264": ("h264 (High)", "yuv420p"),
    "prores": ("prores (HQ) (apch", "yuv422p10le"),
    "hap": ("hap (Hap1", "rgb0"),  # DXT1 textures decode to RGB
    "hap_q": ("hap (HapY", "rgb0"),  # DXT5-YCoCg
}


def stream_line(path) -> str:
    text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True).stderr
    return next(line for line in text.splitlines() if "Video:" in line)


def decoded(path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]


def decodable(path) -> int:
    """Frames a file still being written already plays (0 while it has no complete fragment)."""
    try:
        return len(decoded(path)) if path.exists() else 0
    except (OSError, RuntimeError, StopIteration):
        return 0


def keyframes(path) -> list[int]:
    text = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-vf", "showinfo",
                           "-f", "null", "-"], capture_output=True, text=True).stderr
    return [int(line.split(" n:")[1].split()[0]) for line in text.splitlines() if "iskey:1" in line]


def top_boxes(path) -> list[str]:
    data, names, at = path.read_bytes(), [], 0
    while at + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        names.append(name.decode())
        at += size
    return names


def picture(i: int, width: int, height: int) -> np.ndarray:
    """A gradient whose brightness follows the frame index, so the frames can be told apart after decoding."""
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    return np.broadcast_to(np.clip(ramp + 8 * i, 0, 255), (height, width, 3)).astype(np.uint8)


def test_the_codec_table_is_keyed_by_name_and_names_its_players():
    assert tuple(CODECS) == ("h264", "prores", "hap", "hap_q")
    assert [CODECS[name].suffix for name in CODECS] == [".mp4", ".mov", ".mov", ".mov"]
    assert CODECS["hap"].multiple == CODECS["hap_q"].multiple == 4 and CODECS["prores"].multiple == 2
    assert "Resolume" in CODECS["hap"].use and "editing" in CODECS["prores"].use


@pytest.mark.parametrize("codec", list(CODECS))
def test_every_preset_encodes_every_frame_in_its_codec_and_size(tmp_path, codec):
    path = tmp_path / f"clip{CODECS[codec].suffix}"
    with VideoEncoder(path, 96, 64, fps=24, codec=codec) as video:
        for i in range(24):
            assert video.write(picture(i, 96, 64))
    assert video.failed is None and path.exists() and not video.partial.exists()
    assert imageio_ffmpeg.count_frames_and_secs(str(path)) == (24, 1.0)
    line = stream_line(path)
    name, pixels = EXPECTED[codec]
    assert name in line and pixels in line and "96x64" in line, line
    frames = decoded(path)
    assert len(frames) == 24 and frames[0].shape == (64, 96, 3)
    for i in (0, 12, 23):  # the pictures themselves, within the codec's loss
        assert abs(frames[i].astype(float).mean() - picture(i, 96, 64).astype(float).mean()) < 3
    assert "moof" not in top_boxes(path)  # a clean stop leaves an ordinary, unfragmented file


def test_h264_keyframes_follow_the_interval_asked_and_its_index_comes_first(tmp_path):
    path = tmp_path / "gop.mp4"
    with VideoEncoder(path, 64, 48, fps=24, keyframe_interval=8) as video:
        for i in range(24):
            video.write(picture(i, 64, 48))
    assert keyframes(path) == [0, 8, 16]  # no scene-cut keyframes in between
    boxes = top_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: players start without reading to the end


def test_sizes_a_codec_cannot_take_are_named_with_the_ones_it_can():
    with pytest.raises(EncoderError, match=r"size 130x66: HAP MOV .* divisible by 4; use 128x64 or 132x68"):
        CODECS["hap"].check_size(130, 66)
    with pytest.raises(EncoderError, match=r"use 128x64 or 130x66"):
        CODECS["prores"].check_size(129, 65)
    with pytest.raises(EncoderError, match=r"size 17x17: H\.264 4:2:0 MP4 needs"):  # the name whole, colon too
        CODECS["h264"].check_size(17, 17)
    CODECS["h264"].check_size(1920, 1080)
    CODECS["hap_q"].check_size(3840, 2160)


@pytest.mark.parametrize("codec", list(CODECS))
def test_a_sigkilled_encoder_leaves_a_file_that_plays_to_about_its_last_second(tmp_path, codec):
    rng = np.random.default_rng(1)
    path = tmp_path / f"cut{CODECS[codec].suffix}"
    video = VideoEncoder(path, 160, 120, fps=30, codec=codec)
    for _ in range(100):  # 3.3 s of noise, so the fragments hold real data
        video.write(rng.integers(0, 255, (120, 160, 3), np.uint8))
    # At most the open one-second fragment may be missing, plus the frames x264 holds for its lookahead (about 17):
    # wait (ffmpeg's pace on a loaded machine) until the fragments before it are on disk and play while it runs,
    # then kill it. A file that only became playable once finalised (a plain MP4) would never get there.
    expected = 100 - 30 - (20 if codec == "h264" else 0)
    deadline = time.monotonic() + 120
    while (on_disk := decodable(video.partial)) < expected:
        assert time.monotonic() < deadline, f"only {on_disk} frames play after 120 s"
        time.sleep(0.2)
    os.kill(video._process.pid, signal.SIGKILL)
    video._process.wait(10)
    frames = decoded(video.partial)
    assert on_disk <= len(frames) <= 100, len(frames)  # the kill took nothing of what was written
    video.close()

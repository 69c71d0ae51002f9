#!/usr/bin/env python3
"""What a month on one disk takes, and what the live video's encoder holds in memory as its file grows.

    python3 benchmarks/bench_disk.py                       # both parts
    python3 benchmarks/bench_disk.py --part disk --seconds 20
    python3 benchmarks/bench_disk.py --part memory --frames 216000

disk: the embedded model's walk (as the headless installation shows it by default: one face, letterboxed into
the output) rendered for `--seconds` at 30 fps, scaled to each output size and encoded as the headless video is
(recording/live.py's HeadlessVideo: H.264 at x264's live preset and [record] quality, keyframes every 5 s, 1 s
fragments); bytes per hour of video, per 30 days, and how many hours [record] live_gb keeps. Then the sizes of a
snapshot file of that model: with the optimiser's moments (a resume point) and G alone (a rewind point).

memory: frames of that walk fed as fast as ffmpeg takes them, with the live video's flags (+hybrid_fragmented) and
with a purely fragmented file; ffmpeg's resident memory sampled along, its growth given per hour of 30 fps video.
A frame's index entry stays in memory until a hybrid (or ordinary) MP4 ends, whatever the frame's size, which is
why the live video is cut into segments (recording/rotating.py). Small frames by default: at 640x360 x264's own
buffers swing by +-5 MB from sample to sample, which hides the entries' steady growth within an hour or two.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from installation.arguments import size_arg  # noqa: E402
from installation.presets import load_preset  # noqa: E402
from installation.recording import VideoEncoder  # noqa: E402
from installation.recording.encoder import CODECS, KEYFRAME_SECONDS  # noqa: E402
from installation.recording.live import LIVE_PRESET  # noqa: E402

FPS = 30.0
SIZES = ((640, 360), (1280, 720), (1920, 1080))
HOUR, MONTH = 3600.0, 30 * 24 * 3600.0


def walk_frames(seconds: float) -> np.ndarray:
    """The default preset's walk on the embedded model, 30 frames a second: (N, R, R, 3) uint8."""
    from installation.models import default_checkpoint, load_gan
    from installation.walks import make_walks, render_walk_frames

    preset = load_preset("default")
    gan = load_gan(default_checkpoint())
    walk = make_walks(1, gan.latent_dim, preset.walk.keyframes, preset.walk.period, preset.walk.seed)
    times = np.arange(round(seconds * FPS)) / FPS
    return np.concatenate([render_walk_frames(gan, walk, t, preset.walk.truncation) for t in times])


def letterboxed(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """The square picture fitted into width x height (the display's "fit" mode), bilinear, black bars."""
    side = min(width, height)
    picture = np.asarray(Image.fromarray(frame).resize((side, side), Image.BILINEAR))
    out = np.zeros((height, width, 3), np.uint8)
    x, y = (width - side) // 2, (height - side) // 2
    out[y:y + side, x:x + side] = picture
    return out


def live_options() -> dict[str, str]:
    """The headless video's encoder options (HeadlessVideo, as LiveRecorder.start gives them)."""
    return {"-crf": str(load_preset("default").record.quality), "-preset": LIVE_PRESET}


def disk(seconds: float, live_gb: float) -> None:
    frames = walk_frames(seconds)
    print(f"the headless video, {CODECS['h264'].label}, x264 {LIVE_PRESET} crf {live_options()['-crf']}, keyframes "
          f"every {KEYFRAME_SECONDS:g} s, {len(frames)} frames of the embedded model's walk at {FPS:g} fps:")
    print(f"{'size':>10} {'MB/hour':>8} {'GB/30 days':>10} {f'hours in live_gb = {live_gb:g}':>24}")
    with tempfile.TemporaryDirectory(prefix="uncanny-disk-") as tmp:
        for width, height in SIZES:
            path = Path(tmp) / f"live-{width}x{height}.mp4"
            with VideoEncoder(path, width, height, FPS, options=live_options()) as video:
                for frame in frames:
                    video.write(letterboxed(frame, width, height))
            per_hour = path.stat().st_size / (len(frames) / FPS) * HOUR
            print(f"{width:>5}x{height:<4} {per_hour / 2**20:8.0f} {per_hour * MONTH / HOUR / 2**30:10.1f} "
                  f"{live_gb * 2**30 / per_hour:24.1f}")
    snapshot_sizes()


def snapshot_sizes() -> None:
    """A snapshot file of the embedded model: G and Adam's moments (what a resume needs), and G alone."""
    from installation.engine import EngineConfig
    from installation.engine.engine import BETAS
    from installation.models import default_checkpoint, load_gan

    gan = load_gan(default_checkpoint(), require_discriminator=True)
    optimizer = torch.optim.Adam(gan.generator.parameters(), betas=BETAS)
    loss = gan.discriminate(gan.generate(torch.randn(1, gan.latent_dim), gan.make_noise(1))).mean()
    loss.backward()
    optimizer.step()  # the moments exist once a step was taken
    sizes = {}
    for name, payload in (("with the optimiser", {"g": gan.generator.state_dict(), "o": optimizer.state_dict()}),
                          ("G alone", {"g": gan.generator.state_dict()})):
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        sizes[name] = buffer.tell()
    every = EngineConfig().snapshot_every
    print(f"a snapshot of the {gan.resolution} px embedded model: " + ", ".join(
        f"{size / 2**20:.1f} MB {name}" for name, size in sizes.items()) + f" (one every {every} iterations)")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(count: int, width: int, height: int) -> None:
    import imageio_ffmpeg

    frames = [letterboxed(frame, width, height).tobytes() for frame in walk_frames(20.0)]
    flags = {"+hybrid_fragmented (the live video's)": ("-movflags", "+hybrid_fragmented"),
             "purely fragmented": ("-movflags", "+frag_keyframe+empty_moov+default_base_moof")}
    codec = [arg.format(gop=round(KEYFRAME_SECONDS * FPS)) for arg in CODECS["h264"].output]
    codec = codec[:codec.index("-movflags")]  # the codec's own options; the muxer's flags per variant
    for option, value in live_options().items():
        codec[codec.index(option) + 1] = value
    print(f"ffmpeg's resident memory as a {width}x{height} live video grows ({count} frames, as fast as it takes "
          "them):")
    with tempfile.TemporaryDirectory(prefix="uncanny-rss-") as tmp:
        for name, movflags in flags.items():
            command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                       "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{FPS:g}", "-i", "-", "-an", *codec,
                       *movflags, "-frag_duration", "1000000", "-flush_packets", "1", "-f", "mp4",
                       str(Path(tmp) / "live.mp4")]
            process = subprocess.Popen(command, stdin=subprocess.PIPE)
            points = []
            for i in range(count):
                process.stdin.write(frames[i % len(frames)])
                if i % (count // 10) == count // 10 - 1:
                    process.stdin.flush()
                    time.sleep(0.5)  # let it catch up before the sample
                    points.append((i + 1, rss_mb(process.pid)))
            process.stdin.close()
            process.wait()
            settled = points[2:]  # after its buffers filled
            hours = np.array([frames_ for frames_, _ in settled]) / FPS / HOUR
            slope = np.polyfit(hours, [mb for _, mb in settled], 1)[0]
            print(f"  {name}: {slope:+.1f} MB per hour of video (MB after frames: "
                  + ", ".join(f"{mb:.1f} @ {frames_}" for frames_, mb in points) + ")")


def main() -> None:
    from bench_engine import cpu_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("disk", "memory", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of video measured per size")
    parser.add_argument("--frames", type=int, default=216000, help="frames fed for the memory part (2 hours)")
    parser.add_argument("--memory-size", type=size_arg, default=(160, 90), help="frame size for the memory part")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"bench_disk on {cpu_name()} ({os.cpu_count()} cores, {platform.system()}), load "
          f"{os.getloadavg()[0]:.1f}")
    if args.part in ("disk", "both"):
        disk(args.seconds, load_preset("default").record.live_gb)
    if args.part in ("memory", "both"):
        memory(args.frames, *args.memory_size)


if __name__ == "__main__":
    main()

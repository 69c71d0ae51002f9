"""What a live recording costs the display: presented fps with and without a recording, interleaved in one run.

The display loop draws a moving picture (the embedded model's 3 x 3 walk, a new generator frame every 1/30 s,
crossfading) into an offscreen
EGL framebuffer at the output size, as fast as it can (no vsync) or held to `--refresh` Hz, and waits for the GL
each refresh as a window's swap does. Blocks with and without a recording alternate, so background load hits
both alike. With a recording, LiveRecorder reads the picture back (glReadPixels: RGBA, or with `--convert gl`
the yuv420p planes of the GL pass) and feeds the encoder (ffmpeg, its own process) at the file's rate; the
figures are presented fps, the display's CPU per refresh (this process: the GL, the readback, the writer thread)
and the frames the file got: repeated and dropped. The engine does not run here (bench_record_show.py runs it):
on the show machine it shares the same cores.

    python benchmarks/bench_record.py [--width 1920 --height 1080 --fps 30 --seconds 3 --rounds 3 --refresh 0]
                                      [--codec hap] [--record-size 1280x720] [--convert gl] [--nice 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from installation.display.offscreen import Offscreen  # noqa: E402
from installation.display.presenter import Presenter  # noqa: E402
from installation.recording.config import RecordConfig  # noqa: E402
from installation.recording import live  # noqa: E402
from installation.recording.live import LiveRecorder  # noqa: E402
from installation.recording.yuv import converts_in_gl  # noqa: E402

GENERATOR_FPS = 30.0  # new generator frames per second (the renderer's max_fps)
GRID = 3  # the embedded model's 64 px faces in the default 3 x 3 grid: what the encoder sees matters to its speed


def walk_frames(count: int) -> list[np.ndarray]:
    """`count` consecutive moments of the embedded model's walk (1/30 s apart), each a (9, 64, 64, 3) grid."""
    import torch

    from installation.models import load_gan
    from installation.models.loader import DEFAULT_CHECKPOINT
    from installation.walks import make_walks, render_walk_frames

    gan = load_gan(DEFAULT_CHECKPOINT)
    walks = make_walks(GRID**2, gan.latent_dim, 6, 30.0, 0)
    with torch.no_grad():
        return [render_walk_frames(gan, walks, k / GENERATOR_FPS, 0.7) for k in range(count)]


def block(screen: Offscreen, presenter: Presenter, frames: list[np.ndarray], recorder: LiveRecorder | None,
          seconds: float, refresh: float) -> dict[str, float]:
    """One block of refreshes; presented fps, CPU ms per refresh and (recording) the file's counts."""
    size = (screen.width, screen.height)
    encoder_cpu = _children_cpu()
    start = time.monotonic()
    if recorder is not None:
        recorder.start(None, 0, size, now=start)
    count, cpu, arrived = 0, time.process_time(), -1
    captures, capture_seconds = 0, 0.0

    def timed(capture):  # the readback's own time on the render thread, the picture's rasterising excluded
        def run() -> None:
            nonlocal captures, capture_seconds
            screen.ctx.finish()
            began = time.perf_counter()
            capture()
            captures, capture_seconds = captures + 1, capture_seconds + time.perf_counter() - began
        return run

    while (now := time.monotonic()) - start < seconds:
        index = int((now - start) * GENERATOR_FPS)
        if index != arrived:  # the next generator frame
            presenter.set_grid(frames[index % len(frames)], now)
            arrived = index
        screen.use()
        capture = recorder.capture_for(now, size) if recorder else None
        presenter.render(now, [timed(capture)] if capture else [])
        screen.ctx.finish()
        count += 1
        if refresh:
            time.sleep(max(0.0, start + count / refresh - time.monotonic()))
    elapsed = time.monotonic() - start
    figures = {"fps": count / elapsed, "cpu_ms": (time.process_time() - cpu) / count * 1000}
    if recorder is not None:
        recorder.stop()  # waits for ffmpeg, so its CPU time is counted below
        counts = recorder.counts
        figures.update(frames=counts.frames, expected=elapsed * recorder.config.fps, repeated=counts.repeated,
                       dropped=counts.dropped, capture_ms=capture_seconds / max(captures, 1) * 1000,
                       encoder_ms=(_children_cpu() - encoder_cpu) / max(counts.frames, 1) * 1000)
    return figures


def recorder_converts(ctx, convert: str) -> bool:
    """Whether the recording's frames come from the GL pass (for a yuv420p codec)."""
    return convert == "gl" or (convert == "auto" and converts_in_gl(ctx))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=float, default=30.0, help="the recording's frame rate")
    parser.add_argument("--seconds", type=float, default=3.0, help="per block")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of blocks (without, with a recording)")
    parser.add_argument("--codec", default="h264", help="[record] codec (installation/recording/encoder.py CODECS)")
    parser.add_argument("--record-size", default="", help='[record] size of the file, e.g. "1280x720" ("" = output)')
    parser.add_argument("--refresh", type=float, default=0.0, help="hold the display to this many Hz (0 = free)")
    parser.add_argument("--convert", choices=("auto", "gl", "ffmpeg"), default="auto",
                        help="where yuv420p frames are made: the GL pass, ffmpeg, or auto (the GL pass on a GPU's GL)")
    parser.add_argument("--nice", type=int, default=live.LIVE_NICE, help="ffmpeg's CPU priority relative to this")
    args = parser.parse_args()
    live.LIVE_NICE = args.nice
    frames = walk_frames(30)
    with Offscreen(args.width, args.height) as screen, tempfile.TemporaryDirectory() as folder:
        info = screen.ctx.info
        print(f"device: {info['GL_RENDERER']} | {info['GL_VERSION']} | {os.cpu_count()} CPU cores | "
              f"load {os.getloadavg()[0]:.2f}")
        print(f"output {args.width}x{args.height}, recording {args.codec} "
              f"{args.record_size or 'at the output size'} at "
              f"{args.fps:g} fps ({'GL pass' if recorder_converts(screen.ctx, args.convert) else 'RGBA'} to "
              f"ffmpeg, nice {args.nice}), display "
              f"{'free' if not args.refresh else f'held to {args.refresh:g} Hz'}, {args.rounds} x 2 blocks of "
              f"{args.seconds:g} s interleaved")
        presenter = Presenter(screen.ctx, args.width, args.height, crossfade=1.0 / GENERATOR_FPS)
        recorder = LiveRecorder(RecordConfig(codec=args.codec, fps=args.fps, size=args.record_size), Path(folder),
                                screen.ctx, say=lambda text: None,
                                convert_in_gl={"auto": None, "gl": True, "ffmpeg": False}[args.convert])
        block(screen, presenter, frames, None, 0.5, args.refresh)  # warm up: shaders, textures
        results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for recording in (False, True):
                figures = block(screen, presenter, frames, recorder if recording else None, args.seconds,
                                args.refresh)
                results[recording].append(figures)
                extra = (f", file {figures['frames']} frames of {figures['expected']:.0f} due, "
                         f"{figures['repeated']} repeated, {figures['dropped']} dropped; readback "
                         f"{figures['capture_ms']:.1f} ms, ffmpeg {figures['encoder_ms']:.1f} ms CPU a frame"
                         if recording else "")
                print(f"  {'recording' if recording else 'plain    '}: {figures['fps']:6.1f} fps, "
                      f"{figures['cpu_ms']:5.1f} ms CPU per refresh{extra}")
        recorder.close()
        presenter.release()
    plain = statistics.median(r["fps"] for r in results[False])
    taped = statistics.median(r["fps"] for r in results[True])
    dropped = sum(r["dropped"] for r in results[True])
    repeated = sum(r["repeated"] for r in results[True])
    readback = statistics.median(r["capture_ms"] for r in results[True])
    encoder = statistics.median(r["encoder_ms"] for r in results[True])
    print(f"per recorded frame: readback {readback:.1f} ms on the render thread, ffmpeg {encoder:.1f} ms CPU; "
          f"at {args.fps:g} fps that is {args.fps * (readback + encoder) / 1000:.2f} of a core")
    print(f"median presented fps: {plain:.1f} without, {taped:.1f} with a recording "
          f"(ratio {taped / plain:.2f}, display cost {100 * (1 - taped / plain):.0f} %); "
          f"{dropped} dropped, {repeated} repeated in {sum(r['frames'] for r in results[True])} recorded frames")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Our GPU benchmark: the paper's StyleGAN1 (random weights, the project's own classes) drawing, fine-tuning and
live, with the device named. Random weights: speed does not depend on what the weights are.

    python3 benchmarks/bench_gpu.py                   # on CUDA: 256/512/1024 px at full width (code 512, 8 MLP layers)
    python3 benchmarks/bench_gpu.py --smoke           # tiny widths at 32 px, seconds live: checks it runs anywhere
    python3 benchmarks/bench_gpu.py --parts gen,step --out figures.json

Parts (`--parts`, default all):
- gen: `GAN.generate` per call, 256/512/1024 px x batch 1/4/8 x fp32/bf16: device time per call (CUDA events on a
  GPU, the wall clock on a CPU), images/s, the first call (cuDNN tunes each new shape), peak memory; the first
  frame after a weight update (the StyleGAN1 inference plan and the equal-lr weights rebuilt), and to_uint8 per
  frame (the frames leaving the device: contiguous uint8 through pinned memory).
- step: `Engine.step`, the inverted step, at batch 2 and 4; a snapshot's capture (what the training loop waits
  for), its write (the writer thread's), and the sizes of a rewind point (G only) and of optimizer.pt (Adam).
- live: the installation (engine process, frame ring, presenter into an EGL framebuffer, each refresh finished)
  at 1920x1080 and 3840x2160, one walk, with training running and paused: presented fps, generator frames/s,
  steps/s, device memory in use (all processes on the GPU; the engine's RSS on a CPU).

The JSON (`--out`) is rewritten after every measurement, so a run cut short keeps what it measured. On CUDA each
figure is printed beside the range a review of the design predicted for an H100 (README, "GPU").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import installation  # noqa: E402,F401  # first: its thread policy and triton go before torch and GL
import torch  # noqa: E402

from bench_engine import cpu_name  # noqa: E402
from installation.engine import Engine, EngineConfig  # noqa: E402
from installation.engine.config import describe_device, resolve_device  # noqa: E402
from installation.images import to_uint8  # noqa: E402
from installation.models import create_stylegan1, save_gan  # noqa: E402
from installation.models.stylegan1 import FFHQ_CHANNELS  # noqa: E402

TRUNCATION = 0.7
SMOKE_CHANNELS = (32, 32, 16, 16)  # 4 to 32 px
# milliseconds a call is expected to take on one H100 (fp32, GPU time), from the review's arithmetic
EXPECT_GEN = {(256, 1): (1, 4), (256, 4): (2, 8), (256, 8): (3, 14), (512, 1): (1.5, 5), (512, 4): (4, 12),
              (512, 8): (7, 22), (1024, 1): (2, 7), (1024, 4): (7, 18), (1024, 8): (12, 32)}
EXPECT_STEP = {(256, 2): (8, 30), (256, 4): (10, 40), (512, 2): (10, 35), (512, 4): (15, 55), (1024, 2): (15, 45),
               (1024, 4): (25, 70)}


class Bench:
    def __init__(self, device: torch.device, smoke: bool, out: Path | None, reps: int, warm: int) -> None:
        self.device, self.smoke, self.out, self.reps, self.warm = device, smoke, out, reps, warm
        self.cuda = device.type == "cuda"
        self.results: dict[str, Any] = {"meta": self.meta(), "gen": [], "rebuild": [], "frames": [], "step": [],
                                        "live": [], "errors": []}
        self.save()

    def meta(self) -> dict[str, Any]:
        meta = {"device": describe_device(self.device), "cpu": cpu_name(), "cores": os.cpu_count(),
                "torch": torch.__version__, "cuda": torch.version.cuda, "smoke": self.smoke,
                "torch_threads": torch.get_num_threads(), "time": time.strftime("%Y-%m-%d %H:%M")}
        if self.cuda:
            free, total = torch.cuda.mem_get_info(self.device)
            meta.update(total_mib=round(total / 2**20), cudnn=torch.backends.cudnn.version(),
                        bf16=torch.cuda.is_bf16_supported())
        return meta

    def save(self) -> None:
        if self.out is not None:
            self.out.write_text(json.dumps(self.results, indent=1, default=str))

    def error(self, where: str, error: BaseException) -> None:
        self.results["errors"].append(f"{where}: {type(error).__name__}: {str(error)[:300]}")
        print(self.results["errors"][-1], file=sys.stderr)
        traceback.print_exc()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this process's peak, as the CPU has it

    def timed(self, fn: Callable[[], Any]) -> dict[str, float]:
        """Median milliseconds per call after `warm` calls (the first timed on its own): device time from CUDA events
        on a GPU (`ms`), the wall clock after a sync (`wall_ms`)."""
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        first = (time.perf_counter() - start) * 1e3
        for _ in range(self.warm - 1):
            fn()
        device, wall = [], []
        for _ in range(self.reps):
            self.sync()
            start = time.perf_counter()
            if self.cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                fn()
                end.record()
                end.synchronize()
                device.append(begin.elapsed_time(end))
            else:
                fn()
            wall.append((time.perf_counter() - start) * 1e3)
        ms = statistics.median(device or wall)
        return {"ms": round(ms, 3), "wall_ms": round(statistics.median(wall), 3), "first_ms": round(first, 1)}

    def model(self, resolution: int):
        """A random-init StyleGAN1 G and D of the paper's architecture (FFHQ widths, code 512, 8 MLP layers)."""
        levels = resolution.bit_length() - 2
        channels, code, n_mlp = (SMOKE_CHANNELS[:levels], 32, 2) if self.smoke else (FFHQ_CHANNELS[:levels], 512, 8)
        gan = create_stylegan1(channels, code_dim=code, n_mlp=n_mlp, resolution=resolution, seed=0)
        rng = torch.Generator().manual_seed(1)
        with torch.no_grad():  # nonzero noise strengths and biases, as trained weights have
            for p in gan.generator.parameters():
                p.add_(torch.randn(p.shape, generator=rng) * 0.1)
        gan.journey_lr = 1e-5  # low: random weights and the unbounded loss must not reach the NaN rollback
        return gan.to(self.device)

    def inputs(self, gan, batch: int, seed: int):
        rng = torch.Generator().manual_seed(seed)
        return torch.randn(batch, gan.latent_dim, generator=rng).to(self.device), gan.make_noise(batch, rng)

    # ------------------------------------------------------------------------------------------------- gen
    def gen(self, gan, resolution: int, batches: list[int], precisions: list[str]) -> None:
        for precision in precisions:
            for batch in batches:
                z, noise = self.inputs(gan, batch, resolution + batch)

                def call(z=z, noise=noise, precision=precision):
                    with torch.no_grad():
                        return gan.generate(z, noise, TRUNCATION, precision)
                try:
                    self.reset_peak()
                    row = {"res": resolution, "batch": batch, "precision": precision, **self.timed(call)}
                    row.update(peak_mib=round(self.peak_mib()), images_per_s=round(1000 * batch / row["ms"], 1),
                               nonfinite=int((~torch.isfinite(call())).sum()))
                    self.results["gen"].append(row)
                    print(f"gen {resolution} px b{batch} {precision}: {row['ms']:.2f} ms ({row['images_per_s']:.0f} "
                          f"img/s), first {row['first_ms']:.0f} ms", file=sys.stderr)
                except Exception as error:  # one failing precision must not hide the others
                    self.error(f"gen {resolution} b{batch} {precision}", error)
                self.save()
        params = list(gan.generator.parameters())

        def bump() -> None:  # an in-place update as Adam's: every derived weight and the plan are rebuilt after it
            with torch.no_grad():
                for p in params:
                    p.add_(0.0)
        z, noise = self.inputs(gan, 1, 5)

        def one() -> Any:
            with torch.no_grad():
                return gan.generate(z, noise, TRUNCATION)
        try:
            plain, bumped, bump_only = self.timed(one), self.timed(lambda: (bump(), one())), self.timed(bump)
            rebuild = bumped["wall_ms"] - plain["wall_ms"] - bump_only["wall_ms"]
            self.results["rebuild"].append({"res": resolution, "gen_ms": plain["wall_ms"],
                                            "rebuild_ms": round(rebuild, 3)})
        except Exception as error:
            self.error(f"rebuild {resolution}", error)
        for batch in sorted({1, max(batches)}):
            try:
                with torch.no_grad():
                    images = gan.generate(*self.inputs(gan, batch, 9), TRUNCATION)
                row = {"res": resolution, "batch": batch, **self.timed(lambda images=images: to_uint8(images))}
                row["ms_per_frame"] = round(row["wall_ms"] / batch, 3)
                self.results["frames"].append(row)
            except Exception as error:
                self.error(f"frames {resolution} b{batch}", error)
        self.save()

    # ------------------------------------------------------------------------------------------------ step
    def step(self, gan, resolution: int, batches: list[int]) -> None:
        for batch in batches:
            with tempfile.TemporaryDirectory() as run_dir:
                config = EngineConfig(batch=batch, device=str(self.device), snapshot_every=10**9,
                                      probe_every=10**9)
                engine = None
                try:
                    engine = Engine(gan, config, run_dir)  # its start: a probe and the iteration-0 snapshot
                    self.reset_peak()
                    row = {"res": resolution, "batch": batch, **self.timed(engine.step)}
                    row.update(peak_mib=round(self.peak_mib()), steps_per_s=round(1000 / row["ms"], 2),
                               rollbacks=engine.rollbacks)
                    engine.store.flush()
                    start = time.perf_counter()
                    engine.snapshot()  # what the training loop waits for
                    row["snapshot_capture_ms"] = round((time.perf_counter() - start) * 1e3, 2)
                    start = time.perf_counter()
                    engine.store.flush()  # the writer thread's share
                    row["snapshot_write_s"] = round(time.perf_counter() - start, 3)
                    folder = Path(run_dir) / "snapshots"
                    row["rewind_point_mib"] = round(engine.store.path(engine.iteration).stat().st_size / 2**20, 1)
                    row["optimizer_mib"] = round((folder / "optimizer.pt").stat().st_size / 2**20, 1)
                    self.results["step"].append(row)
                    print(f"step {resolution} px b{batch}: {row['ms']:.1f} ms, snapshot {row['snapshot_capture_ms']} "
                          f"ms + {row['snapshot_write_s']} s written", file=sys.stderr)
                except Exception as error:
                    self.error(f"step {resolution} b{batch}", error)
                finally:
                    if engine is not None:
                        engine.close(snapshot=False)
                self.save()

    # ------------------------------------------------------------------------------------------------ live
    def live(self, checkpoint: Path, resolution: int, sizes: list[tuple[int, int]], seconds: float,
             warmup: float, paused: float) -> None:
        from installation.control.config import OscConfig
        from installation.control.service import ControlService
        from installation.display.config import DisplayConfig
        from installation.display.offscreen import Offscreen
        from installation.engine.config import RenderConfig, WalkConfig
        from installation.live.run import live_show
        from installation.presets import Preset

        for width, height in sizes:
            preset = Preset(engine=EngineConfig(device=str(self.device)), walk=WalkConfig(grid=1),
                            display=DisplayConfig(width=width, height=height),
                            render=RenderConfig(max_fps=60.0, precision="auto"), osc=OscConfig(enabled=False))
            try:
                with tempfile.TemporaryDirectory() as tmp, Offscreen(width, height) as surface, \
                        live_show(preset, checkpoint, resolution, Path(tmp) / "run", surface,
                                  ControlService(preset.osc)) as live:
                    row: dict[str, Any] = {"size": f"{width}x{height}", "res": resolution,
                                           "gl": surface.ctx.info["GL_RENDERER"]}
                    engine = live.supervisor

                    def block(span: float) -> dict[str, float]:
                        refreshes, frames, steps = 0, live.picture.last_sequence, engine.state.iteration
                        end = time.monotonic() + span
                        while time.monotonic() < end:
                            surface.begin()
                            live.tick()
                            surface.ctx.finish()  # a refresh counts once the GL has drawn it
                            refreshes += 1
                        return {"presented_fps": round(refreshes / span, 1),
                                "generator_fps": round((live.picture.last_sequence - frames) / span, 1),
                                "steps_per_s": round((engine.state.iteration - steps) / span, 2),
                                "memory_mib": self.live_memory(engine.engine.pid)}
                    deadline = time.monotonic() + 300
                    while engine.state.status != "running" and time.monotonic() < deadline:
                        block(0.2)
                    row["engine_device"] = engine.state.device
                    block(warmup)
                    row["training"] = block(seconds)
                    live.stage.send("pause")
                    while not engine.state.paused and time.monotonic() < deadline:
                        block(0.1)
                    row["paused"] = block(paused)
                    row["errors"] = list(engine.state.errors)[-3:]
                self.results["live"].append(row)
                print(f"live {width}x{height}: {row}", file=sys.stderr)
            except Exception as error:
                self.error(f"live {width}x{height}", error)
            self.save()

    def live_memory(self, engine_pid: int | None) -> float | None:
        """MiB in use on the whole GPU (every process on it); on a CPU the engine process's resident memory."""
        if self.cuda:
            free, total = torch.cuda.mem_get_info(self.device)
            return round((total - free) / 2**20)
        try:
            status = Path(f"/proc/{engine_pid}/status").read_text()
            return round(int(status.split("VmRSS:")[1].split()[0]) / 1024)
        except (OSError, IndexError, ValueError):
            return None

    # ----------------------------------------------------------------------------------------------- table
    def table(self) -> str:
        r, meta = self.results, self.results["meta"]
        lines = [f"uncanny GPU benchmark on {meta['device']} (torch {meta['torch']}, CUDA {meta['cuda']}; CPU "
                 f"{meta['cpu']}, {meta['cores']} cores){' [smoke: tiny widths]' if self.smoke else ''}"]
        if r["gen"]:
            lines += ["generation (GAN.generate, ms per call; GPU time on CUDA, wall on a CPU):",
                      f"  {'res':>5} {'batch':>5} {'prec':>5} {'ms':>8} {'img/s':>8} {'first ms':>9} {'peak MiB':>9}"
                      f"  expected (H100, fp32)"]
        for g in r["gen"]:
            expected = EXPECT_GEN.get((g["res"], g["batch"])) if self.cuda and g["precision"] == "fp32" else None
            lines.append(f"  {g['res']:>5} {g['batch']:>5} {g['precision']:>5} {g['ms']:>8.2f} "
                         f"{g['images_per_s']:>8.1f} {g['first_ms']:>9.0f} {g['peak_mib']:>9}  "
                         f"{verdict(g['ms'], expected)}")
        for b in r["rebuild"]:
            lines.append(f"  {b['res']} px: the first frame after a training step costs +{b['rebuild_ms']:.2f} ms "
                         f"(weights derived anew) over {b['gen_ms']:.2f} ms")
        for f in r["frames"]:
            lines.append(f"  {f['res']} px b{f['batch']}: to_uint8 (off the device) {f['ms_per_frame']:.2f} ms a frame")
        if r["step"]:
            lines += ["inverted step (Engine.step: G fwd+bwd through the frozen D, Adam):",
                      f"  {'res':>5} {'batch':>5} {'ms':>8} {'steps/s':>8} {'peak MiB':>9} {'capture ms':>10} "
                      f"{'write s':>8} {'point MiB':>9} {'adam MiB':>8}  expected (H100)"]
        for s in r["step"]:
            expected = EXPECT_STEP.get((s["res"], s["batch"])) if self.cuda else None
            lines.append(f"  {s['res']:>5} {s['batch']:>5} {s['ms']:>8.1f} {s['steps_per_s']:>8.2f} {s['peak_mib']:>9} "
                         f"{s['snapshot_capture_ms']:>10.2f} {s['snapshot_write_s']:>8.3f} {s['rewind_point_mib']:>9} "
                         f"{s['optimizer_mib']:>8}  {verdict(s['ms'], expected)}")
        if r["live"]:
            lines += ["live installation (one walk, max_fps 60, precision auto; memory: the GPU's in use, or the "
                      "engine's RSS):",
                      f"  {'screen':>9} {'state':>8} {'fps':>6} {'gen fps':>8} {'steps/s':>8} {'MiB':>7}  GL"]
            for live in r["live"]:
                for state in ("training", "paused"):
                    if state in live:
                        b = live[state]
                        lines.append(f"  {live['size']:>9} {state:>8} {b['presented_fps']:>6.1f} "
                                     f"{b['generator_fps']:>8.1f} {b['steps_per_s']:>8.2f} "
                                     f"{b['memory_mib'] or '?':>7}  {live['gl']}")
        if r["errors"]:
            lines.append("errors: " + " | ".join(r["errors"][:6]))
        return "\n".join(lines)


def verdict(value: float, expected: tuple[float, float] | None) -> str:
    if expected is None:
        return ""
    low, high = expected
    return f"{low}-{high} " + ("ok" if low <= value <= high else "FASTER" if value < low else "SLOW: look into it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny widths at 32 px and short live blocks")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--parts", default="gen,step,live", help="comma-separated: gen, step, live")
    parser.add_argument("--resolutions", default=None, help="default 256,512,1024 (smoke: 32)")
    parser.add_argument("--live-resolution", type=int, default=None, help="default the largest of --resolutions")
    parser.add_argument("--seconds", type=float, default=None, help="each live block (default 15; smoke 3)")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every figure, rewritten as they come")
    parser.add_argument("--checkpoint-out", type=Path, default=None,
                        help="keep the live part's random-init checkpoint here (for a run of the entry point)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    resolutions = [int(r) for r in (args.resolutions or ("32" if args.smoke else "256,512,1024")).split(",")]
    parts = set(args.parts.split(","))
    if device.type == "cpu" and not args.smoke and max(resolutions) > 256:
        print("bench_gpu: full-width models on a CPU take hours; use --smoke, or --resolutions 256", file=sys.stderr)
    bench = Bench(device, args.smoke, args.out, reps=3 if args.smoke else 10, warm=1 if args.smoke else 3)
    for resolution in resolutions:
        try:
            gan = bench.model(resolution)
        except Exception as error:
            bench.error(f"model {resolution}", error)
            continue
        if "gen" in parts:
            bench.gen(gan, resolution, [1, 4, 8], ["fp32", "bf16"])
        if "step" in parts:
            bench.step(gan, resolution, [2, 4])
        del gan
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "live" in parts:
        resolution = args.live_resolution or max(resolutions)
        seconds = args.seconds or (3.0 if args.smoke else 15.0)
        sizes = [(320, 180), (640, 360)] if args.smoke else [(1920, 1080), (3840, 2160)]
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = args.checkpoint_out or Path(tmp) / f"stylegan1-{resolution}.pt"
            gan = bench.model(resolution).to("cpu")
            save_gan(gan, checkpoint)
            del gan
            bench.live(checkpoint, resolution, sizes, seconds, warmup=2.0 if args.smoke else 5.0,
                       paused=2.0 if args.smoke else 6.0)
    print(bench.table())
    return 1 if bench.results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Our generators and fine-tuning step against upstream-structured reference code on the same weights.

    python3 benchmarks/bench_models.py                 # CPU: SG1 64/128/256, SG2 256, batch 1/4, 1/2 threads, step
    python3 benchmarks/bench_models.py --quick         # a few repetitions of two cases (smoke test)
    python3 benchmarks/bench_models.py --device cuda   # adds 512 and 1024 px and full widths on a GPU

The references are functions over the state_dict written from rosinality's documented behaviour: StyleGAN1 rescales
every equal-lr weight in a forward pre-hook on every call, upsamples by nearest copies before its 3x3 convs, runs
InstanceNorm2d then gamma * x + beta; StyleGAN2 modulates one weight per sample (grouped conv, upstream's default
`fused=True`) and filters with `upfirdn2d_native` (each channel a separate single-channel conv). The equivalence
tests' references (tests/test_stylegan*.py) are not reused: they are deliberately built another way (float64, tap
loops, shifted sums) to check correctness and would be a meaningless speed yardstick.

Ours and the reference alternate per repetition, so load from other processes on a shared machine hits both
alike; medians are printed. Reduced precision (bf16, and fp16 on CUDA; batch-1 cases) is timed against our
fp32 and its image difference reported as PSNR over the fp32 image's own range (the random weights used here
do not keep images in [-1, 1]). On a CPU without AMX / AVX-512-BF16, bf16 is emulated: one repetition only.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Spinning OpenMP workers make 2 threads many times slower while other processes use the cores (a shared
# machine); this must be set before torch starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from bench_engine import device_name, sync  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from installation.engine import Engine, EngineConfig  # noqa: E402
from installation.engine.config import resolve_device  # noqa: E402
from installation.models import gan as gan_module  # noqa: E402
from installation.models.gan import GAN, cpu_has_fast_bf16, estimate_mean_latent  # noqa: E402
from installation.models.stylegan1 import FFHQ_CHANNELS  # noqa: E402
from installation.models.stylegan2 import Generator as SG2Generator  # noqa: E402

SQRT2 = math.sqrt(2.0)
# CPU widths: the embedded model's (128,128,128,64,32 up to 64 px) continued to 256 px.
SG1_CPU = (128, 128, 128, 64, 32, 32, 16)
SG1_CODE, SG1_MLP = 256, 4
SG2_CPU = {4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64, 256: 32}
SG2_STYLE, SG2_MLP = 256, 4

# --------------------------------------------------------------------------------- StyleGAN1 reference


def he(w: Tensor) -> Tensor:
    """EqualLR's hook: weight_orig * sqrt(2 / fan_in), fan_in = size(1) * weight[0][0].numel()."""
    return w * math.sqrt(2 / (w.size(1) * w[0][0].numel()))


def sg1_conv(s: dict[str, Tensor], prefix: str, x: Tensor, padding: int = 0) -> Tensor:
    return F.conv2d(x, he(s[prefix + ".weight_orig"]), s[prefix + ".bias"], padding=padding)


def sg1_blur(s: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    return F.conv2d(x, s[prefix + ".weight"], padding=1, groups=x.shape[1])


def sg1_box(weight: Tensor, multiplier: float) -> Tensor:
    w = F.pad(weight * multiplier, [1, 1, 1, 1])
    return (w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]) / 4


def sg1_linear(s: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    return F.linear(x, he(s[prefix + ".weight_orig"]), s[prefix + ".bias"])


def sg1_mapping(s: dict[str, Tensor], z: Tensor, n_mlp: int) -> Tensor:
    x = z / torch.sqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    for i in range(n_mlp):
        x = F.leaky_relu(sg1_linear(s, f"style.{2 * i + 1}.linear", x), 0.2)
    return x


def sg1_adain(s: dict[str, Tensor], prefix: str, x: Tensor, w: Tensor) -> Tensor:
    gamma, beta = sg1_linear(s, prefix + ".style.linear", w).unsqueeze(2).unsqueeze(3).chunk(2, 1)
    return gamma * F.instance_norm(x) + beta


def sg1_generate(s: dict[str, Tensor], channels: tuple[int, ...], n_mlp: int, z: Tensor, noise: list[Tensor],
                 step: int) -> Tensor:
    w = sg1_mapping(s, z, n_mlp)
    for i in range(step + 1):
        p = f"generator.progression.{i}"
        if i == 0:
            x = s[p + ".conv1.input"].repeat(z.shape[0], 1, 1, 1)
        elif 4 * 2**i >= 128:
            weight = s[p + ".conv1.0.weight"]
            x = F.conv_transpose2d(x, sg1_box(weight, math.sqrt(2 / (weight.shape[0] * 9))), s[p + ".conv1.0.bias"],
                                   stride=2, padding=1)
            x = sg1_blur(s, p + ".conv1.1", x)
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = sg1_blur(s, p + ".conv1.2", sg1_conv(s, p + ".conv1.1.conv", x, 1))
        for j in (1, 2):
            if j == 2:
                x = sg1_conv(s, p + ".conv2.conv", x, 1)
            x = x + he(s[f"{p}.noise{j}.weight_orig"]) * noise[i]
            x = sg1_adain(s, f"{p}.adain{j}", F.leaky_relu(x, 0.2), w)
    return sg1_conv(s, f"generator.to_rgb.{step}.conv", x)


def sg1_discriminate(s: dict[str, Tensor], channels: tuple[int, ...], x: Tensor, step: int) -> Tensor:
    n = len(channels)
    out = F.leaky_relu(sg1_conv(s, f"from_rgb.{n - 1 - step}.0.conv", x), 0.2)
    for i in range(step, -1, -1):
        p = f"progression.{n - 1 - i}"
        if i == 0:
            std = torch.sqrt(out.var(0, unbiased=False) + 1e-8).mean()
            out = torch.cat([out, std.expand(out.size(0), 1, 4, 4)], 1)
            out = F.leaky_relu(sg1_conv(s, p + ".conv1.0.conv", out, 1), 0.2)
            out = F.leaky_relu(sg1_conv(s, p + ".conv2.0.conv", out), 0.2)
            break
        out = sg1_blur(s, p + ".conv2.0", F.leaky_relu(sg1_conv(s, p + ".conv1.0.conv", out, 1), 0.2))
        if 4 * 2**i >= 128:
            weight = s[p + ".conv2.1.weight"]
            out = F.conv2d(out, sg1_box(weight, math.sqrt(2 / (weight.shape[1] * 9))), s[p + ".conv2.1.bias"],
                           stride=2, padding=1)
        else:
            out = F.avg_pool2d(sg1_conv(s, p + ".conv2.1.conv", out, 1), 2)
        out = F.leaky_relu(out, 0.2)
    return sg1_linear(s, "linear.linear", out.squeeze(2).squeeze(2))


# --------------------------------------------------------------------------------- StyleGAN2 reference


def upfirdn2d_native(x: Tensor, kernel: Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Zero insertion, padding, one single-channel conv per channel with the flipped kernel."""
    b, c, h, w = x.shape
    x = x.reshape(b * c, 1, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).view(b * c, 1, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    x = F.conv2d(x, torch.flip(kernel, [0, 1]).view(1, 1, *kernel.shape))
    return x.view(b, c, x.shape[2], x.shape[3])


def fused_lrelu(x: Tensor, bias: Tensor) -> Tensor:
    return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), 0.2) * SQRT2


def sg2_linear(s: dict[str, Tensor], prefix: str, x: Tensor, lr_mul: float = 1.0, act: bool = False) -> Tensor:
    weight, bias = s[prefix + ".weight"], s[prefix + ".bias"]
    out = F.linear(x, weight * (lr_mul / math.sqrt(weight.shape[1])))
    return fused_lrelu(out, bias * lr_mul) if act else out + bias * lr_mul


def sg2_modulated(s: dict[str, Tensor], prefix: str, x: Tensor, w: Tensor, demodulate: bool = True,
                  upsample: bool = False) -> Tensor:
    """Upstream's fused path: one modulated (and demodulated) weight per sample, a conv grouped by sample."""
    b, c, h, wd = x.shape
    weight = s[prefix + ".weight"]
    out_c, k = weight.shape[1], weight.shape[-1]
    style = sg2_linear(s, prefix + ".modulation", w).view(b, 1, c, 1, 1)
    weight = weight / math.sqrt(c * k * k) * style
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, out_c, 1, 1, 1)
    x = x.view(1, b * c, h, wd)
    if upsample:
        weight = weight.transpose(1, 2).reshape(b * c, out_c, k, k)
        out = F.conv_transpose2d(x, weight, stride=2, groups=b)
        out = out.view(b, out_c, out.shape[2], out.shape[3])
        return upfirdn2d_native(out, s[prefix + ".blur.kernel"], pad=(1, 1))
    out = F.conv2d(x, weight.view(b * out_c, c, k, k), padding=k // 2, groups=b)
    return out.view(b, out_c, h, wd)


def sg2_generate(s: dict[str, Tensor], n_mlp: int, n_blocks: int, z: Tensor, noise: list[Tensor]) -> Tensor:
    w = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        w = sg2_linear(s, f"style.{i}", w, lr_mul=0.01, act=True)

    def styled(prefix: str, x: Tensor, nz: Tensor, up: bool = False) -> Tensor:
        x = sg2_modulated(s, prefix + ".conv", x, w, upsample=up)
        return fused_lrelu(x + s[prefix + ".noise.weight"] * nz, s[prefix + ".activate.bias"])

    def to_rgb(prefix: str, x: Tensor) -> Tensor:
        return sg2_modulated(s, prefix + ".conv", x, w, demodulate=False) + s[prefix + ".bias"]

    x = styled("conv1", s["input.input"].repeat(z.shape[0], 1, 1, 1), noise[0])
    skip = to_rgb("to_rgb1", x)
    for r in range(n_blocks):
        x = styled(f"convs.{2 * r}", x, noise[1 + 2 * r], up=True)
        x = styled(f"convs.{2 * r + 1}", x, noise[2 + 2 * r])
        skip = to_rgb(f"to_rgbs.{r}", x) + upfirdn2d_native(skip, s[f"to_rgbs.{r}.upsample.kernel"], 2, (2, 1))
    return skip


# --------------------------------------------------------------------------------- cases


@dataclass
class Pair:
    """One case: our callable and the reference's, on the same weights and inputs."""

    name: str
    ours: Callable[[], object]
    reference: Callable[[], object]
    in_precision: Callable[[str], Tensor] | None = None  # our images in a display precision


def sg1_gan(channels: tuple[int, ...], code: int, n_mlp: int, resolution: int, device: torch.device) -> GAN:
    gan = gan_module.create_stylegan1(channels, code_dim=code, n_mlp=n_mlp, resolution=resolution, seed=0)
    randomise(gan.generator, 1)
    return gan.to(device)


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Nonzero noise strengths and styles, as in a trained file (speed does not depend on the values)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g).to(p) * 0.1)


def generator_pair(arch: str, resolution: int, batch: int, device: torch.device, full: bool) -> Pair:
    rng = torch.Generator().manual_seed(resolution + batch)
    if arch == "stylegan1":
        channels = FFHQ_CHANNELS[:int(math.log2(resolution)) - 1] if full else SG1_CPU[:int(math.log2(resolution)) - 1]
        code, n_mlp = (512, 8) if full else (SG1_CODE, SG1_MLP)
        gan = sg1_gan(channels, code, n_mlp, resolution, device)
        s = {k: v.detach() for k, v in gan.generator.state_dict().items()}
        z = torch.randn(batch, code, generator=rng).to(device)
        noise = gan.make_noise(batch, rng)
        step = gan.step

        def reference() -> Tensor:
            return sg1_generate(s, channels, n_mlp, z, noise, step)
    else:
        channels = None if full else {r: c for r, c in SG2_CPU.items() if r <= resolution}
        style, n_mlp = (512, 8) if full else (SG2_STYLE, SG2_MLP)
        torch.manual_seed(0)
        generator = SG2Generator(resolution, style, n_mlp, channels=channels)
        randomise(generator, 1)
        generator.to(device).eval()
        gan = GAN("stylegan2", generator, None, resolution, style, estimate_mean_latent(generator, style, 256), {})
        s = {k: v.detach() for k, v in generator.state_dict().items()}
        z = torch.randn(batch, style, generator=rng).to(device)
        noise = gan.make_noise(batch, rng)
        n_blocks = generator.log_size - 2

        def reference() -> Tensor:
            return sg2_generate(s, n_mlp, n_blocks, z, noise)

    def ours() -> Tensor:
        return gan.generate(z, noise)

    def in_precision(precision: str) -> Tensor:
        return gan.generate(z, noise, precision=precision)

    width = "full" if full else "small"
    return Pair(f"{'SG1' if arch == 'stylegan1' else 'SG2'} G {resolution:4d} px b{batch} ({width})", ours, reference,
                in_precision)


def step_pair(resolution: int, batch: int, device: torch.device, run_dir: str) -> tuple[Pair, Engine]:
    """One inverted fine-tuning step (Engine.step) against the same step written over reference functions."""
    channels = SG1_CPU[:int(math.log2(resolution)) - 1]
    gan = sg1_gan(channels, SG1_CODE, SG1_MLP, resolution, device)
    randomise(gan.discriminator, 2)
    ref_g = {k: v.detach().clone().requires_grad_(k in dict(gan.generator.named_parameters()))
             for k, v in gan.generator.state_dict().items()}
    ref_d = {k: v.detach().clone() for k, v in gan.discriminator.state_dict().items()}
    config = EngineConfig(batch=batch, device=str(device), snapshot_every=10**9, probe_every=10**9)
    engine = Engine(gan, config, run_dir)
    mapping = [v for k, v in ref_g.items() if v.requires_grad and k.startswith("style.")]
    synthesis = [v for k, v in ref_g.items() if v.requires_grad and not k.startswith("style.")]
    optimizer = torch.optim.Adam([{"params": synthesis, "lr": engine.lr},
                                  {"params": mapping, "lr": engine.lr * config.mapping_lr_mult}], betas=(0.0, 0.99))
    rng = torch.Generator(device=device)
    step = gan.step

    def reference() -> Tensor:
        rng.manual_seed(0)
        z = torch.randn(batch, SG1_CODE, generator=rng, device=device)
        noise = [torch.randn(batch, 1, 4 * 2**i, 4 * 2**i, generator=rng, device=device) for i in range(step + 1)]
        logits = sg1_discriminate(ref_d, channels, sg1_generate(ref_g, channels, SG1_MLP, z, noise, step), step)
        loss = logits.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = synthesis + mapping
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        optimizer.step()
        torch.stack([loss.detach(), logits.detach().mean(), grad_norm, torch.nn.utils.get_total_norm(params)]).tolist()
        return loss

    return Pair(f"SG1 step {resolution:3d} px b{batch}", engine.step, reference), engine


# --------------------------------------------------------------------------------- timing


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def compare(pair: Pair, device: torch.device, reps: int, grad: bool, seconds: float = 0.0) -> tuple[float, float]:
    """Medians (ours, reference) in seconds, the two alternating (and alternating which goes first).

    At least `reps` repetitions each, more until `seconds` have passed: quick cases get many samples, so that
    bursts of load from other processes move their medians less.
    """
    with torch.set_grad_enabled(grad):
        for _ in range(2):  # warm-up: allocator, caches, oneDNN primitives, cudnn autotuning
            pair.ours(), pair.reference()
        ours, ref = [], []
        start = time.perf_counter()
        while len(ours) < reps or (time.perf_counter() - start < seconds and len(ours) < 50 * reps):
            order = [(pair.ours, ours), (pair.reference, ref)]
            for fn, times in order if len(ours) % 2 == 0 else order[::-1]:
                times.append(timed(fn, device))
    return statistics.median(ours), statistics.median(ref)


def max_difference(pair: Pair) -> float:
    with torch.no_grad():
        return (pair.ours() - pair.reference()).abs().max().item()


def psnr(image: Tensor, exact: Tensor) -> float:
    peak = (exact.max() - exact.min()).item()
    return 10 * math.log10(peak**2 / max((image.float() - exact).square().mean().item(), 1e-30))


def precision_rows(pair: Pair, device: torch.device, reps: int) -> list[str]:
    """Each reduced precision against our fp32: medians, speed-up and PSNR."""
    rows = []
    for precision in ("bf16", "fp16") if device.type == "cuda" else ("bf16",):
        fast = device.type == "cuda" or cpu_has_fast_bf16()
        low = Pair(precision, pair.ours, lambda p=precision: pair.in_precision(p))
        fp32_time, low_time = compare(low, device, reps if fast else 1, grad=False)
        with torch.no_grad():
            quality = psnr(pair.in_precision(precision), pair.ours())
        note = "" if fast else " (emulated: this CPU has no bf16)"
        rows.append(f"    {precision} vs our fp32{'':<13} {low_time * 1e3:9.1f} {fp32_time * 1e3:9.1f} "
                    f"{low_time / fp32_time:6.2f} PSNR {quality:.1f} dB{note}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=7, help="least timed repetitions per case and implementation")
    parser.add_argument("--seconds", type=float, default=6.0, help="more repetitions until a case took this long")
    parser.add_argument("--threads", default="1,2", help="torch CPU thread counts to run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true", help="the published widths (slow on CPU; default on CUDA)")
    parser.add_argument("--no-precision", action="store_true", help="skip the reduced-precision rows")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    full = args.full or device.type == "cuda"
    cases = [("stylegan1", r, b) for r in (64, 128, 256) for b in (1, 4)] + [("stylegan2", 256, b) for b in (1, 4)]
    if device.type == "cuda":
        cases += [(arch, r, b) for arch in ("stylegan1", "stylegan2") for r in (512, 1024) for b in (1, 4)]
    threads = [int(t) for t in args.threads.split(",")]
    if args.quick:
        cases, threads, args.reps, args.seconds = [("stylegan1", 64, 1), ("stylegan2", 256, 1)], threads[:1], 3, 0
    print(f"torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for count in threads if device.type == "cpu" else threads[:1]:
        torch.set_num_threads(count)
        print(f"device: {device_name(device)}")
        print(f"  {'case':<28} {'ours ms':>9} {'ref ms':>9} {'ratio':>6} {'max |diff|':>10}")
        for arch, resolution, batch in cases:
            pair = generator_pair(arch, resolution, batch, device, full)
            ours, ref = compare(pair, device, args.reps, grad=False, seconds=args.seconds)
            print(f"  {pair.name:<28} {ours * 1e3:9.1f} {ref * 1e3:9.1f} {ours / ref:6.2f} "
                  f"{max_difference(pair):10.2e}", flush=True)
            if batch == 1 and count == threads[0] and not args.no_precision:
                print("\n".join(precision_rows(pair, device, args.reps)), flush=True)
        with tempfile.TemporaryDirectory() as run_dir:
            pair, engine = step_pair(64, 4, device, run_dir)
            ours, ref = compare(pair, device, args.reps, grad=True, seconds=args.seconds)
            engine.close(snapshot=False)
            print(f"  {pair.name:<28} {ours * 1e3:9.1f} {ref * 1e3:9.1f} {ours / ref:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

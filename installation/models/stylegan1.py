"""StyleGAN (v1) with progressive growing, state_dict-compatible with rosinality/style-based-gan-pytorch.

Module nesting, parameter names and buffers follow the upstream `model.py` exactly, so the released
`stylegan-{256,512,1024}px-new.model` files and `train_step-N.model` / `NNNNNN.model` checkpoints load
strictly. Channel widths are configurable (one entry per resolution, 4 px upwards) so the same classes build
the small models the project trains and tests with; the defaults are the 1024 px FFHQ network.

Conventions kept from upstream:
- equal learning rate: parameters are stored raw as `weight_orig`, scaled by sqrt(2 / fan_in) at run time;
- fused up/down-sampling convs (resolutions >= 128) store a raw `weight` and scale inside forward;
- blur kernels are persistent buffers (`weight`, `weight_flip`), so they are part of every state_dict;
- resolution is chosen at forward time by `step` (R = 4 * 2**step); `alpha` in [0, 1) fades in the new block.

Computed differently from upstream, with the same results up to float rounding (for speed):
- scaled weights are reused while their parameter is unchanged (`derived`);
- nearest upsampling then a 3x3 conv runs as one stride-2 transposed conv with the summed 4x4 kernel, and in D
  a 3x3 conv then 2x2 average pooling as one stride-2 conv (the fused blocks' formulation at every size);
- noise, leaky ReLU and AdaIN (instance norm, gamma * x + beta) run as three passes over the feature map;
- feature maps are channels-last in inference (`feature_layout`);
- fp32 inference (no autograd, no autocast) runs an `InferencePlan`: every layer's weights ready in one place, all
  AdaIN style affines as one matmul, no module calls, and at batch 1 AdaIN as one batch-norm kernel. On small
  maps the time per op, not the arithmetic, is what counts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .derived import conv_layout, derived, feature_layout

# Channels per resolution of the published FFHQ network, for 4, 8, ..., 1024 px.
FFHQ_CHANNELS = (512, 512, 512, 512, 256, 128, 64, 32, 16)
# Upstream switches to fused (transposed / strided) convs from this resolution up.
FUSED_FROM_RESOLUTION = 128


def step_for_resolution(resolution: int) -> int:
    """The `step` argument for an output size: R = 4 * 2**step."""
    step = int(round(math.log2(resolution))) - 2
    if step < 0 or 4 * 2**step != resolution:
        raise ValueError(f"resolution {resolution} is not a power of two >= 4")
    return step


def he_scaled(weight: Tensor) -> Tensor:
    """Equal learning rate: the stored weight times He's constant sqrt(2 / fan_in)."""
    return weight * math.sqrt(2 / (weight.size(1) * weight[0][0].numel()))


class EqualLR:
    """Forward pre-hook that rebuilds `weight` from the stored `weight_orig` scaled by He's constant."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, module: nn.Module, _inputs) -> None:
        weight = getattr(module, self.name + "_orig")
        setattr(module, self.name, derived(module, self.name, lambda: conv_layout(he_scaled(weight)), weight))


def equal_lr(module: nn.Module, name: str = "weight") -> nn.Module:
    weight = getattr(module, name)
    del module._parameters[name]
    module.register_parameter(name + "_orig", nn.Parameter(weight.data))
    module.register_forward_pre_hook(EqualLR(name))
    return module


def plain_inference(x: Tensor) -> bool:
    """No autograd and no autocast: the inference plans (ready-made weights, fewer ops) apply."""
    return not torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type)


def pixel_norm(x: Tensor) -> Tensor:
    return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return pixel_norm(x)


class Blur(nn.Module):
    """3x3 binomial blur, depthwise. The flipped copy is kept only because upstream files carry it."""

    def __init__(self, channel: int):
        super().__init__()
        kernel = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float32)
        kernel = (kernel / kernel.sum()).view(1, 1, 3, 3).repeat(channel, 1, 1, 1)
        self.register_buffer("weight", kernel)
        self.register_buffer("weight_flip", torch.flip(kernel, [2, 3]))

    def forward(self, x: Tensor) -> Tensor:
        weight = derived(self, "weight", lambda: conv_layout(self.weight), self.weight)
        return F.conv2d(x, weight, padding=1, groups=x.shape[1])


class EqualConv2d(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        conv = nn.Conv2d(*args, **kwargs)
        conv.weight.data.normal_()
        conv.bias.data.zero_()
        self.conv = equal_lr(conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        linear = nn.Linear(in_dim, out_dim)
        linear.weight.data.normal_()
        linear.bias.data.zero_()
        self.linear = equal_lr(linear)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


# Per axis, a 3-tap kernel plus its one-pixel shift as 4 taps: [w0, w0 + w1, w1 + w2, w2] = SHIFT_SUM @ w.
# As matrix products (S w S^T) the kernels below cost a fraction of pad-and-slice in autograd's backward.
SHIFT_SUM = ((1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 1.0, 1.0), (0.0, 0.0, 1.0))


def _box_smoothed(weight: Tensor) -> Tensor:
    """Pad a 3x3 kernel to 4x4 and average its four one-pixel shifts (upsample/downsample fused with blur)."""
    s = weight.new_tensor(SHIFT_SUM)
    return torch.einsum("ya,oiab,xb->oiyx", s, weight, s) / 4


def _nearest_up_kernel(weight: Tensor) -> Tensor:
    """3x3 conv weight (out, in) -> 4x4 transposed-conv weight (in, out) equal to nearest 2x upsampling + conv.

    Each output pixel of the upsampled conv sees 2x2 input pixels, with the taps that fall on the same input
    pixel summed: per axis [w2, w1 + w2, w0 + w1, w0], the flipped shift sum.
    """
    s = weight.new_tensor(SHIFT_SUM).flip(0)
    return torch.einsum("ya,oiab,xb->ioyx", s, weight, s)


class FusedUpsample(nn.Module):
    """Transposed stride-2 conv; weight layout (in, out, k, k), scaled here rather than by a hook."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_channel, out_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel))
        self.multiplier = math.sqrt(2 / (in_channel * kernel_size * kernel_size))
        self.pad = padding

    def forward(self, x: Tensor) -> Tensor:
        weight = derived(self, "weight", lambda: conv_layout(_box_smoothed(self.weight * self.multiplier)),
                         self.weight)
        return F.conv_transpose2d(x, weight, self.bias, stride=2, padding=self.pad)


class FusedDownsample(nn.Module):
    """Stride-2 conv; weight layout (out, in, k, k), scaled here rather than by a hook."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel))
        self.multiplier = math.sqrt(2 / (in_channel * kernel_size * kernel_size))
        self.pad = padding

    def forward(self, x: Tensor) -> Tensor:
        weight = derived(self, "weight", lambda: conv_layout(_box_smoothed(self.weight * self.multiplier)),
                         self.weight)
        return F.conv2d(x, weight, self.bias, stride=2, padding=self.pad)


class InstanceNormAffine(torch.autograd.Function):
    """gamma * instance_norm(x) + beta (eps 1e-5) in one pass after the statistics, and a hand-written backward.

    Statistics as E[x^2] - E[x]^2 (two quick reductions where var_mean is slow on CPU; activations are near
    zero-mean). Autograd through the plain formula takes about eight passes over x backwards, this three.
    """

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        # statistics in at least fp32, under autocast too (bf16 would cancel E[x^2] - E[x]^2 away)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        mean = xf.mean((2, 3), keepdim=True)
        rstd = torch.rsqrt((xf.square().mean((2, 3), keepdim=True) - mean.square()).clamp_min_(0) + 1e-5)
        scale = gamma * rstd
        ctx.save_for_backward(x, mean, rstd, gamma)
        return torch.addcmul(beta - mean * scale, x, scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, mean, rstd, gamma = ctx.saved_tensors
        n = x.shape[2] * x.shape[3]
        sum_g = grad.sum((2, 3), keepdim=True)
        sum_g_xhat = rstd * ((grad * x).sum((2, 3), keepdim=True) - mean * sum_g)  # = d gamma
        scale = gamma * rstd
        # d x = gamma * rstd * (g - mean(g) - xhat * mean(g * xhat)), written as a * g + b + c * x per channel
        c = -scale * rstd * sum_g_xhat / n
        grad_x = torch.addcmul(-scale * sum_g / n - c * mean, grad, scale).addcmul_(x, c)
        return grad_x, sum_g_xhat, sum_g


class AdaptiveInstanceNorm(nn.Module):
    def __init__(self, channel: int, style_dim: int):
        super().__init__()
        self.style = EqualLinear(style_dim, channel * 2)
        self.style.linear.bias.data[:channel] = 1  # gamma starts at 1, beta at 0
        self.style.linear.bias.data[channel:] = 0

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        gamma, beta = self.style(style).unsqueeze(2).unsqueeze(3).chunk(2, 1)
        return InstanceNormAffine.apply(x, gamma, beta)  # InstanceNorm2d(affine=False), then gamma * x + beta


class NoiseInjection(nn.Module):
    def __init__(self, channel: int):
        super().__init__()
        # Starts at zero: a block that never trained keeps zero noise strength (used to find the trained size).
        self.weight = nn.Parameter(torch.zeros(1, channel, 1, 1))

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return torch.addcmul(x, self.weight, noise)


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch_like: Tensor) -> Tensor:
        # the layout chosen here is kept by every conv, blur and per-element op after it
        return self.input.repeat(batch_like.shape[0], 1, 1, 1).contiguous(memory_format=feature_layout())


class MappingNetwork(nn.Sequential):
    """z -> w: PixelNorm, then `n_mlp` times EqualLinear and LeakyReLU (upstream's `style` Sequential, same keys).

    Plain inference runs the scaled weights directly, skipping a third of the time the module calls take."""

    def __init__(self, code_dim: int, n_mlp: int):
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(n_mlp):
            layers += [EqualLinear(code_dim, code_dim), nn.LeakyReLU(0.2)]
        super().__init__(*layers)
        self._linears = tuple(layer.linear for layer in self if isinstance(layer, EqualLinear))

    def forward(self, z: Tensor) -> Tensor:
        if not plain_inference(z):
            return super().forward(z)
        sources = [t for linear in self._linears for t in (linear.weight_orig, linear.bias)]
        weights = derived(self, "plan", lambda: [(he_scaled(linear.weight_orig), linear.bias)
                                                 for linear in self._linears], *sources)
        x = pixel_norm(z)
        for weight, bias in weights:
            x = F.leaky_relu_(F.linear(x, weight, bias), 0.2)
        return x


@dataclass(frozen=True)
class StyledLayer:
    """One conv, noise, LeakyReLU and AdaIN of the inference plan, its weights scaled and laid out."""

    conv: Tensor | None  # 3x3 weight, 4x4 transposed weight (upsample), or None after the constant input
    bias: Tensor | None
    padding: int
    upsample: bool  # a stride-2 transposed conv, then the blur
    blur: Tensor | None
    noise: Tensor  # scaled noise strength (1, C, 1, 1)
    style: int  # where this layer's gamma, then its beta, start in the joint style affine's output
    channels: int

    def __call__(self, x: Tensor, affine: Tensor, noise: Tensor) -> Tensor:
        if self.upsample:
            x = F.conv_transpose2d(x, self.conv, self.bias, stride=2, padding=self.padding)
            x = F.conv2d(x, self.blur, padding=1, groups=self.channels)
        elif self.conv is not None:
            x = F.conv2d(x, self.conv, self.bias, padding=self.padding)
        x = F.leaky_relu_(torch.addcmul(x, self.noise, noise), 0.2)
        gamma = affine[:, self.style:self.style + self.channels]
        beta = affine[:, self.style + self.channels:self.style + 2 * self.channels]
        if x.shape[0] == 1:  # batch norm's statistics over a batch of one are instance norm's, in one fused kernel
            return F.batch_norm(x, None, None, gamma[0], beta[0], training=True, eps=1e-5)
        return InstanceNormAffine.apply(x, gamma[:, :, None, None], beta[:, :, None, None])


class StyledConvBlock(nn.Module):
    """Two 3x3 convs at one resolution, each followed by noise, LeakyReLU and AdaIN (upstream's order)."""

    def __init__(self, in_channel: int, out_channel: int, style_dim: int, initial: bool = False,
                 upsample: bool = False, fused: bool = False):
        super().__init__()
        self.nearest_up = upsample and not fused and not initial
        if initial:
            self.conv1 = ConstantInput(in_channel)
        elif upsample and fused:
            self.conv1 = nn.Sequential(FusedUpsample(in_channel, out_channel, 3, padding=1), Blur(out_channel))
        elif upsample:
            self.conv1 = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                EqualConv2d(in_channel, out_channel, 3, padding=1),
                Blur(out_channel),
            )
        else:
            self.conv1 = EqualConv2d(in_channel, out_channel, 3, padding=1)
        self.noise1 = equal_lr(NoiseInjection(out_channel))
        self.adain1 = AdaptiveInstanceNorm(out_channel, style_dim)
        self.lrelu1 = nn.LeakyReLU(0.2, inplace=True)  # in place on the noise sum, which nothing else reads
        self.conv2 = EqualConv2d(out_channel, out_channel, 3, padding=1)
        self.noise2 = equal_lr(NoiseInjection(out_channel))
        self.adain2 = AdaptiveInstanceNorm(out_channel, style_dim)
        self.lrelu2 = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
        if self.nearest_up:  # Sequential(Upsample, EqualConv2d, Blur) as one transposed conv, then the blur
            _, conv, blur = self.conv1
            raw = conv.conv.weight_orig
            weight = derived(conv.conv, "up", lambda: conv_layout(_nearest_up_kernel(he_scaled(raw))), raw)
            out = blur(F.conv_transpose2d(x, weight, conv.conv.bias, stride=2, padding=1))
        else:
            out = self.conv1(x)
        out = self.adain1(self.lrelu1(self.noise1(out, noise)), style)
        return self.adain2(self.lrelu2(self.noise2(self.conv2(out), noise)), style)

    def plan(self, style: int) -> tuple[StyledLayer, StyledLayer]:
        """The block's two layers for the inference plan (what `forward` computes); gamma and beta from `style` on."""
        if isinstance(self.conv1, ConstantInput):
            first = (None, None, 0, False, None)
        elif self.nearest_up:
            _, conv, blur = self.conv1
            weight = conv_layout(_nearest_up_kernel(he_scaled(conv.conv.weight_orig)))
            first = (weight, conv.conv.bias, 1, True, conv_layout(blur.weight))
        else:
            up, blur = self.conv1
            first = (conv_layout(_box_smoothed(up.weight * up.multiplier)), up.bias, up.pad, True,
                     conv_layout(blur.weight))
        conv2 = self.conv2.conv
        second = (conv_layout(he_scaled(conv2.weight_orig)), conv2.bias, conv2.padding[0], False, None)
        channels = conv2.out_channels
        return tuple(StyledLayer(*layer, he_scaled(noise.weight_orig), style + 2 * channels * k, channels)
                     for k, (layer, noise) in enumerate(((first, self.noise1), (second, self.noise2))))

    def infer(self, x: Tensor, layers: tuple[StyledLayer, StyledLayer], affine: Tensor, noise: Tensor) -> Tensor:
        """`forward` through the block's plan; `affine` is the joint style affine of the block's style."""
        if isinstance(self.conv1, ConstantInput):
            x = self.conv1(x)
        for layer in layers:
            x = layer(x, affine, noise)
        return x


@dataclass(frozen=True)
class InferencePlan:
    """A generator's synthesis weights ready for inference, rebuilt when a weight changes (`derived`)."""

    style_weight: Tensor  # every AdaIN's style affine stacked: one matmul gives all layers' gamma and beta
    style_bias: Tensor
    blocks: tuple[tuple[StyledLayer, StyledLayer], ...]
    ends: tuple[int, ...]  # per block, the end of its rows in the joint affine (later blocks' rows are not needed)


class Generator(nn.Module):
    """Synthesis network: one StyledConvBlock and one to_rgb per resolution, 4 px upwards."""

    def __init__(self, style_dim: int = 512, channels: Sequence[int] = FFHQ_CHANNELS):
        super().__init__()
        blocks, to_rgb = [], []
        for i, out_channel in enumerate(channels):
            resolution = 4 * 2**i
            if i == 0:
                blocks.append(StyledConvBlock(out_channel, out_channel, style_dim, initial=True))
            else:
                blocks.append(StyledConvBlock(channels[i - 1], out_channel, style_dim, upsample=True,
                                              fused=resolution >= FUSED_FROM_RESOLUTION))
            to_rgb.append(EqualConv2d(out_channel, 3, 1))
        self.progression = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(to_rgb)
        self._plan_modules = tuple(self.progression.modules())  # walked once: parameters() costs ~0.5 ms a call

    def forward(self, styles: list[Tensor], noise: list[Tensor], step: int = 0, alpha: float = -1,
                mixing_range: tuple[int, int] = (-1, -1)) -> Tensor:
        out = noise[0]
        chosen = self._style_per_block(len(styles), step, mixing_range)
        plan = self.plan() if plain_inference(out) else None
        if plan is not None:
            end = plan.ends[step]
            affines = [F.linear(style, plan.style_weight[:end], plan.style_bias[:end]) for style in styles]
        for i, (block, to_rgb) in enumerate(zip(self.progression, self.to_rgb)):
            previous = out
            if plan is None:
                out = block(out, styles[chosen[i]], noise[i])
            else:
                out = block.infer(out, plan.blocks[i], affines[chosen[i]], noise[i])
            if i == step:
                out = to_rgb(out)
                if i > 0 and 0 <= alpha < 1:
                    skip = F.interpolate(self.to_rgb[i - 1](previous), scale_factor=2, mode="nearest")
                    out = (1 - alpha) * skip + alpha * out
                break
        return out.contiguous()

    def _style_per_block(self, count: int, step: int, mixing_range: tuple[int, int]) -> list[int]:
        """Which of the `count` styles each block up to `step` takes: upstream's random crossover points (drawn
        whenever there are two styles or more, as upstream does) or the blocks inside `mixing_range`."""
        if count < 2:
            inject_index = [len(self.progression) + 1]
        else:
            inject_index = sorted(random.sample(list(range(step)), count - 1))
        if mixing_range != (-1, -1):
            return [1 if mixing_range[0] <= i <= mixing_range[1] else 0 for i in range(step + 1)]
        crossover, chosen = 0, []
        for i in range(step + 1):
            if crossover < len(inject_index) and i > inject_index[crossover]:
                crossover = min(crossover + 1, count)
            chosen.append(crossover)
        return chosen

    def plan(self) -> InferencePlan:
        """The inference plan of the current weights (built once per weight version)."""
        sources = [t for m in self._plan_modules for t in (*m._parameters.values(), *m._buffers.values())
                   if t is not None]
        return derived(self, "plan", self._build_plan, *sources)

    def _build_plan(self) -> InferencePlan:
        blocks, ends, weights, biases = [], [], [], []
        for block in self.progression:
            blocks.append(block.plan(sum(len(b) for b in biases)))
            for adain in (block.adain1, block.adain2):
                weights.append(he_scaled(adain.style.linear.weight_orig))
                biases.append(adain.style.linear.bias)
            ends.append(sum(len(b) for b in biases))
        return InferencePlan(torch.cat(weights), torch.cat(biases), tuple(blocks), tuple(ends))


class StyledGenerator(nn.Module):
    """Mapping network (`style`) plus synthesis (`generator`), rosinality's top-level G."""

    def __init__(self, code_dim: int = 512, n_mlp: int = 8, channels: Sequence[int] = FFHQ_CHANNELS):
        super().__init__()
        self.code_dim = code_dim
        self.channels = tuple(channels)
        self.generator = Generator(code_dim, channels)
        self.style = MappingNetwork(code_dim, n_mlp)

    @property
    def max_resolution(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    def make_noise(self, batch: int, step: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> list[Tensor]:
        """One noise map per block up to `step`; each feeds both noise injections of its block."""
        device = device if device is not None else self.generator.to_rgb[0].conv.bias.device
        source = generator.device if generator is not None else device  # draw where the RNG lives
        return [torch.randn(batch, 1, 4 * 2**i, 4 * 2**i, generator=generator, device=source).to(device)
                for i in range(step + 1)]

    def forward(self, input: Tensor | list[Tensor], noise: list[Tensor] | None = None, step: int = 0,
                alpha: float = -1, mean_style: Tensor | None = None, style_weight: float = 0,
                mixing_range: tuple[int, int] = (-1, -1), input_is_latent: bool = False) -> Tensor:
        """Images (B, 3, 4*2**step, 4*2**step), unclamped, nominally in [-1, 1].

        `input` is z (or a list of z for style mixing); with `input_is_latent` it is already w.
        With `mean_style`, w is truncated to mean_style + style_weight * (w - mean_style).
        """
        inputs = list(input) if isinstance(input, (list, tuple)) else [input]
        styles = inputs if input_is_latent else [self.style(z) for z in inputs]
        if noise is None:
            noise = self.make_noise(inputs[0].shape[0], step, device=inputs[0].device)
        if mean_style is not None:
            styles = [mean_style + style_weight * (s - mean_style) for s in styles]
        return self.generator(styles, noise, step, alpha, mixing_range=mixing_range)

    def mean_style(self, z: Tensor) -> Tensor:
        return self.style(z).mean(0, keepdim=True)


class ConvBlock(nn.Module):
    """Discriminator block: conv, then (optionally blurred and downsampling) conv, LeakyReLU after each."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, padding: int,
                 kernel_size2: int | None = None, padding2: int | None = None,
                 downsample: bool = False, fused: bool = False):
        super().__init__()
        kernel2 = kernel_size if kernel_size2 is None else kernel_size2
        pad2 = padding if padding2 is None else padding2
        self.conv1 = nn.Sequential(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding),
                                   nn.LeakyReLU(0.2))
        self.pooled = downsample and not fused and (kernel2, pad2) == (3, 1)
        if downsample and fused:
            self.conv2 = nn.Sequential(Blur(out_channel), FusedDownsample(out_channel, out_channel, kernel2, pad2),
                                       nn.LeakyReLU(0.2))
        elif downsample:
            self.conv2 = nn.Sequential(Blur(out_channel), EqualConv2d(out_channel, out_channel, kernel2,
                                                                      padding=pad2),
                                       nn.AvgPool2d(2), nn.LeakyReLU(0.2))
        else:
            self.conv2 = nn.Sequential(EqualConv2d(out_channel, out_channel, kernel2, padding=pad2),
                                       nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        if self.pooled:  # 3x3 conv then 2x2 average pool = one stride-2 conv with the box-smoothed 4x4 kernel
            blur, conv, _, act = self.conv2
            raw = conv.conv.weight_orig
            weight = derived(conv.conv, "pooled", lambda: conv_layout(_box_smoothed(he_scaled(raw))), raw)
            return act(F.conv2d(blur(out), weight, conv.conv.bias, stride=2, padding=1))
        return self.conv2(out)


class Discriminator(nn.Module):
    """Progressive D. Blocks are ordered from the highest resolution down; it enters at from_rgb[n-1-step].

    `from_rgb_activate=True` matches the Sept-2019 "new" files (keys `from_rgb.K.0.conv.*`), False the
    July-2019 "old" ones (`from_rgb.K.conv.*`). `channels` lists widths per resolution from 4 px upwards,
    the same list the generator takes.
    """

    def __init__(self, channels: Sequence[int] = FFHQ_CHANNELS, from_rgb_activate: bool = True):
        super().__init__()
        self.channels = tuple(channels)
        self.from_rgb_activate = from_rgb_activate
        n = len(channels)
        blocks = []
        for k in range(n - 1):  # k = 0 is the highest resolution
            i = n - 1 - k  # resolution index of the block's input
            blocks.append(ConvBlock(channels[i], channels[i - 1], 3, 1, downsample=True,
                                    fused=4 * 2**i >= FUSED_FROM_RESOLUTION))
        blocks.append(ConvBlock(channels[0] + 1, channels[0], 3, 1, 4, 0))
        self.progression = nn.ModuleList(blocks)

        def from_rgb(out_channel: int) -> nn.Module:
            conv = EqualConv2d(3, out_channel, 1)
            return nn.Sequential(conv, nn.LeakyReLU(0.2)) if from_rgb_activate else conv

        self.from_rgb = nn.ModuleList(from_rgb(channels[n - 1 - k]) for k in range(n))
        self.n_layer = n
        self.linear = EqualLinear(channels[0], 1)

    def forward(self, x: Tensor, step: int = 0, alpha: float = -1) -> Tensor:
        """Raw logits (B, 1): high means real. The minibatch-stddev feature couples samples in a batch."""
        x = x.contiguous(memory_format=feature_layout())  # as in the generator
        for i in range(step, -1, -1):
            index = self.n_layer - i - 1
            if i == step:
                out = self.from_rgb[index](x)
            if i == 0:
                std = torch.sqrt(out.var(0, unbiased=False) + 1e-8).mean()
                out = torch.cat([out, std.expand(out.size(0), 1, 4, 4)], 1)
            out = self.progression[index](out)
            if i > 0 and i == step and 0 <= alpha < 1:
                skip = self.from_rgb[index + 1](F.avg_pool2d(x, 2))
                out = (1 - alpha) * skip + alpha * out
        return self.linear(out.squeeze(2).squeeze(2))

"""StyleGAN2 in plain torch, state_dict-compatible with rosinality/stylegan2-pytorch (`model.py@bef283a`).

Module nesting, parameter names and buffers follow upstream exactly, so `g`, `g_ema` and `d` from train.py
checkpoints and converted official weights load strictly, at any size and channel multiplier. Upstream's
`op/` package (compiled CUDA at import time) is replaced by its plain-torch equivalents:
- upfirdn2d: zero-insertion upsampling, padding (negative = crop), FIR filter (a true convolution, i.e.
  cross-correlation with the flipped kernel) as one depthwise conv, decimation;
- fused leaky ReLU: leaky_relu(x + b, 0.2) * sqrt(2).

Conventions kept from upstream (raw weights stored, gains applied at run time):
- EqualConv2d: weight * 1/sqrt(in * k^2);
- EqualLinear: weight initialised randn / lr_mul, used as weight * lr_mul/sqrt(in); bias used as bias * lr_mul;
- ModulatedConv2d: weight * 1/sqrt(in * k^2), modulated per sample by an affine map of w (bias initialised
  to 1), demodulated except in ToRGB;
- blur kernels and the fixed noise maps are buffers, so they are part of every state_dict.

The modulated conv uses the "shared weight" formulation (scale the input by the style, run one ordinary conv,
scale the output by the demodulation coefficients). It is algebraically identical to upstream's default
grouped per-sample conv and runs as a single dense conv, which is faster on CPU and GPU alike. A StyledConv
applies demodulation, noise, bias, leaky ReLU and the sqrt(2) gain in three passes over its output, and scaled
weights are reused while their parameter is unchanged (`derived`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .derived import derived, feature_layout

SQRT2 = math.sqrt(2.0)


def channel_table(channel_multiplier: int) -> dict[int, int]:
    """Feature maps per resolution, shared by G and D (upstream hard-codes 512 up to 32 px)."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
            1024: 16 * cm}


def _log2_size(size: int) -> int:
    log_size = int(math.log2(size))
    if size < 4 or 2**log_size != size or size > 1024:
        raise ValueError(f"size must be a power of two in [4, 1024], got {size}")
    return log_size


# ---------------------------------------------------------------------------------------------------------------
# Plain-torch replacements for upstream's op/ package
# ---------------------------------------------------------------------------------------------------------------


def make_kernel(k: Sequence[float] | Tensor) -> Tensor:
    """Separable 1-D taps -> normalised 2-D FIR kernel (sum 1)."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad both spatial dims by `pad` (negative crops), FIR-filter, decimate."""
    b, c, h, w = x.shape
    if up > 1:
        # put up-1 zeros after every sample in both directions
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    # depthwise (groups = C): the same taps as one single-channel conv over B*C maps, several times faster on CPU
    k = torch.flip(kernel, (0, 1)).to(x)[None, None].expand(c, 1, *kernel.shape)  # FIR filtering convolves
    if up == 1 and pad[0] == pad[1] >= 0:  # the conv's own padding keeps a channels-last input channels-last
        return F.conv2d(x, k, stride=down, padding=pad[0], groups=c)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, k, stride=down, groups=c)  # stride == taking every `down`-th output from index 0


def fused_leaky_relu(x: Tensor, bias: Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> Tensor:
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU(0.2) + sqrt(2) gain; the bias lives here (`*.activate.bias`, D `*.1.bias`)."""

    def __init__(self, channel: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        # after zero-insertion upsampling the filter must restore the lost gain: factor^2
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


# ---------------------------------------------------------------------------------------------------------------
# Equalised-learning-rate layers
# ---------------------------------------------------------------------------------------------------------------


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualConv2d(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        weight = derived(self, "weight", lambda: self.weight * self.scale, self.weight)
        return F.conv2d(x, weight, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str | None = None):
        super().__init__()
        # stored as randn / lr_mul and multiplied back at run time: the optimiser sees a smaller step
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else derived(self, "bias", lambda: self.bias * self.lr_mul, self.bias)
        weight = derived(self, "weight", lambda: self.weight * self.scale, self.weight)
        if self.activation:
            return fused_leaky_relu(F.linear(x, weight), bias)
        return F.linear(x, weight, bias)


# ---------------------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------------------


class ModulatedConv2d(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            # transposed 3x3 conv (stride 2) gives 2h+1 samples; this blur padding brings it back to 2h
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        out, demod = self.undemodulated(x, style)
        return out if demod is None else out * demod.view(*demod.shape, 1, 1)

    def undemodulated(self, x: Tensor, style: Tensor) -> tuple[Tensor, Tensor | None]:
        """The conv output before demodulation, and the demodulation factors (B, out) (None without)."""
        s = self.modulation(style)  # (B, in)
        weight = derived(self, "weight", lambda: self.weight[0] * self.scale, self.weight)  # (out, in, k, k)
        # modulating the weight by s equals modulating the input by s; demodulation is a per-(sample, out)
        # factor, so it can be applied after the (linear, per-channel) conv and blur
        x = x * s.view(*s.shape, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if not self.demodulate:
            return out, None
        # |w * s|^2 summed over (in, k, k) = sum_in s^2 * (sum_kk w^2): no per-sample weight tensor needed
        energy = derived(self, "energy", lambda: weight.pow(2).sum((2, 3)).t(), self.weight)  # (in, out)
        return out, torch.rsqrt(s.pow(2) @ energy + 1e-8)


class NoiseInjection(nn.Module):
    """image + weight * noise, applied inside StyledConv's fused chain; the module holds the state_dict entry."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # one learned strength per layer


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: Tensor) -> Tensor:
        # the layout chosen here is kept by every conv, blur and per-element op after it
        return self.input.repeat(latent.shape[0], 1, 1, 1).contiguous(memory_format=feature_layout())


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), demodulate: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        out, demod = self.conv.undemodulated(x, style)
        b, _, h, w = out.shape
        if noise is None:
            noise = out.new_empty(b, 1, h, w).normal_()
        # demod * out + strength * noise + bias, leaky ReLU, gain: the gain moves inside (lrelu(g*a) = g*lrelu(a))
        gain = (out.new_ones(1) if demod is None else demod.view(b, -1, 1, 1)) * SQRT2
        out = torch.addcmul(self.activate.bias.view(1, -1, 1, 1) * SQRT2, out, gain)
        return F.leaky_relu_(out.addcmul_(noise, self.noise.weight * SQRT2), 0.2)


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style).add_(self.bias)
        if skip is not None:
            out = out + self.upsample(skip)  # skip architecture: RGB is accumulated across resolutions
        return out


class Generator(nn.Module):
    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), lr_mlp: float = 0.01,
                 channels: Mapping[int, int] | None = None):
        """`channels` (resolution -> width) replaces upstream's table, for small non-upstream test models."""
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.log_size = _log2_size(size)
        self.num_layers = (self.log_size - 2) * 2 + 1  # conv1 + two convs per doubling
        self.n_latent = self.log_size * 2 - 2  # one w per conv plus the ToRGBs' (overlapping) ones
        self.channels = dict(channels) if channels is not None else channel_table(channel_multiplier)

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu")
                           for _ in range(n_mlp)])

        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        # upstream never passes blur_kernel to the ToRGBs, so they always use the default taps
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    def make_noise(self) -> list[Tensor]:
        """Fresh noise maps, one per layer, shaped like the `noises.noise_i` buffers."""
        return [torch.randn_like(getattr(self.noises, f"noise_{i}")) for i in range(self.num_layers)]

    @torch.no_grad()
    def mean_latent(self, n_latent: int) -> Tensor:
        """Mean w over `n_latent` random z, shape (1, style_dim): the usual truncation centre."""
        z = torch.randn(n_latent, self.style_dim, device=self.device, dtype=self.input.input.dtype)
        return self.style(z).mean(0, keepdim=True)

    def get_latent(self, z: Tensor) -> Tensor:
        return self.style(z)

    def forward(self, styles: list[Tensor], return_latents: bool = False, inject_index: int | None = None,
                truncation: float = 1.0, truncation_latent: Tensor | None = None, input_is_latent: bool = False,
                noise: Sequence[Tensor | None] | None = None,
                randomize_noise: bool = True) -> tuple[Tensor, Tensor | None]:
        """Synthesise images from a list of z (or of w / w+ with `input_is_latent`).

        One style gives every layer the same w (or a (B, n_latent, style_dim) w+ is used as is); two styles
        mix at `inject_index` (random in [1, n_latent-1] if None). Truncation (< 1) pulls every w towards
        `truncation_latent`. `noise` is a list of `num_layers` maps (entries may be None = fresh noise);
        without it, fresh noise is drawn, or the stored buffers are used if `randomize_noise` is False.
        """
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = ([None] * self.num_layers if randomize_noise
                     else [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)])
        if len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise maps, got {len(noise)}")
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if len(styles) < 2:
            latent = styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = torch.cat([styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                                styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)], 1)

        out = self.conv1(self.input(latent), latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        # each resolution: upsampling conv, conv, ToRGB; the ToRGB shares its w index with the next conv
        i = 1
        for up_conv, conv, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2],
                                                          noise[2::2], self.to_rgbs):
            out = up_conv(out, latent[:, i], noise=noise1)
            out = conv(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip.contiguous(), (latent if return_latents else None)


# ---------------------------------------------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------------------------------------------


class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + [FusedLeakyReLU]; Sequential indices give keys like `conv2.1.weight`."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            # blur first, then a stride-2 conv without padding (the blur's padding covers it)
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        # with an activation the bias lives in FusedLeakyReLU, not in the conv
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        # upstream accepts blur_kernel here but never passes it on: the layers keep the default taps
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2  # keep unit variance


def stddev_group_size(batch: int, max_group: int = 4) -> int:
    """Largest group size <= min(batch, max_group) that divides the batch (upstream: min(batch, 4))."""
    return next(g for g in range(min(batch, max_group), 0, -1) if batch % g == 0)


class Discriminator(nn.Module):
    def __init__(self, size: int, channel_multiplier: int = 2, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 channels: Mapping[int, int] | None = None):
        """`channels` (resolution -> width) replaces upstream's table, for small non-upstream test models."""
        super().__init__()
        self.size = size
        log_size = _log2_size(size)
        channels = dict(channels) if channels is not None else channel_table(channel_multiplier)
        convs: list[nn.Module] = [ConvLayer(3, channels[size], 1)]  # FromRGB
        in_channel = channels[size]
        for i in range(log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.stddev_group = 4
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Raw logits (B, 1); more negative means "fake"."""
        out = self.convs(x)
        b, c, h, w = out.shape
        # minibatch stddev: samples n, n + b/g, n + 2b/g, ... form a group (upstream's view ordering)
        group = stddev_group_size(b, self.stddev_group)
        f = self.stddev_feat
        stddev = out.view(group, -1, f, c // f, h, w)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)  # (b/g, f, 1, 1)
        stddev = stddev.repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.view(b, -1))


# ---------------------------------------------------------------------------------------------------------------
# State-dict helpers for the loader
# ---------------------------------------------------------------------------------------------------------------

_REGENERABLE = re.compile(r"(?:^|\.)(?:blur|upsample|conv2\.0|skip\.0)\.kernel$|(?:^|\.)noises\.noise_\d+$")


def is_regenerable_buffer(key: str) -> bool:
    """True for non-learned buffers a fresh model recreates: blur/upsample FIR kernels and the fixed noise maps."""
    return _REGENERABLE.search(key) is not None


def _require(state_dict: Mapping[str, Tensor], keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in state_dict]
    if missing:
        raise ValueError(f"not a rosinality StyleGAN2 {what} state_dict: missing {', '.join(missing)}")


def _max_index(state_dict: Mapping[str, Tensor], pattern: str) -> int:
    """Largest N among keys matching `pattern` (one integer group), or -1."""
    rx = re.compile(pattern)
    return max((int(m.group(1)) for k in state_dict if (m := rx.fullmatch(k))), default=-1)


def _multiplier(channels: int, base: int, key: str) -> int:
    if channels % base:
        raise ValueError(f"{key} has {channels} channels, not a multiple of {base}")
    return channels // base


def infer_generator_config(state_dict: Mapping[str, Tensor]) -> dict:
    """{"size", "style_dim", "n_mlp", "channel_multiplier"} from key names and shapes.

    Below 64 px every width is 512 whatever the multiplier, so the default 2 is returned there (the
    architecture, and so the state_dict, is the same for every multiplier).
    """
    _require(state_dict, ["input.input", "conv1.conv.weight", "conv1.conv.modulation.weight",
                          "to_rgb1.conv.weight", "style.1.weight"], "generator")
    n_mlp = _max_index(state_dict, r"style\.(\d+)\.weight")
    style_dim = state_dict["conv1.conv.modulation.weight"].shape[1]
    n_rgbs = _max_index(state_dict, r"to_rgbs\.(\d+)\.conv\.weight") + 1
    size = 2 ** (n_rgbs + 2)
    if size > 1024:
        raise ValueError(f"generator has {n_rgbs} to_rgbs: {size} px is beyond upstream's 1024 px table")
    channel_multiplier = 2
    if size >= 64:  # to_rgbs.3 is the 64 px layer: 256 * channel_multiplier channels
        channel_multiplier = _multiplier(state_dict["to_rgbs.3.conv.weight"].shape[2], 256,
                                         "to_rgbs.3.conv.weight")
    return {"size": size, "style_dim": int(style_dim), "n_mlp": n_mlp, "channel_multiplier": channel_multiplier}


def infer_discriminator_config(state_dict: Mapping[str, Tensor]) -> dict:
    """{"size", "channel_multiplier"} from key names and shapes (multiplier 2 below 64 px, see G)."""
    _require(state_dict, ["convs.0.0.weight", "final_conv.0.weight", "final_linear.0.weight",
                          "final_linear.1.weight"], "discriminator")
    n_blocks = max(_max_index(state_dict, r"convs\.(\d+)\.conv1\.0\.weight"), 0)  # ResBlocks are convs.1..n
    size = 2 ** (n_blocks + 2)
    if size > 1024:
        raise ValueError(f"discriminator has {n_blocks} ResBlocks: {size} px is beyond upstream's 1024 px table")
    channel_multiplier = 2
    if size >= 64:  # FromRGB width is channels[size] = (2**14 / size) * channel_multiplier
        channel_multiplier = _multiplier(state_dict["convs.0.0.weight"].shape[0], 2**14 // size,
                                         "convs.0.0.weight")
    return {"size": size, "channel_multiplier": channel_multiplier}

"""Reduced-precision display frames (`[render] precision`) and the CUDA helpers of the models facade."""

import math

import numpy as np
import pytest
import torch

from installation.engine.config import ConfigError
from installation.models import default_checkpoint, load_gan
from installation.images import to_uint8
from installation.models.gan import PRECISIONS, GAN, cpu_has_fast_bf16, host_precision, resolve_precision
from installation.models.stylegan2 import Generator as SG2Generator
from installation.engine.config import RenderConfig


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Images in [-1, 1]: peak-to-peak 2."""
    return 10 * math.log10(4 / (a - b).square().mean().item())


@pytest.fixture(scope="module")
def embedded() -> GAN:
    return load_gan(default_checkpoint())


def test_bf16_frames_of_the_embedded_model_stay_close_to_fp32(embedded):
    z = torch.randn(1, embedded.latent_dim, generator=torch.Generator().manual_seed(0))
    noise = embedded.make_noise(1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        fp32 = embedded.generate(z, noise, 0.7)
        bf16 = embedded.generate(z, noise, 0.7, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert psnr(bf16, fp32) >= 35  # measured 48 dB; a broken autocast path lands far below
    assert not torch.equal(bf16, fp32)  # it really ran in bf16


def test_bf16_stylegan2_frames_stay_close_to_fp32():
    torch.manual_seed(0)
    g = SG2Generator(32, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16}).eval()
    gan = GAN("stylegan2", g, None, 32, 32, g.mean_latent(256), {})
    w = gan.mapping(torch.randn(2, 32))
    noise = gan.make_noise(2, torch.Generator().manual_seed(2))
    with torch.no_grad():
        fp32, bf16 = gan.synthesize(w, noise), gan.synthesize(w, noise, precision="bf16")
    scale = fp32.abs().max().item()  # an untrained G is not in [-1, 1]: compare relative to its own range
    assert psnr(bf16 / scale, fp32 / scale) >= 30


def test_precision_choices_resolve_per_device():
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("fp16", "cpu") == "fp32"  # fp16 is CUDA-only
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_fast_bf16() else "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", "cpu")
    assert RenderConfig().precision == "fp32"
    for choice in PRECISIONS:
        assert RenderConfig(precision=choice).precision == choice
    with pytest.raises(ConfigError, match="precision must be one of"):
        RenderConfig(precision="half")


def test_frames_leave_as_one_contiguous_uint8_block():
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    images[0, 0, 0, 0] = math.nan
    frames = to_uint8(images)
    assert frames.dtype == np.uint8 and frames.shape == (2, 8, 8, 3) and frames.flags.c_contiguous
    expected = ((images.nan_to_num(-1.0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert np.array_equal(frames, expected.numpy()) and frames[0, 0, 0, 0] == 0


def test_the_first_picture_is_drawn_in_bf16_only_where_the_cpu_has_it():
    fast = cpu_has_fast_bf16()
    assert host_precision("fp32") == "fp32" and host_precision("fp16") == "fp32"
    assert host_precision("bf16") == host_precision("auto") == ("bf16" if fast else "fp32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_frames_copy_through_pinned_memory_and_auto_is_reduced(embedded):
    gan = embedded.to("cuda")
    try:
        assert torch.backends.cudnn.benchmark
        assert resolve_precision("auto", "cuda") in ("bf16", "fp16") and resolve_precision("fp16", "cuda") == "fp16"
        z = torch.randn(2, gan.latent_dim, device="cuda")
        with torch.no_grad():
            fp32 = gan.generate(z, gan.make_noise(2))
        frames = to_uint8(fp32)
        assert frames.flags.c_contiguous and np.array_equal(frames, to_uint8(fp32.cpu()))
        noise = gan.make_noise(2, torch.Generator(device="cuda").manual_seed(0))
        with torch.no_grad():
            exact, low = gan.generate(z, noise), gan.generate(z, noise, precision="auto")
        assert psnr(low, exact) >= 35
    finally:
        gan.to("cpu")

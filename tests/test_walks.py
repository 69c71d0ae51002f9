"""Latent walks: seamless periodic loops driven by time, fixed noise, and the frames they render."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from installation.images import to_uint8
from installation.models.gan import create_stylegan1
from installation.walks import Walk, loop_times, make_walks, render_walk_frames


@pytest.fixture(scope="module")
def gan():
    return create_stylegan1([16, 16, 8], code_dim=32, n_mlp=2)  # 16 px


def test_loop_closes_exactly_and_passes_through_its_keyframes():
    walk = Walk(64, keyframes=5, period=7.3, seed=3)
    assert torch.equal(walk.z_at(0.0), walk.z_at(7.3))
    assert torch.equal(walk.z_at(-7.3), walk.z_at(0.0))
    assert walk.seeds == [15, 16, 17, 18, 19]
    for k, seed in enumerate(walk.seeds):
        expected = torch.randn(1, 64, generator=torch.Generator().manual_seed(seed))[0]
        assert torch.allclose(walk.z_at(k * 7.3 / 5), expected, atol=1e-5)


def test_step_across_the_seam_is_like_every_other_step():
    walk = Walk(64, keyframes=4, period=10.0, seed=1)
    z = walk.batch_z(np.arange(4001) * (10.0 / 4000))  # the last sample is t = period, i.e. the start again
    steps = (z[1:] - z[:-1]).norm(dim=1)
    seam = steps[-1]
    assert seam <= steps[:-1].max() * 1.001
    assert abs(seam / steps[-2] - 1) < 1e-3  # no jump: constant speed through the end of the last segment
    assert steps.min() > 0.5 * steps.max()  # and no stalls anywhere


def test_position_depends_on_time_only_not_on_frame_rate():
    walk = Walk(32, keyframes=3, period=4.0, seed=0)
    at_30 = walk.batch_z(np.arange(120) / 30)
    at_60 = Walk(32, keyframes=3, period=4.0, seed=0).batch_z(np.arange(240) / 60)
    assert torch.equal(at_30, at_60[::2])
    assert torch.equal(walk.z_at(2.5), at_30[75])
    assert not torch.equal(walk.z_at(1.0), Walk(32, keyframes=3, period=4.0, seed=1).z_at(1.0))


def test_explicit_keyframe_seeds_and_bad_arguments():
    walk = Walk(16, keyframes=[7, 2], period=2.0)
    assert walk.seeds == [7, 2]
    assert torch.allclose(walk.z_at(1.0), torch.randn(1, 16, generator=torch.Generator().manual_seed(2))[0])
    with pytest.raises(ValueError):
        Walk(16, keyframes=[], period=2.0)
    with pytest.raises(ValueError):
        Walk(16, keyframes=2, period=0.0)


def test_frames_are_fixed_per_time_differ_per_walk_and_start_on_the_sample_image(gan):
    walks = make_walks(4, gan.latent_dim, keyframes=3, period=2.0, seed=5)
    frames = render_walk_frames(gan, walks, 0.7, truncation=0.8)
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, render_walk_frames(gan, walks, 0.7, truncation=0.8))  # noise is fixed
    assert np.array_equal(frames, render_walk_frames(gan, walks, 2.7, truncation=0.8))  # periodic
    assert len({frame.tobytes() for frame in frames}) == 4
    assert not np.array_equal(frames, render_walk_frames(gan, walks, 0.8, truncation=0.8))  # it moves

    # what `uncanny sample --seeds s` draws for the walk's first keyframe seed
    rng = torch.Generator().manual_seed(walks[2].seeds[0])
    z = torch.randn(1, gan.latent_dim, generator=rng)
    with torch.no_grad():
        sample = to_uint8(gan.generate(z, gan.make_noise(1, rng), 0.8))[0]
    assert np.array_equal(render_walk_frames(gan, walks[2:3], 0.0, truncation=0.8)[0], sample)


def test_loop_export_times_exclude_the_end_point():
    times = loop_times(2.0, 30)
    assert len(times) == 60 and times[0] == 0 and times[-1] < 2.0
    assert np.allclose(np.diff(times), 2.0 / 60)
    uneven = loop_times(1.01, 30)  # 30.3 frames: spacing stretched so the loop still closes
    assert len(uneven) == 30 and np.isclose(uneven[-1] + (uneven[1] - uneven[0]), 1.01)


def test_cuda_frame_batches_come_in_four_sizes():
    from installation.walks import BUCKETS, bucket

    assert BUCKETS == (1, 2, 4, 8)
    assert [bucket(rows) for rows in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 9]  # a 3 x 3 grid stays 9

"""The VAE encode of long sources, as upstream's `tiled_encode`: overlapping windows, each window's
posterior sampled on its own (noise of the whole window's shape, drawn in window order from the job's
generator), each window trimmed to its core. Short sources are one encode, as before. The tiny tree's
VAE with small windows keeps this fast; the 30 s windows themselves are checked against upstream by the
`understand_codes_long` golden (tests/golden/turbo_a)."""

from __future__ import annotations

import pytest
import torch

from acestep_worker.dev import tiny
from acestep_worker.models.vae import ENCODE_CHUNK_SAMPLES, ENCODE_OVERLAP_SAMPLES, encode, encode_windows, load_vae

HOP = 1920
CHUNK, OVERLAP = 12 * HOP, 2 * HOP  # 8-frame cores


@pytest.fixture(scope="module")
def vae(tiny_root):
    return load_vae(tiny_root / tiny.VAE_FOLDER, "cpu", torch.float32)


def _audio(samples: int, batch: int = 1) -> torch.Tensor:
    t = torch.arange(samples, dtype=torch.float32) / 48000
    items = [torch.stack([0.5 * torch.sin(2 * torch.pi * (220 + 40 * b) * t), 0.3 * torch.cos(2 * torch.pi * 97 * t)])
             for b in range(batch)]
    return torch.stack(items)


def _by_hand(vae, audio: torch.Tensor, seed: int | None) -> torch.Tensor:
    """Upstream's rule written out: windows of CHUNK samples around cores of CHUNK - 2 * OVERLAP, each
    encoded alone and sampled with diffusers' own sampler on the generator, then trimmed on each side by
    the samples it was widened by, in frames rounded to nearest (the first window is whole hops here,
    so it measures HOP samples per frame). Near the end a window may be widened by less than a frame
    on its right, which then keeps its whole core and more."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    samples, stride = audio.shape[-1], CHUNK - 2 * OVERLAP
    vae.use_tiling = False
    try:
        parts = []
        for core_start in range(0, samples, stride):
            core_end = min(core_start + stride, samples)
            start, end = max(0, core_start - OVERLAP), min(samples, core_end + OVERLAP)
            posterior = vae.encode(audio[:, :, start:end]).latent_dist
            z = posterior.mean if generator is None else posterior.sample(generator=generator)
            left, right = round((core_start - start) / HOP), round((end - core_end) / HOP)
            parts.append(z[:, :, left:z.shape[-1] - right])
    finally:
        vae.use_tiling = True
    return torch.cat(parts, dim=-1).transpose(1, 2)


def test_upstream_windows_for_a_70_second_source():
    samples = 70 * 48000 + 777
    windows = [(w.start, w.end, w.core_start, w.core_end) for w in encode_windows(samples)]
    assert (ENCODE_CHUNK_SAMPLES, ENCODE_OVERLAP_SAMPLES) == (1_440_000, 96_000)
    assert windows == [(0, 1_344_000, 0, 1_248_000), (1_152_000, 2_592_000, 1_248_000, 2_496_000),
                       (2_400_000, samples, 2_496_000, samples)]


@pytest.mark.parametrize("pad", [True, False])
def test_each_window_draws_its_own_noise_in_order(vae, pad):
    audio = _audio(3 * (CHUNK - 2 * OVERLAP) + 5 * HOP + 700)  # four windows, the last partial
    ours = encode(vae, audio, torch.Generator().manual_seed(7), pad_to_frames=pad, chunk=CHUNK, overlap=OVERLAP)
    padded = torch.nn.functional.pad(audio, (0, (-audio.shape[-1]) % HOP if pad else 0))
    expected = _by_hand(vae, padded, 7)
    assert ours.shape == (1, padded.shape[-1] // HOP, 64)
    assert torch.equal(ours, expected)


def test_a_batch_draws_each_window_for_all_items_at_once(vae):
    audio = _audio(2 * CHUNK + 300, batch=2)  # the third window is widened by 300 samples: no frame trimmed
    ours = encode(vae, audio, torch.Generator().manual_seed(3), pad_to_frames=False, chunk=CHUNK, overlap=OVERLAP)
    assert torch.equal(ours, _by_hand(vae, audio, 3))


def test_the_mean_uses_the_same_windows(vae):
    audio = _audio(2 * CHUNK + 4 * HOP + 11)
    ours = encode(vae, audio, None, pad_to_frames=False, chunk=CHUNK, overlap=OVERLAP)
    assert torch.equal(ours, _by_hand(vae, audio, None))


def test_per_window_draws_differ_from_one_draw_over_the_whole_length(vae):
    """diffusers' tiled encode stitches the windows' moments and samples once: the same mean, other noise."""
    audio = _audio(2 * CHUNK + 4 * HOP)
    vae.tile_sample_min_length, vae.tile_sample_overlap = CHUNK, OVERLAP
    try:
        stitched = vae.encode(audio).latent_dist
        once = stitched.sample(generator=torch.Generator().manual_seed(5)).transpose(1, 2)
    finally:
        vae.tile_sample_min_length, vae.tile_sample_overlap = ENCODE_CHUNK_SAMPLES, ENCODE_OVERLAP_SAMPLES
    ours = encode(vae, audio, torch.Generator().manual_seed(5), chunk=CHUNK, overlap=OVERLAP)
    mean = encode(vae, audio, None, chunk=CHUNK, overlap=OVERLAP)
    assert torch.equal(mean, stitched.mean.transpose(1, 2))
    assert ours.shape == once.shape and not torch.allclose(ours, once, atol=1e-3)
    # even the first window's frames differ: its noise has the window's shape, not the whole length's
    assert not torch.allclose(ours[:, :4], once[:, :4], atol=1e-3)


@pytest.mark.parametrize("samples", [CHUNK, CHUNK - 700])
def test_up_to_one_chunk_is_one_encode_and_one_draw(vae, samples):
    audio = _audio(samples)
    ours = encode(vae, audio, torch.Generator().manual_seed(9), pad_to_frames=False, chunk=CHUNK, overlap=OVERLAP)
    vae.use_tiling = False
    try:
        expected = vae.encode(audio).latent_dist.sample(generator=torch.Generator().manual_seed(9))
    finally:
        vae.use_tiling = True
    assert torch.equal(ours, expected.transpose(1, 2))


def test_a_chunk_no_wider_than_its_context_is_refused():
    with pytest.raises(ValueError):
        encode_windows(10 * HOP, chunk=4 * HOP, overlap=2 * HOP)

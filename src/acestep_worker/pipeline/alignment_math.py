"""Upstream's lyric-alignment arithmetic on attention maps: denoising, DTW and the alignment score.

Inputs are attention maps of chosen heads over the pure lyric tokens, [heads, tokens, frames]
(`models/dit/attention_capture.py` reads them), on the device that made them: upstream moves them to
the CPU first; the arithmetic is the same, and on a GPU the sorts of a long song's maps take
milliseconds instead of seconds (the CPU result is the one the goldens pin). Two preprocessings, as
upstream's two classes do:

* for timestamps (`MusicStampsAligner`): bidirectional consensus (softmax over frames times softmax
  over tokens), row then column median suppression, squaring, one z-score over everything, a
  median filter, the mean over heads;
* for the score (`MusicLyricScorer`): the mean over heads, a median filter, min-max to [0, 1]; the
  path follows its square.

The DTW is upstream's (minimum cumulative cost of -matrix, ties broken as it breaks them, cost kept
in float32), computed one anti-diagonal at a time with numpy instead of a numba-compiled double loop
(numba is not a dependency here).
The score is coverage^2 x monotonicity^2 x path confidence, clipped to [0, 1] and rounded to 4
places (acestep/core/scoring/dit_score.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of the last axis, reflect-padded (width 1: unchanged)."""
    pad = width // 2
    if x.shape[-1] <= pad or width <= 1:
        return x
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    x = F.pad(x, (pad, pad, 0, 0), mode="reflect")
    result = x.unfold(-1, width, 1).sort()[0][..., pad]
    return result.squeeze(0) if result.ndim > 2 and squeeze else result


def _median(x: torch.Tensor, dim: int) -> torch.Tensor:
    """torch.quantile(x, 0.5, dim, keepdim=True) (linear interpolation between the two middle values),
    by selection instead of a sort and without quantile's size limit."""
    n = x.shape[dim]
    lo, hi = (n - 1) // 2, n // 2
    low = x.kthvalue(lo + 1, dim=dim, keepdim=True).values
    high = low if hi == lo else x.kthvalue(hi + 1, dim=dim, keepdim=True).values
    weight = (n - 1) * 0.5 - lo
    return torch.lerp(low, high, torch.tensor(weight, dtype=x.dtype, device=x.device))


def timestamp_matrix(weights: torch.Tensor, violence: float = 2.0, medfilt_width: int = 1) -> np.ndarray:
    """[heads, tokens, frames] attention -> the [tokens, frames] matrix the timestamps' path follows."""
    weights = weights.float()
    processed = F.softmax(weights, dim=-1) * F.softmax(weights, dim=-2)
    processed = torch.relu(processed - violence * _median(processed, -1))
    processed = torch.relu(processed - violence * _median(processed, -2))
    processed = processed ** 2
    std, mean = torch.std_mean(processed, unbiased=False)
    processed = median_filter((processed - mean) / (std + 1e-9), medfilt_width)
    return processed.mean(dim=0).cpu().numpy()


def energy_matrix(weights: torch.Tensor, medfilt_width: int = 1) -> np.ndarray:
    """[heads, tokens, frames] attention -> the score's [tokens, frames] energy in [0, 1] (float32)."""
    energy = median_filter(weights.float().mean(dim=0), medfilt_width).cpu().numpy()
    low, high = energy.min(), energy.max()
    if high - low > 1e-9:
        return (energy - low) / (high - low)
    return np.zeros_like(energy)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's DTW over an [N, M] cost: the path as (row indices, column indices), int32.

    Cell (i, j) takes the cheapest of its diagonal, upper and left neighbours (strictly cheapest
    diagonal first, then strictly cheapest upper, else left), adds its cost in the cost's precision
    and stores the sum in float32. Cells of one anti-diagonal depend only on the two before it, so
    the tables are kept skewed (row d holds anti-diagonal d, indexed by i) and each anti-diagonal is
    a handful of slice operations.
    """
    n, m = cost.shape
    acc = np.full((n + m + 1, n + 1), np.inf, dtype=np.float32)  # acc[i + j, i]: cell (i, j)
    trace = np.full((n + m + 1, n + 1), -1, dtype=np.int8)
    acc[0, 0] = 0
    flipped = cost[:, ::-1]  # anti-diagonal k of cost is diagonal m - 1 - k of this
    for d in range(2, n + m + 1):
        lo, hi = max(1, d - m), min(n, d - 1)
        c0, c1, c2 = acc[d - 2, lo - 1:hi], acc[d - 1, lo - 1:hi], acc[d - 1, lo:hi + 1]
        pick0 = (c0 < c1) & (c0 < c2)
        pick1 = ~pick0 & (c1 < c0) & (c1 < c2)
        best = np.where(pick0, c0, np.where(pick1, c1, c2))
        acc[d, lo:hi + 1] = (np.diagonal(flipped, m + 1 - d) + best).astype(np.float32)
        trace[d, lo:hi + 1] = np.where(pick0, 0, np.where(pick1, 1, 2))
    return _backtrace(trace, n, m)


def _backtrace(trace: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Walk back from (n, m): 0 diagonal, 1 up, 2 left; the top row goes left, the left column up."""
    rows, cols = [], []
    i, j = n, m
    while i > 0 or j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        step = 1 if j == 0 else 2 if i == 0 else trace[i + j, i]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1], dtype=np.int32), np.array(cols[::-1], dtype=np.int32)


def lyric_token_mask(texts: list[str]) -> np.ndarray:
    """1 for sung tokens, 0 for structure tags: a token holding "[" opens a tag, one holding "]" closes
    it, both included (upstream's rule on each token decoded alone)."""
    mask = np.ones(len(texts), dtype=np.int32)
    inside = False
    for index, text in enumerate(texts):
        if "[" in text:
            inside = True
        if inside:
            mask[index] = 0
        if "]" in text:
            inside = False
            mask[index] = 0
    return mask


def alignment_score(energy: np.ndarray, path_rows: np.ndarray, path_cols: np.ndarray, sung: np.ndarray,
                    time_weight: float = 0.01, overlap_frames: float = 9.0) -> float:
    """Upstream's lyric-alignment score in [0, 1] from the energy, the DTW path and the sung-token mask."""
    e = torch.from_numpy(np.asarray(energy)).to(torch.float64)
    is_sung = torch.from_numpy(np.asarray(sung)).long() == 1
    rows, cols = e.shape
    total_sung = is_sung.sum().double()
    covered = (is_sung & (e.max(dim=1).values > 0.1)).sum().double()
    coverage = covered / total_sung if total_sung > 0 else torch.tensor(1.0, dtype=torch.float64)

    weights = torch.where(e > time_weight, e, torch.zeros_like(e))
    sum_w = weights.sum(dim=1)
    sum_t = (weights * torch.arange(cols, dtype=torch.float64)).sum(dim=1)
    centroids = torch.full((rows,), -1.0, dtype=torch.float64)
    valid = sum_w > 1e-9
    centroids[valid] = sum_t[valid] / sum_w[valid]
    sung_centroids = centroids[is_sung & (centroids >= 0)]
    if sung_centroids.shape[0] > 1:
        forward = (sung_centroids[1:] >= sung_centroids[:-1] - overlap_frames).double().sum()
        monotonicity = forward / torch.tensor(sung_centroids.shape[0] - 1, dtype=torch.float64)
    else:
        monotonicity = torch.tensor(1.0, dtype=torch.float64)

    if len(path_rows) > 0:
        confidence = e[torch.from_numpy(path_rows).long(), torch.from_numpy(path_cols).long()].sum() / len(path_rows)
    else:
        confidence = torch.tensor(0.0, dtype=torch.float64)
    score = (coverage.item() ** 2) * (monotonicity.item() ** 2) * confidence.item()
    return round(float(np.clip(score, 0.0, 1.0)), 4)

"""Synthetic embeddings for the benchmarks and tests (shared, so both use the same data)."""

from __future__ import annotations

import numpy as np

__all__ = ["clustered", "gaussian"]


def clustered(
    n: int, d: int = 128, *, n_clips: int = 300, n_views: int = 8, seed: int = 0
) -> np.ndarray:
    """Video-like embeddings: clips around view centres, frames along a slow random walk
    plus per-frame noise, L2-normalised. Highly redundant, like echo frames.

    Returns ndarray of shape (n, d), float32.
    """
    rng = np.random.default_rng(seed)
    views = rng.normal(size=(n_views, d))
    views /= np.linalg.norm(views, axis=1, keepdims=True)
    clip_of = np.sort(rng.integers(0, n_clips, size=n))
    out = np.empty((n, d), dtype=np.float32)
    for c in range(n_clips):
        idx = np.flatnonzero(clip_of == c)
        if idx.size == 0:
            continue
        start = views[rng.integers(n_views)] + 0.35 * rng.normal(size=d) / np.sqrt(d) * 4
        walk = np.cumsum(0.02 * rng.normal(size=(idx.size, d)), axis=0)
        frames = start + walk + 0.05 * rng.normal(size=(idx.size, d))
        # normalised per clip: no full-size temporary, so peak RSS is the array itself
        out[idx] = frames / np.linalg.norm(frames, axis=1, keepdims=True)
    return out


def gaussian(n: int, d: int = 128, *, seed: int = 0) -> np.ndarray:
    """Isotropic Gaussian embeddings, where angle bounds cannot prune. (n, d) float32."""
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)

"""The ``pixels`` baseline: block-average the 64×64 image down, then PCA.

No training loop and no torch: the fastest way to try ``enrich``. PCA is fitted with one
SVD of the (≤ 5,000 × 256) centred training matrix; the transform is one matrix product
per batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from enrich._atomic import atomic_path
from enrich.embed.base import Embedder
from enrich.errors import EnrichError

__all__ = ["PixelsEmbedder", "downsample"]


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Block means: ``(n, 64, 64)`` → ``(n, size * size)`` float32; ``size`` divides 64.

    >>> downsample(np.ones((2, 64, 64), np.float32), 16).shape
    (2, 256)
    """
    n, h, w = images.shape
    if h % size or w % size:
        raise EnrichError(f"size={size}: expected a divisor of the image side {h}")
    f = h // size
    blocks = images.reshape(n, size, f, size, w // size)
    return blocks.mean(axis=(2, 4), dtype=np.float32).reshape(n, size * size)


class PixelsEmbedder(Embedder):
    """Downsampled pixels projected on their first principal components.

    Parameters
    ----------
    latent_dim : int
        Number of principal components kept (capped by the number of training images
        and of pixels; the actual length is ``dim`` after ``fit``).
    size : int
        Side of the downsampled image (a divisor of 64).
    seed : int
        Recorded with the model (the training subset is drawn with it).

    Examples
    --------
    >>> X = np.random.default_rng(0).random((50, 64, 64), dtype=np.float32)
    >>> PixelsEmbedder(latent_dim=8).fit(X).transform(X[:3]).shape
    (3, 8)
    """

    name = "pixels"

    def __init__(self, *, latent_dim: int = 128, size: int = 16, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.latent_dim = latent_dim
        self.size = size
        self.mean_: np.ndarray | None = None  # (size², )
        self.components_: np.ndarray | None = None  # (dim, size²)

    def params(self) -> dict[str, Any]:
        return {"latent_dim": self.latent_dim, "size": self.size, "seed": self.seed}

    @property
    def dim(self) -> int:
        if self.components_ is None:
            return int(min(self.latent_dim, self.size * self.size))
        return int(self.components_.shape[0])

    def _fit(self, images: np.ndarray) -> None:
        if self.latent_dim < 1:
            raise EnrichError(f"latent_dim={self.latent_dim}: expected a positive integer")
        X = downsample(images, self.size).astype(np.float64)  # (n, size²)
        mean = X.mean(axis=0)
        _, s, vt = np.linalg.svd(X - mean, full_matrices=False)  # vt: (min(n, size²), size²)
        k = int(min(self.latent_dim, vt.shape[0]))
        comps = vt[:k]
        # A sign convention, so that the same data gives the same vectors on any BLAS.
        signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        signs[signs == 0] = 1.0
        self.mean_ = mean.astype(np.float32)
        self.components_ = (comps * signs[:, None]).astype(np.float32)
        total = float((s**2).sum())
        self.fit_info_ = {
            "n_train": len(images),
            "explained_variance_ratio": float((s[:k] ** 2).sum() / total) if total > 0 else 0.0,
        }

    def _transform(self, images: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.components_ is not None
        X = downsample(images, self.size)  # (B, size²)
        return (X - self.mean_) @ self.components_.T  # (B, dim)

    def _save_weights(self, folder: Path) -> None:
        assert self.mean_ is not None and self.components_ is not None
        with atomic_path(folder / "pca.npz", suffix=".npz") as tmp:
            np.savez(tmp, mean=self.mean_, components=self.components_)

    def _load_weights(self, folder: Path) -> None:
        path = folder / "pca.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                self.mean_ = np.asarray(data["mean"], np.float32)
                self.components_ = np.asarray(data["components"], np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise EnrichError(f"{path}: cannot read the pixels model ({exc})") from None

"""The interface every embedder shares, and the helpers around it.

An embedder turns preprocessed images, ``(B, 64, 64)`` float32 in [0, 1], into vectors
``(B, d)`` float32. Like a scikit-learn estimator, ``__init__`` only stores its options,
``fit(images)`` learns and returns ``self``. ``transform_batches`` streams: it never holds
more than one batch of images, and writes the vectors into one preallocated ``(N, d)``
array (or a memmap the caller passes), so a million images fit in 0.5 GB.

A fitted embedder is saved in a folder (``WS/model/``): ``config.json`` (the embedder's
name, options, seed and the fingerprint of the training data) plus its own weights file.
``config.json`` is written last, so a folder with one holds a complete model.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from enrich._atomic import write_json
from enrich.errors import EnrichError

__all__ = [
    "CONFIG_FILE",
    "Embedder",
    "check_images",
    "data_fingerprint",
    "iter_batches",
    "read_config",
]

CONFIG_FILE = "config.json"
IMAGE_SHAPE = (64, 64)


def check_images(images: object, *, name: str = "images") -> np.ndarray:
    """Validate a stack of preprocessed images; return it as float32 C-contiguous.

    Parameters
    ----------
    images : array-like of shape (n_images, 64, 64)
        Values in [0, 1].

    >>> check_images(np.zeros((2, 64, 64))).dtype
    dtype('float32')
    """
    arr = np.asarray(images)
    if arr.ndim != 3 or arr.shape[1:] != IMAGE_SHAPE:
        raise EnrichError(f"{name} have shape {arr.shape}: expected (n_images, 64, 64)")
    if not np.issubdtype(arr.dtype, np.number):
        raise EnrichError(f"{name} have dtype {arr.dtype}: expected numbers in [0, 1]")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise EnrichError(f"{name} contain NaN or inf: expected numbers in [0, 1]")
    return arr


def data_fingerprint(images: np.ndarray, ids: Iterable[str] | None = None) -> str:
    """A short content hash of the training images (and their ids), recorded with a model.

    >>> data_fingerprint(np.zeros((1, 64, 64), np.float32))[:7]
    'sha256:'
    """
    h = hashlib.sha256()
    arr = np.ascontiguousarray(images, dtype=np.float32)
    h.update(str(arr.shape).encode())
    h.update(arr.reshape(-1).view(np.uint8).data)
    if ids is not None:
        h.update("\0".join(str(i) for i in ids).encode())
    return "sha256:" + h.hexdigest()[:16]


def iter_batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive slices ``(≤batch_size, 64, 64)`` of an in-memory stack (views, no copies)."""
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The saved ``config.json`` of a model folder, or None when there is no complete model."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EnrichError(f"{path}: cannot read the model config ({exc})") from None
    if not isinstance(config, dict) or "embedder" not in config:
        raise EnrichError(f"{path}: not an enrich model config (no 'embedder' key)")
    return config


class Embedder:
    """Base class: images ``(n, 64, 64)`` float32 in [0, 1] → vectors ``(n, d)`` float32.

    Subclasses set ``name``, implement ``_fit``, ``_transform`` (one batch),
    ``_save_weights`` and ``_load_weights``, and list their options in ``params()``.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self.fit_info_: dict[str, Any] = {}
        self.data_fingerprint_: str | None = None

    # -- options ---------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The options that define the model (they decide whether a saved model is reusable)."""
        return {"seed": self.seed}

    @property
    def dim(self) -> int:
        """Length of the output vectors."""
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        return self.data_fingerprint_ is not None

    # -- learning ----------------------------------------------------------------------------
    def fit(self, images: np.ndarray, *, ids: Iterable[str] | None = None) -> Embedder:
        """Learn from ``images`` of shape (n_images, 64, 64); returns ``self``.

        ``ids`` (optional) go into the data fingerprint saved with the model.
        """
        images = check_images(images)
        if len(images) < 2:
            raise EnrichError(f"{self.name}: {len(images)} training image(s); need at least 2")
        self._fit(images)
        self.data_fingerprint_ = data_fingerprint(images, ids)
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Vectors ``(n, d)`` float32 for ``images`` of shape (n, 64, 64)."""
        self._check_fitted()
        images = check_images(images)
        if len(images) == 0:
            return np.empty((0, self.dim), np.float32)
        return np.asarray(self._transform(images), dtype=np.float32)

    def transform_batches(
        self,
        batches: Iterable[np.ndarray],
        *,
        n: int | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Embed a stream of image batches, holding one batch of images at a time.

        Parameters
        ----------
        batches : iterable of ndarray of shape (B, 64, 64)
            Batches, in order; sizes may vary.
        n : int, optional
            Total number of images, when known: the output is preallocated once.
        out : ndarray of shape (N, d), optional
            Where to write (e.g. an ``np.memmap``); implies ``n = len(out)``.

        Returns
        -------
        ndarray of shape (n_seen, d)
            float32; a view of ``out`` (or of the preallocated array) when given, trimmed to
            the number of images actually seen.
        """
        self._check_fitted()
        d = self.dim
        if out is not None:
            if out.ndim != 2 or out.shape[1] != d:
                raise EnrichError(f"out has shape {out.shape}: expected (N, {d})")
            buf: np.ndarray | None = out
        elif n is not None:
            buf = np.empty((n, d), np.float32)
        else:
            buf = None
        parts: list[np.ndarray] = []  # only when the total is unknown
        seen = 0
        for batch in batches:
            vecs = self.transform(batch)  # (B, d)
            if buf is not None:
                if seen + len(vecs) > len(buf):
                    raise EnrichError(f"more than n={len(buf)} images in the stream")
                buf[seen : seen + len(vecs)] = vecs
            else:
                parts.append(vecs)
            seen += len(vecs)
        if buf is not None:
            return buf[:seen]
        return np.concatenate(parts) if parts else np.empty((0, d), np.float32)

    # -- persistence -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What ``save`` writes to ``config.json``."""
        from enrich import __version__

        return {
            "embedder": self.name,
            "params": self.params(),
            "dim": self.dim,
            "data_fingerprint": self.data_fingerprint_,
            "fit": self.fit_info_,
            "enrich_version": __version__,
        }

    def save(self, folder: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> Path:
        """Write the weights, then ``config.json`` (last, so a config means a complete model).

        ``extra`` adds keys to ``config.json`` (the pipeline records its preprocessing there).
        """
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).unlink(missing_ok=True)  # the old config no longer describes it
        self._save_weights(folder)
        write_json(folder / CONFIG_FILE, {**(extra or {}), **self.config()})
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str], **options: Any) -> Embedder:
        """Read a model saved with :meth:`save` (of this class, or any class via the registry).

        ``options`` set what is not part of the model's identity (e.g. ``device="cpu"``);
        those this embedder does not take are ignored, so one call loads any embedder.
        """
        config = read_config(folder)
        if config is None:
            raise EnrichError(f"{folder}: no saved model ({CONFIG_FILE} is missing)")
        if cls.name and config["embedder"] != cls.name:
            raise EnrichError(
                f"{folder}: holds a {config['embedder']!r} model, expected {cls.name!r}"
            )
        if not cls.name:
            from enrich.embed.registry import get_embedder_class

            return get_embedder_class(config["embedder"]).load(folder, **options)
        accepted = inspect.signature(cls.__init__).parameters
        runtime = {k: v for k, v in options.items() if k in accepted}
        model = cls(**{**config["params"], **runtime})
        model.fit_info_ = dict(config.get("fit") or {})
        model._load_weights(Path(folder))
        model.data_fingerprint_ = config.get("data_fingerprint") or "unknown"
        return model

    # -- for subclasses --------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise EnrichError(f"the {self.name} embedder is not fitted: call fit(images) first")

    def _fit(self, images: np.ndarray) -> None:
        raise NotImplementedError

    def _transform(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _save_weights(self, folder: Path) -> None:
        raise NotImplementedError

    def _load_weights(self, folder: Path) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

"""Helpers for tests that kill a Dask worker mid-shard (shared by the distributed tests).

Workers cannot import the tests folder, so a test registers this module with
``cloudpickle.register_pickle_by_value`` (:func:`pixels_setup` does) and its objects travel
by value.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np


class DieOnce:
    """A preprocess that kills its worker process at its `at`-th image, once (marker file)."""

    def __init__(self, inner: object, marker: str, at: int) -> None:
        self.inner, self.marker, self.at, self.seen = inner, marker, at, 0

    def __getattr__(self, name: str) -> object:
        if name in ("inner", "marker", "at", "seen"):  # not set yet while unpickling
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        self.seen += 1
        if self.seen == self.at and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(img)  # type: ignore[operator]


def pixels_setup(folder: Path, model_dir: Path) -> tuple[Any, Any, Any, list[str], np.ndarray, Any]:
    """Discover `folder`, read its images, fit and save a small pixels model in `model_dir`.

    Returns ``(rows, preprocess, read_options, ids, images, model)``.
    """
    import cloudpickle

    from enrich import io
    from enrich.embed.api import read_images
    from enrich.embed.pixels import PixelsEmbedder
    from enrich.preprocess import Preprocess

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    found = io.discover([str(folder)])
    rows = found.manifest.reset_index(drop=True)
    pp = Preprocess()
    ids, images = read_images(rows, pp, read_options=found.options, skipped=[])
    model = PixelsEmbedder(latent_dim=8).fit(images, ids=ids)
    model.save(model_dir)
    return rows, pp, found.options, ids, images, model

"""Embedders: preprocessed 64×64 images → vectors.

- ``betavae``: the β-VAE of Burgess et al. (2018) that the ENRICH paper used; the
  embedding is the 128-d latent mean (needs torch: ``pip install 'enrich-imaging[torch]'``).
- ``pixels``: downsampled pixels + PCA, a fast baseline with no training loop.

All share :class:`~enrich.embed.base.Embedder`: ``fit(images)``, ``transform(images)``,
``transform_batches(stream, n=N)``, ``save(folder)``, ``Embedder.load(folder)``.
:func:`~enrich.embed.api.embed_sources` runs the whole pipeline into a workspace.

>>> from enrich.embed import EMBEDDERS
>>> sorted(EMBEDDERS)
['betavae', 'pixels']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from enrich.embed.base import Embedder
from enrich.embed.pixels import PixelsEmbedder
from enrich.embed.registry import EMBEDDERS, get_embedder_class, make_embedder
from enrich.embed.vae import BetaVAEEmbedder

if TYPE_CHECKING:
    from enrich.embed.api import EmbedSummary, embed_sources

__all__ = [
    "EMBEDDERS",
    "BetaVAEEmbedder",
    "EmbedSummary",
    "Embedder",
    "PixelsEmbedder",
    "embed_sources",
    "get_embedder_class",
    "load_embedder",
    "make_embedder",
]


def load_embedder(folder: Any, **options: Any) -> Embedder:
    """Load whichever embedder was saved in `folder` (e.g. ``WS/model``)."""
    return Embedder.load(folder, **options)


def __getattr__(name: str) -> Any:
    if name in ("embed_sources", "EmbedSummary"):
        from enrich.embed import api

        return getattr(api, name)
    raise AttributeError(f"module 'enrich.embed' has no attribute {name!r}")

"""Embedders by name: the CLI's ``--embedder`` choices come from :data:`EMBEDDERS`."""

from __future__ import annotations

from typing import Any

from enrich.embed.base import Embedder
from enrich.embed.pixels import PixelsEmbedder
from enrich.embed.vae import BetaVAEEmbedder
from enrich.errors import EnrichError

__all__ = ["EMBEDDERS", "get_embedder_class", "make_embedder"]

EMBEDDERS: dict[str, type[Embedder]] = {
    "betavae": BetaVAEEmbedder,
    "pixels": PixelsEmbedder,
}


def get_embedder_class(name: str) -> type[Embedder]:
    """The class registered as `name`; unknown names are an error listing the choices."""
    try:
        return EMBEDDERS[name]
    except KeyError:
        raise EnrichError(
            f"embedder {name!r} is unknown; expected one of {', '.join(sorted(EMBEDDERS))}"
        ) from None


def make_embedder(name: str, **options: Any) -> Embedder:
    """An unfitted embedder, e.g. ``make_embedder("pixels", latent_dim=32)``.

    >>> make_embedder("pixels", latent_dim=4)
    PixelsEmbedder(latent_dim=4, size=16, seed=0)
    """
    return get_embedder_class(name)(**options)

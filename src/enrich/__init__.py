"""enrich: which medical images to label first (ENRICH, Chinn et al., JAMIA 2023).

>>> import numpy as np, enrich
>>> X = np.random.default_rng(0).normal(size=(100, 8))
>>> result = enrich.rank(X, initial=5, seed=0)
>>> len(result.order)
100
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "SELECTORS",
    "Embeddings",
    "EnrichError",
    "EnrichSelector",
    "RandomSelector",
    "RankResult",
    "RedundancyResult",
    "__version__",
    "load_embeddings",
    "rank",
    "redundancy",
    "save_embeddings",
]

# Lazy attributes keep `import enrich` (and so `enrich --help`) cheap.
_LAZY = {
    "rank": "enrich.select",
    "RankResult": "enrich.select",
    "EnrichSelector": "enrich.select",
    "RandomSelector": "enrich.select",
    "SELECTORS": "enrich.select",
    "redundancy": "enrich.redundancy",
    "RedundancyResult": "enrich.redundancy",
    "Embeddings": "enrich.embeddings",
    "load_embeddings": "enrich.embeddings",
    "save_embeddings": "enrich.embeddings",
    "EnrichError": "enrich.errors",
}

if TYPE_CHECKING:
    from enrich.embeddings import Embeddings, load_embeddings, save_embeddings
    from enrich.errors import EnrichError
    from enrich.redundancy import RedundancyResult, redundancy
    from enrich.select import SELECTORS, EnrichSelector, RandomSelector, RankResult, rank


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'enrich' has no attribute {name!r}")

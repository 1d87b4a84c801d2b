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

        module = importlib.import_module(_LAZY[name])
        # `enrich.redundancy` is the (callable) module, so that `enrich.redundancy(X)` and
        # `enrich.redundancy.plot_cdf(...)` both work whatever was imported first.
        value = module if name == "redundancy" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'enrich' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The public names (most are lazy, so not yet in globals()) and the module's dunders.
    return sorted(set(__all__) | {k for k in globals() if k.startswith("__")})

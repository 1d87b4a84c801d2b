"""Evaluation: does labeling only the ENRICH subset lose accuracy? (the paper's protocol).

- :func:`run_benchmark` (``protocol.py``): splits, growing subsets, trained models, results;
- ``config.py``: the YAML protocol config (packaged: ``quick``, ``paper``);
- ``splits.py``: train/validation/test by patient, clip or subject;
- ``tasks.py``: MONAI ResNet / U-Net training and scoring; ``metrics.py``: AUC, Jaccard;
- ``stats.py``: statistics over the results table (Mann-Whitney U, z-pooling, coverage).

Submodules import pandas and torch; ``import enrich.evaluate`` alone does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "BenchmarkData",
    "BenchmarkRun",
    "ProtocolConfig",
    "auc",
    "load_config",
    "macro_auc",
    "mean_jaccard",
    "run_benchmark",
    "split_manifest",
]

_LAZY = {
    "BenchmarkData": "enrich.evaluate.data",
    "BenchmarkRun": "enrich.evaluate.protocol",
    "run_benchmark": "enrich.evaluate.protocol",
    "ProtocolConfig": "enrich.evaluate.config",
    "load_config": "enrich.evaluate.config",
    "auc": "enrich.evaluate.metrics",
    "macro_auc": "enrich.evaluate.metrics",
    "mean_jaccard": "enrich.evaluate.metrics",
    "split_manifest": "enrich.evaluate.splits",
}

if TYPE_CHECKING:
    from enrich.evaluate.config import ProtocolConfig, load_config
    from enrich.evaluate.data import BenchmarkData
    from enrich.evaluate.metrics import auc, macro_auc, mean_jaccard
    from enrich.evaluate.protocol import BenchmarkRun, run_benchmark
    from enrich.evaluate.splits import split_manifest


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'enrich.evaluate' has no attribute {name!r}")

"""The report of a benchmark run: statistics → figures → one self-contained HTML file.

- :func:`write_report` (``report/html.py``): the HTML report of a run folder;
- ``report/plots.py``: the paper's Figs. 1, 3, 4, 5 as ``f(table, ax=None) -> Figure``;
- ``report/grid.py``: image grids, ENRICH's first picks vs random, near-duplicate groups.

Submodules import matplotlib and pandas; ``import enrich.report`` alone does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["write_report"]

if TYPE_CHECKING:
    from enrich.report.html import write_report


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from enrich.report.html import write_report

        return write_report
    raise AttributeError(f"module 'enrich.report' has no attribute {name!r}")

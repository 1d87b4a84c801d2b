"""Leinster-Cobbold similarity-sensitive diversity (issue 10, section 3): against greylock,
the ENRICH authors' package, and against values worked out by hand from the definition."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from enrich.evaluate import diversity as D
from enrich.evaluate.diversity import similarity_diversity

ORDERS = [0.0, 0.5, 1.0, 2.0, math.inf]


def _greylock(X: np.ndarray, q: float) -> float:
    greylock = pytest.importorskip("greylock")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    Xn = np.divide(X, norms, out=np.zeros_like(X, dtype=float), where=norms > 0)
    Z = np.clip(Xn @ Xn.T, 0.0, 1.0)
    np.fill_diagonal(Z, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # greylock's own numpy `where` warning
        mc = greylock.Metacommunity(np.ones((len(X), 1)), similarity=Z)
        return float(np.ravel(mc.metacommunity_diversity(viewpoint=q, measure="gamma"))[0])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("q", ORDERS)
def test_matches_greylock(seed: int, q: float) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    # a few clusters, so that similarities spread over [0, 1] and some are clipped
    centres = rng.normal(size=(3, 5))
    X = centres[rng.integers(0, 3, n)] + 0.7 * rng.normal(size=(n, 5))
    assert similarity_diversity(X, q=q) == pytest.approx(_greylock(X, q), rel=1e-5)


def test_blocks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.random.default_rng(7).normal(size=(50, 4))
    whole = similarity_diversity(X, q=2)
    monkeypatch.setattr(D, "_TILE", 50 * 3)  # blocks of 3 rows
    assert similarity_diversity(X, q=2) == pytest.approx(whole, rel=1e-6)


def test_hand_computed_values() -> None:
    # Two orthogonal groups: {a, a} and {b}. Z = [[1,1,0],[1,1,0],[0,0,1]],
    # Zp = (2/3, 2/3, 1/3). D_0 = mean(1 / Zp) = (1.5 + 1.5 + 3) / 3 = 2;
    # D_1 = exp(-(2 ln(2/3) + ln(1/3)) / 3) = 3 / 4^(1/3); D_2 = 1 / mean(Zp) = 9/5; D_inf = 3/2.
    X = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert similarity_diversity(X, q=0) == pytest.approx(2.0)
    assert similarity_diversity(X, q=1) == pytest.approx(3 / 4 ** (1 / 3))
    assert similarity_diversity(X, q=2) == pytest.approx(9 / 5)
    assert similarity_diversity(X, q=math.inf) == pytest.approx(1.5)
    # Anti-correlated images are as unrelated as orthogonal ones (clipped at 0).
    assert similarity_diversity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    # A zero vector is similar only to itself.
    assert similarity_diversity(np.array([[0.0, 0.0], [1.0, 0.0]])) == pytest.approx(2.0)


def test_more_diverse_subset_scores_higher() -> None:
    rng = np.random.default_rng(0)
    tight = rng.normal(size=(1, 8)) + 0.05 * rng.normal(size=(20, 8))
    spread = rng.normal(size=(20, 8))
    assert similarity_diversity(spread) > 3 * similarity_diversity(tight)
    # D_q never increases with q, and lies in [1, n]
    values = [similarity_diversity(spread, q=q) for q in ORDERS]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(values))
    assert 1 - 1e-9 <= values[-1] and values[0] <= 20 + 1e-9


@pytest.mark.parametrize(
    ("X", "q", "match"),
    [
        (np.zeros((0, 3)), 1.0, "expected"),
        (np.ones(3), 1.0, "expected"),
        (np.array([[np.nan, 1.0]]), 1.0, "NaN"),
        (np.ones((2, 2)), -1.0, "q=-1"),
        (np.ones((2, 2)), float("nan"), "q=nan"),
    ],
)
def test_bad_input(X: np.ndarray, q: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        similarity_diversity(X, q=q)


def test_report_shows_each_strategys_diversity_next_to_coverage(tmp_path) -> None:
    import re

    import pandas as pd

    from enrich.report.html import write_report
    from enrich.workspace import Workspace
    from test_report import make_results, make_run, make_subsets, make_workspace

    ws, manifest = make_workspace(tmp_path)
    subsets = make_subsets(manifest)
    # a third strategy on random's subsets, with better scores
    third = subsets.loc[subsets["strategy"] == "random"].assign(strategy="typiclust")
    results = make_results()
    extra = results.loc[results["strategy"] == "random"].assign(strategy="typiclust")
    extra["value"] += 0.01
    results = pd.concat([results, extra], ignore_index=True)
    run = make_run(
        ws / "runs",
        results,
        subsets=pd.concat([subsets, third], ignore_index=True),
        name="div",
        meta={"workspace": str(ws)},
    )
    html = write_report(run, images=False).read_text(encoding="utf-8")
    assert 'id="diversity-note"' in html and "Leinster and Cobbold" in html
    note = re.search(r"id=\"diversity-note\">(.*?)</p>", html, re.S).group(1)
    assert "Spearman" in note and "ρ =" in note, note
    emb = Workspace(ws).embeddings()
    for name in ("enrich", "random", "typiclust"):
        want = []
        for size in (12, 24, 36):
            per_init = [
                similarity_diversity(emb.vectors[emb.index_of(g["id"].to_numpy())])
                for _, g in subsets.loc[
                    (subsets["strategy"] == ("random" if name == "typiclust" else name))
                    & (subsets["size"] == size)
                ].groupby("init")
            ]
            want.append(np.mean(per_init))
        row = re.search(
            rf'<tr class="{name}"><td>[^<]*</td><td class="l">diversity \(q=1\)[^<]*</td>'
            r"((?:<td>[^<]*</td>)+)",
            html,
        )
        assert row, name
        cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
        got = [float(c.split(" ")[0].replace(",", "")) for c in cells[:3]]
        assert got == pytest.approx(want, abs=0.051)  # shown with one decimal

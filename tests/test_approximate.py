"""Approximate redundancy (faiss): exact values for the pairs found, a measured recall."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.cli import main
from enrich.errors import EnrichError, MissingExtraError
from enrich.redundancy import redundancy
from enrich.similarity import cosine_at, normalize_rows, row_sqnorms

from _data import clustered

pytest.importorskip("faiss")

from enrich.approximate import ApproxOptions, recall_rows
from enrich.approximate import redundancy as approx


def with_copies(n: int, d: int, seed: int) -> np.ndarray:
    X = clustered(n, d, seed=seed)
    return np.vstack([X, X[::13] * 1.01 + 0.02, X[::29]])  # near and exact duplicates


def check_found_pairs_are_exact(X: np.ndarray, r) -> None:
    """Every reported value is the reference similarity of the reported pair, never above the
    exact maximum (whatever pair faiss found)."""
    Xn = normalize_rows(np.asarray(X, dtype=np.float32))  # as the embeddings are kept
    sq = row_sqnorms(Xn)
    n = len(X)
    assert (r.nearest >= 0).all() and (r.nearest < n).all()
    assert (r.nearest != np.arange(n)).all()
    want = np.array([cosine_at(Xn, sq, i, Xn, sq, int(r.nearest[i])) for i in range(n)])
    np.testing.assert_array_equal(r.max_similarity, np.clip(want, -1, 1).astype(np.float32))


@pytest.mark.parametrize(
    "options",
    [ApproxOptions(), ApproxOptions(nprobe=2), ApproxOptions(method="hnsw", ef_search=32)],
    ids=["ivf", "ivf-nprobe2", "hnsw"],
)
def test_values_exact_for_found_pairs_and_recall_measured(options: ApproxOptions) -> None:
    X = with_copies(3000, 24, seed=5)
    r = approx(X, options=options, group_threshold=0.97)
    e = redundancy(X, group_threshold=0.97)
    check_found_pairs_are_exact(X, r)
    assert (r.max_similarity <= e.max_similarity).all()  # a real pair: never above the max
    rec = r.info["approximate"]["recall"]
    sample = recall_rows(len(X), options.recall_sample, options.seed)
    assert rec["sample"] == len(sample) == 1000
    # the reported recall and shortfall are those of the sample against the exact pass
    hit = r.max_similarity[sample] >= e.max_similarity[sample]
    assert rec["recall"] == pytest.approx(hit.mean())
    short = e.max_similarity[sample].astype(float) - r.max_similarity[sample]
    assert rec["max_shortfall"] == pytest.approx(short.max(), abs=1e-6)
    # measured on this clustered data: 1.0 for all three settings; 0.95 leaves room for
    # another CPU's k-means or graph
    assert rec["recall"] >= 0.95
    assert (r.max_similarity == e.max_similarity).mean() >= 0.95


def test_recall_falls_and_is_reported_when_few_cells_are_searched() -> None:
    # Unclustered data in 32 dimensions, one cell of 100 searched: many nearest images are
    # missed, and the report must say so (recall measured ~0.4 here).
    X = np.random.default_rng(0).normal(size=(4000, 32))
    r = approx(X, options=ApproxOptions(nlist=100, nprobe=1, recall_sample=400))
    e = redundancy(X)
    rec = r.info["approximate"]["recall"]
    assert 0.05 < rec["recall"] < 0.9
    assert rec["mean_shortfall"] > 0 and rec["max_shortfall"] >= rec["mean_shortfall"]
    sample = recall_rows(len(X), 400, 0)
    assert rec["recall"] == pytest.approx(
        (r.max_similarity[sample] >= e.max_similarity[sample]).mean()
    )
    check_found_pairs_are_exact(X, r)
    # every cell searched: the exact maximum everywhere
    full = approx(X, options=ApproxOptions(nlist=100, nprobe=100, recall_sample=400))
    assert full.info["approximate"]["recall"]["recall"] == 1.0
    np.testing.assert_array_equal(full.max_similarity, e.max_similarity)


@pytest.mark.parametrize("method", ["representative", "components"])
def test_groups_use_only_real_links(method: str) -> None:
    X = with_copies(2000, 16, seed=3)
    thr = 0.97
    r = approx(X, options=ApproxOptions(nprobe=4), group_threshold=thr, group_method=method)
    e = redundancy(X, group_threshold=thr, group_method=method)
    U = normalize_rows(X).astype(np.float64)
    groups = r.groups()
    assert len(groups) > 10
    exact_label = e.group
    for g in groups:
        if method == "representative":
            # every member reaches the threshold to its representative (allow float64 noise)
            assert (U[g[1:]] @ U[g[0]] >= thr - 1e-9).all()
        else:
            assert len(set(exact_label[g].tolist())) == 1  # inside one exact component


def test_options_and_bad_input_are_one_line_errors() -> None:
    X = clustered(100, 8, seed=1)
    for bad, match in [
        (ApproxOptions(method="lsh"), "approximate method 'lsh': expected one of ivf, hnsw"),
        (ApproxOptions(nprobe=0), "nprobe=0: expected a whole number >= 1"),
        (ApproxOptions(nlist=-3), "nlist=-3"),
        (ApproxOptions(recall_sample=-1), "recall_sample=-1"),
    ]:
        with pytest.raises(EnrichError, match=match):
            approx(X, options=bad)
    Y = X.copy()
    Y[7, 2] = np.nan
    with pytest.raises(EnrichError, match="NaN or inf"):
        approx(Y)
    with pytest.raises(EnrichError, match="need at least 2 images"):
        approx(np.empty((0, 8)))
    with pytest.raises(EnrichError, match="zero-norm"):
        approx(np.vstack([X, np.zeros(8)]))


def test_missing_faiss_is_a_one_line_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(MissingExtraError, match=r"enrich-imaging\[faiss\]"):
        approx(clustered(50, 4, seed=0))
    p = tmp_path / "e.npz"
    np.savez(p, ids=np.array([f"x{i}" for i in range(50)]), vectors=clustered(50, 4, seed=0))
    code = main(["redundancy", "-e", str(p), "-o", str(tmp_path / "o"), "--approximate", "ivf"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "faiss is not installed" in err and "enrich-imaging[faiss]" in err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_cli_approximate_writes_recall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X = with_copies(1500, 16, seed=2)
    ids = np.array([f"img_{i:05d}.png" for i in range(len(X))])
    p = tmp_path / "e.npz"
    np.savez(p, ids=ids, vectors=X)
    base = ["redundancy", "-e", str(p), "--threshold", "0.97"]
    assert main([*base, "-o", str(tmp_path / "a"), "--approximate", "ivf", "--nprobe", "8"]) == 0
    out = capsys.readouterr().out
    assert "APPROXIMATE (IVF nlist=" in out and "sampled images" in out
    s = json.loads((tmp_path / "a" / "summary.json").read_text())["datasets"]["e"]
    a = s["approximate"]
    assert (
        a["method"] == "ivf"
        and a["nprobe"] == 8
        and a["nlist"] == min(round(4 * len(X) ** 0.5), len(X) // 39)
    )
    assert a["recall"]["sample"] == 1000 and 0.9 <= a["recall"]["recall"] <= 1
    assert main([*base, "-o", str(tmp_path / "x")]) == 0
    got = pd.read_csv(tmp_path / "a" / "redundancy.csv")
    want = pd.read_csv(tmp_path / "x" / "redundancy.csv")
    assert list(got.columns) == list(want.columns)
    assert (got["max_similarity"] <= want["max_similarity"]).all()
    assert (
        "approximate"
        not in json.loads((tmp_path / "x" / "summary.json").read_text())["datasets"]["e"]
    )
    with pytest.raises(SystemExit):
        main([*base, "-o", str(tmp_path / "b"), "--approximate", "annoy"])
    assert main([*base, "-o", str(tmp_path / "c"), "--nlist", "8"]) == 2
    assert "--nlist needs --approximate" in capsys.readouterr().err

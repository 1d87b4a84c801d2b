"""When to stop: images to reach T, the elbow, `rank --until-similarity`, `order.json`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import enrich
from enrich.cli import main
from enrich.loop.stopping import elbow, images_to_reach, plot_stopping_curve
from enrich.similarity import normalize_rows

from _data import clustered


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_images_to_reach_matches_its_definition(seed: int) -> None:
    """After labeling the first n ranked images, every remaining image has a labeled
    neighbour above T, and n is the smallest prefix of the order with that property."""
    X = clustered(150, 6, seed=seed)
    r = enrich.rank(X, initial=3, seed=seed)
    Xn = normalize_rows(X)
    S = Xn @ Xn.T
    s = np.unique(r.max_similarity[3:])
    mid = (s[1:] + s[:-1]) / 2  # thresholds between picks: no float tie decides the test

    def covered(k: int, t: float) -> bool:  # slow reference
        rest = r.order[k:]
        return bool(len(rest)) and bool((S[np.ix_(rest, r.order[:k])].max(axis=1) > t).all())

    for t in (float(mid[len(mid) // 3]), float(mid[4 * len(mid) // 5]), 0.9):
        n = images_to_reach(r.max_similarity, thresholds=(t,))[f"{t:g}"]
        if n is None:
            assert not any(covered(k, t) for k in range(3, len(r.order)))
        else:
            assert covered(n, t) and not any(covered(k, t) for k in range(3, n))


def test_elbow_of_a_bent_curve() -> None:
    x = np.linspace(0, 1, 101)
    y = np.minimum(x * 5, 1.0) * 0.5 + 0.4  # rises fast, flat after x = 0.2
    y[:2] = np.nan
    assert elbow(y) == 20
    assert elbow(np.full(10, 0.5)) is None and elbow(np.array([np.nan, 0.1])) is None
    fig = plot_stopping_curve(y)
    assert fig.axes[0].get_xlabel().startswith("images labeled")


def test_rank_records_stopping_and_cuts_at_until(tmp_path: Path) -> None:
    emb = tmp_path / "e.npy"
    np.save(emb, clustered(300, 8, seed=4))
    out = tmp_path / "order.csv"
    assert main(["rank", "-e", str(emb), "--initial", "3", "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    full = pd.read_csv(out)
    reach = meta["stopping"]["images_to_reach_similarity"]
    assert set(reach) == {"0.9", "0.95"}
    assert reach == images_to_reach(full["max_similarity_at_pick"].to_numpy())
    assert (tmp_path / "order-stopping.png").stat().st_size > 0
    v = np.unique(full["max_similarity_at_pick"].dropna())
    t = float(v[len(v) // 2] + v[len(v) // 2 + 1]) / 2  # between two values: no rounding tie
    assert (
        main(
            [
                "rank",
                "-e",
                str(emb),
                "--initial",
                "3",
                "--until-similarity",
                str(t),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cut = pd.read_csv(out)
    assert cut["id"].tolist() == full["id"].tolist()[: len(cut)]
    assert (cut["max_similarity_at_pick"].dropna() <= t).all()
    assert full["max_similarity_at_pick"][len(cut)] > t
    assert (
        main(
            [
                "rank",
                "-e",
                str(emb),
                "--strategy",
                "random",
                "--until-similarity",
                "0.9",
                "--out",
                str(out),
            ]
        )
        == 2
    )

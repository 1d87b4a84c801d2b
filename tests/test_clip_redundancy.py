"""experiments/redundancy_study.py: nearest neighbours split by clip and patient (issue 11)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

EXP = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def study():
    pytest.importorskip("yaml")
    sys.path.insert(0, str(EXP))
    try:
        import redundancy_study  # type: ignore[import-not-found]

        yield redundancy_study
    finally:
        sys.path.remove(str(EXP))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_by_group_matches_brute_force(study, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 37
    X = rng.normal(size=(n, 5))
    patient = rng.integers(0, 4, n).astype(str)
    clip = np.array([f"{p}-{c}" for p, c in zip(patient, rng.integers(0, 2, n), strict=True)])
    got = study.nearest_by_group(X, clip, patient, block=8)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T
    for i in range(n):
        others = np.arange(n) != i
        for key, mask in (
            ("same_clip", (clip == clip[i]) & others),
            ("same_patient_other_clip", (patient == patient[i]) & (clip != clip[i])),
            ("other_patient", patient != patient[i]),
        ):
            want = S[i, mask].max() if mask.any() else -np.inf
            assert got[key][i] == pytest.approx(want, abs=1e-5), (key, i)
    s = study.clip_summary(got)
    where = s["nearest_neighbour_in"]
    assert sum(where.values()) == pytest.approx(1.0)
    best = np.stack([got[k] for k in where]).max(axis=0)
    assert s["any"]["fraction_above"]["0.8"] == pytest.approx(float((best > 0.8).mean()))
    assert s["any"]["cdf"][-1] == 1.0 and len(s["any"]["cdf"]) == len(s["cdf_grid"])

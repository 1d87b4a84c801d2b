"""The reference similarity: one fixed order of IEEE operations, so the same bits everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from enrich.similarity import (
    cosine_at,
    dot_fixed,
    float32_error,
    normalize_rows,
    row_norms,
    row_sqnorms,
)

from _data import clustered, gaussian


def dot_in_python(a: np.ndarray, b: np.ndarray) -> float:
    """The documented order with Python floats (each operation rounded once, no FMA)."""
    acc = [0.0] * 8
    d = len(a)
    n8 = d - d % 8
    for k in range(0, n8, 8):
        for lane in range(8):
            acc[lane] = acc[lane] + float(a[k + lane]) * float(b[k + lane])
    for k in range(n8, d):
        acc[0] = acc[0] + float(a[k]) * float(b[k])
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


@pytest.mark.parametrize("d", [1, 7, 8, 13, 128])
def test_dot_fixed_is_the_documented_sequence_of_operations(d: int) -> None:
    # Bit for bit: no reassociation and no fused multiply-add slipped in by the compiler,
    # which is what makes the value the same on every CPU.
    A = gaussian(20, d, seed=d) * np.float32(1e3)
    for i in range(10):
        j = 19 - i
        assert dot_fixed(A, i, A, j) == dot_in_python(A[i], A[j])
        assert dot_fixed(A, i, A, j) == dot_fixed(A, j, A, i)


def test_cosine_at_copies_are_exactly_one_and_symmetric() -> None:
    B = clustered(50, 24, seed=1)
    X = normalize_rows(np.vstack([B, B[:5] * np.float32(4)]))
    q = row_sqnorms(X)
    for i in range(5):
        assert cosine_at(X, q, i, X, q, i) == 1.0
        assert cosine_at(X, q, i, X, q, 50 + i) == 1.0  # a power-of-two multiple: same row
        assert cosine_at(X, q, i, X, q, 7) == cosine_at(X, q, 7, X, q, i)


@pytest.mark.parametrize("d", [3, 128, 1000])
def test_float32_error_bounds_blas(d: int) -> None:
    X = normalize_rows(np.vstack([gaussian(200, d, seed=2), clustered(200, d, seed=2)]))
    q = row_sqnorms(X)
    T = X[:40] @ X.T  # float32 BLAS
    ref = np.array([[cosine_at(X, q, i, X, q, j) for j in range(len(X))] for i in range(40)])
    gap = np.abs(T - ref).max()
    assert 0 < gap <= float32_error(d)


def test_normalize_rows_any_float32_magnitude() -> None:
    X = clustered(30, 16, seed=3)
    ref = normalize_rows(X)
    for scale in (2.0**-100, 2.0**-83, 2.0**66, 2.0**100):  # exact: no float32 subnormals
        Y = X * np.float32(scale)
        assert np.isfinite(Y).all() and (np.abs(Y) >= np.finfo(np.float32).tiny).all()
        np.testing.assert_array_equal(normalize_rows(Y), ref)
        np.testing.assert_allclose(row_norms(Y) / scale, row_norms(X), rtol=1e-15)

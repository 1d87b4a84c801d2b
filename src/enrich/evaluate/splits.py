"""Train / validation / test splits that never put one patient on both sides.

The paper split ECHO-F and OCT by patient id. We do the same: by ``patient_id`` when the
manifest has it, else ``clip_id``, else ``subject_id``; or we use a given ``split`` column.

Examples
--------
>>> import pandas as pd
>>> m = pd.DataFrame({"id": list("abcdef"), "patient_id": list("xxyyzz"), "label": [0, 1] * 3})
>>> s = split_manifest(m, seed=0, test_fraction=0.34)
>>> sorted(set(s.assignment.tolist()))
['test', 'train']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from enrich.errors import EnrichError, first_few

__all__ = ["GROUP_COLUMNS", "Split", "check_no_leak", "group_column", "split_manifest"]

GROUP_COLUMNS = ("patient_id", "clip_id", "subject_id")
_SPLIT_VALUES = {
    "train": "train",
    "training": "train",
    "test": "test",
    "testing": "test",
    "val": "val",
    "valid": "val",
    "validation": "val",
}


@dataclass(frozen=True)
class Split:
    """Where each manifest row goes.

    Attributes
    ----------
    assignment : ndarray of shape (n_rows,) of str
        ``train`` (the selection pool), ``val`` (early stopping), ``test`` or ``drop``.
    group_column : str or None
        The id column used to keep groups on one side (``None``: images are independent).
    source : str
        ``column:<name>`` when a given split column was used, else ``grouped``.
    attempt : int
        Which derived seed gave a split with every class on both sides (0 = the first).
    """

    assignment: np.ndarray
    group_column: str | None
    source: str
    attempt: int = 0

    def indices(self, part: str) -> np.ndarray:
        return np.flatnonzero(self.assignment == part)


def group_column(manifest: pd.DataFrame, group_by: str = "auto") -> str | None:
    """The column whose ids must not straddle the split (``None`` when there is none)."""
    if group_by == "none":
        return None
    if group_by != "auto":
        if group_by not in manifest.columns:
            raise EnrichError(
                f"split.group_by={group_by!r} is not a manifest column; columns are "
                f"{first_few(manifest.columns, 12)}"
            )
        return group_by
    for col in GROUP_COLUMNS:
        if col in manifest.columns and manifest[col].notna().any():
            return col
    return None


def _groups(manifest: pd.DataFrame, col: str | None) -> np.ndarray:
    """Group key per row; rows without an id form their own group."""
    n = len(manifest)
    if col is None:
        return np.array([f"\0row{i}" for i in range(n)], dtype=object)
    values = manifest[col]
    keys = values.astype(str).to_numpy(dtype=object)
    missing = values.isna().to_numpy()
    keys[missing] = [f"\0row{i}" for i in np.flatnonzero(missing)]
    return keys


def check_no_leak(manifest: pd.DataFrame, assignment: np.ndarray, col: str | None) -> None:
    """Raise if one group id sits in two of train / val / test."""
    if col is None:
        return
    values = manifest[col]
    used = (assignment != "drop") & values.notna().to_numpy()
    frame = pd.DataFrame({"g": values[used].astype(str).to_numpy(), "a": assignment[used]})
    sides = frame.groupby("g")["a"].nunique()
    bad = sides[sides > 1].index.tolist()
    if bad:
        raise EnrichError(
            f"{len(bad)} {col} value(s) appear on both sides of the split: {first_few(bad)}; "
            f"one {col} must be all train or all test"
        )


def _stratify_ok(labels: np.ndarray | None, assignment: np.ndarray) -> bool:
    if labels is None:
        return True
    classes = np.unique(labels)
    for part in ("train", "test"):
        got = np.unique(labels[assignment == part])
        if len(got) < len(classes):
            return False
    return True


def _group_split(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask: whole groups, in a random order, until ``fraction`` of rows are taken."""
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(uniq))
    target = fraction * len(groups)
    taken = np.zeros(len(uniq), dtype=bool)
    total = 0
    for g in order:
        if total >= target:
            break
        taken[g] = True
        total += counts[g]
    return taken[inverse]


def split_manifest(
    manifest: pd.DataFrame,
    *,
    seed: int,
    column: str = "split",
    val: str = "validation",
    group_by: str = "auto",
    test_fraction: float = 0.2,
    validation_fraction: float = 0.0,
    labels: np.ndarray | None = None,
    max_attempts: int = 50,
) -> Split:
    """Assign every manifest row to ``train``, ``val``, ``test`` or ``drop``.

    Parameters
    ----------
    manifest : DataFrame of shape (n_rows, ...)
        At least the group columns that exist (``patient_id``, ``clip_id``, ``subject_id``)
        and, optionally, the split ``column``.
    seed : int
        Seeds the group shuffle (``np.random.default_rng``).
    column : str
        A given split: rows marked ``train``/``test``/``val`` keep their side. Rows with an
        empty value are dropped. Used whenever the column has any value.
    val : str
        Where given ``val`` rows go: ``validation``, ``train``, ``test`` or ``drop``.
    group_by : str
        ``auto`` or a column name or ``none``; see :func:`group_column`.
    test_fraction, validation_fraction : float
        Shares of rows for test and validation when we split ourselves (by whole groups).
        With a given split column without ``val`` rows, validation is carved from train.
    labels : ndarray of shape (n_rows,), optional
        Classification labels: the split is redrawn (next derived seed, up to
        ``max_attempts``) until every class is on both the train and test side.

    Returns
    -------
    Split
    """
    n = len(manifest)
    col = group_column(manifest, group_by)
    groups = _groups(manifest, col)
    ss = np.random.SeedSequence([seed, 0xB17])
    if column in manifest.columns and manifest[column].notna().any():
        raw = manifest[column]
        norm = raw.astype(str).str.strip().str.lower()
        mapped = norm.map(_SPLIT_VALUES)
        unknown = sorted(set(norm[raw.notna() & mapped.isna()]))
        if unknown:
            raise EnrichError(
                f"manifest column {column!r} has value(s) {first_few(unknown)}; "
                "expected train, val or test"
            )
        assignment = mapped.fillna("drop").to_numpy(dtype=object)
        if val != "validation":
            assignment[assignment == "val"] = val
        if not (assignment == "train").any() or not (assignment == "test").any():
            raise EnrichError(
                f"manifest column {column!r} needs both train and test rows; got "
                f"{int((assignment == 'train').sum())} train, "
                f"{int((assignment == 'test').sum())} test"
            )
        if validation_fraction > 0 and val == "validation" and not (assignment == "val").any():
            rng = np.random.default_rng(ss.spawn(1)[0])
            train = np.flatnonzero(assignment == "train")
            take = _group_split(groups[train], validation_fraction, rng)
            assignment[train[take]] = "val"
        assignment = assignment.astype(str)
        check_no_leak(manifest, assignment, col)
        return Split(assignment, col, f"column:{column}")

    if n < 2:
        raise EnrichError(f"cannot split {n} image(s) into train and test")
    children = ss.spawn(max_attempts)
    for attempt, child in enumerate(children):
        rng = np.random.default_rng(child)
        assignment = np.full(n, "train", dtype=object)
        is_test = _group_split(groups, test_fraction, rng)
        assignment[is_test] = "test"
        if validation_fraction > 0:
            train = np.flatnonzero(~is_test)
            frac = validation_fraction / max(1e-12, 1.0 - test_fraction)
            take = _group_split(groups[train], min(frac, 0.99), rng)
            assignment[train[take]] = "val"
        assignment = assignment.astype(str)
        if not (assignment == "train").any() or not (assignment == "test").any():
            continue
        if _stratify_ok(labels, assignment):
            return Split(assignment, col, "grouped", attempt)
    what = f"{col} groups" if col else "images"
    raise EnrichError(
        f"could not split {len(np.unique(groups))} {what} so that every class is in both train "
        f"and test ({max_attempts} tries); add data, lower split.test_fraction={test_fraction} "
        "or give a split column"
    )

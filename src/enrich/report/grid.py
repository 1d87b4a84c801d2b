"""Image grids that let a clinician *see* what ENRICH does.

- :func:`picks_grid`: the first images each strategy adds to the shared seed set, one row
  per strategy (ENRICH's picks look different from each other; random's repeat).
- :func:`duplicates_grid`: the most redundant near-duplicate groups, one row per group.

Both draw plain arrays. The helpers :func:`first_picks`, :func:`duplicate_examples` and
:func:`load_images` get the ids and pixels from a benchmark run and its workspace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from enrich.errors import EnrichError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "duplicate_examples",
    "duplicates_grid",
    "first_picks",
    "image_grid",
    "load_images",
    "picks_grid",
]


def _display(img: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) → float in [0, 1] for imshow, scaled per image (min–max)."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels-first → channels-last
        if a.shape[-1] == 1:
            a = a[..., 0]
    if a.ndim not in (2, 3):
        raise EnrichError(
            f"cannot show an image of shape {np.shape(img)}; expected (H, W) or (H, W, 3)"
        )
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape[:2])
    lo, hi = float(a[finite].min()), float(a[finite].max())
    out = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(np.nan_to_num(out), 0.0, 1.0)


def image_grid(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    *,
    captions: Sequence[Sequence[str]] | None = None,
    cell: float = 1.25,
    title: str | None = None,
) -> Figure:
    """A grid of images, one labelled row per entry of `rows`.

    Parameters
    ----------
    rows : sequence of (str, sequence of ndarray)
        Row label and its images, each (H, W) grayscale or (H, W, 3) colour.
    captions : sequence of sequence of str, optional
        A short caption under each image (same shape as the images in `rows`).
    cell : float
        Size of one image in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    Figure

    Examples
    --------
    >>> fig = image_grid([("a", [np.zeros((4, 4)), np.eye(4)])])
    >>> len(fig.axes)
    2
    """
    if not rows or all(len(imgs) == 0 for _, imgs in rows):
        raise EnrichError("no images to show in the grid")
    ncols = max(len(imgs) for _, imgs in rows)
    nrows = len(rows)
    fig = Figure(
        figsize=(cell * ncols + 1.3, cell * nrows + (0.45 if title else 0.15) + 0.2 * nrows)
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(imgs):
                ax.set_axis_off()
                continue
            img = _display(imgs[c])
            ax.imshow(
                img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
            )
            if captions is not None and c < len(captions[r]):
                ax.set_xlabel(captions[r][c], fontsize=7)
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r][0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center", labelpad=6)
    if title:
        fig.suptitle(title, fontsize=10)
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=1.2 / fig.get_figwidth(),
        right=0.99,
        top=1 - (0.4 if title else 0.05) / height,
        bottom=(0.25 if captions is not None else 0.05) / height,
        wspace=0.08,
        hspace=0.35,
    )
    return fig


def picks_grid(
    images: Mapping[str, Sequence[np.ndarray]],
    *,
    captions: Mapping[str, Sequence[str]] | None = None,
) -> Figure:
    """The first images each strategy adds to the seed set, one row per strategy.

    Parameters
    ----------
    images : mapping of str to sequence of ndarray
        Strategy name → its first picks, in order.
    captions : mapping of str to sequence of str, optional
        Strategy name → a caption per image (e.g. the patient id).
    """
    names = {"enrich": "ENRICH", "random": "Random"}
    rows = [(names.get(k, k), list(v)) for k, v in images.items()]
    caps = [list(captions.get(k, [])) for k in images] if captions is not None else None
    return image_grid(rows, captions=caps, title="First images added to the shared starting set")


def duplicates_grid(
    groups: Sequence[Sequence[np.ndarray]],
    *,
    captions: Sequence[Sequence[str]] | None = None,
) -> Figure:
    """The most redundant near-duplicate groups, one row per group.

    Parameters
    ----------
    groups : sequence of sequence of ndarray
        Images of each group, most redundant group first.
    captions : sequence of sequence of str, optional
        A caption per image (e.g. its similarity to its nearest neighbour).
    """
    rows = [(f"group {i + 1}", list(g)) for i, g in enumerate(groups)]
    return image_grid(
        rows,
        captions=captions,
        title="Most similar images: near-duplicate groups, then closest pairs",
    )


# --------------------------------------------------------------------------- data


def first_picks(
    subsets: pd.DataFrame,
    *,
    k: int = 8,
    init: int | None = None,
    strategies: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """The first `k` ids each strategy adds beyond the seed set shared by all strategies.

    Within one initialization every strategy starts from the same random seed set. At the
    smallest size where the strategies' subsets differ, each strategy's picks are its ids
    that are not in every strategy's subset (the shared ones are the seed and any common
    picks), in selection order (the ``rank`` column; else the order of the rows).

    Parameters
    ----------
    subsets : DataFrame
        ``strategy, init, size, id`` and optionally ``rank``.
    k : int
        How many picks per strategy.
    init : int, optional
        Which initialization (default: the smallest).
    strategies : sequence of str, optional
        Which strategies (default: all but ``full``, ENRICH first).

    Returns
    -------
    dict of str to list of str
        Strategy → up to `k` ids. Empty when there is only one strategy.
    """
    from enrich.evaluate.stats import FULL
    from enrich.evaluate.stats import strategies as ordered

    sub = subsets.copy()
    if "init" not in sub.columns:
        sub["init"] = 0
    sub["id"] = sub["id"].astype(str)
    sub = sub.loc[sub["strategy"] != FULL]
    if sub.empty:
        return {}
    init = int(sub["init"].min()) if init is None else init
    sub = sub.loc[sub["init"] == init]
    if "rank" in sub.columns:  # the benchmark records each id's place in the order
        sub = sub.sort_values(["strategy", "size", "rank"], kind="stable")
    names = list(strategies) if strategies is not None else ordered(sub)
    if len(names) < 2:
        return {}
    for size in sorted(set(sub["size"])):
        at = sub.loc[sub["size"] == size]
        sets = {n: at.loc[at["strategy"] == n, "id"].tolist() for n in names}
        if any(len(v) == 0 for v in sets.values()):
            continue
        common = set.intersection(*(set(v) for v in sets.values()))
        picks = {n: [i for i in v if i not in common][:k] for n, v in sets.items()}
        if all(picks.values()):
            return picks
    return {}


def duplicate_examples(
    result: Any,
    ids: Sequence[str] | np.ndarray,
    *,
    vectors: np.ndarray | None = None,
    n_groups: int = 4,
    max_size: int = 8,
) -> list[list[tuple[str, float]]]:
    """The most redundant near-duplicate groups, as (id, max similarity) lists.

    Uses the near-duplicate groups of a :class:`enrich.redundancy.RedundancyResult`
    (connected components of the graph linking images with similarity ≥ its
    ``group_threshold``). Groups are ranked by their members' median max similarity (exact
    duplicates first), then by size. Each group starts with its most redundant image; with
    `vectors`, the others follow by their similarity to it (a large component can chain
    images that are not alike end to end), else by their own max similarity. When there
    are fewer than `n_groups` groups, the most similar pairs (an image and its nearest
    neighbour) not shown yet fill the rest.

    Parameters
    ----------
    result : RedundancyResult
        From :func:`enrich.redundancy` on the embeddings of `ids`.
    ids : sequence of str of shape (n_images,)
        Image ids, in the order of the embeddings.
    vectors : ndarray of shape (n_images, n_dims), optional
        The embeddings, to order the members of a group around its first image.
    n_groups : int
        How many groups.
    max_size : int
        At most this many images per group.

    Returns
    -------
    list of list of (id, max_similarity)
        Most redundant group first.
    """
    ids = np.asarray(ids).astype(str)
    sim = np.asarray(result.max_similarity, dtype=float)  # (N,)
    nearest = np.asarray(result.nearest, dtype=np.int64)  # (N,)
    if len(ids) != len(sim):
        raise EnrichError(
            f"{len(ids)} ids but {len(sim)} redundancy values; expected one per image"
        )
    if vectors is not None and len(vectors) != len(ids):
        raise EnrichError(f"{len(vectors)} vectors but {len(ids)} ids; expected one per image")
    found = [np.asarray(g, dtype=np.int64) for g in result.groups()]
    # Medians rounded as displayed: float32 noise must not outrank a larger group.
    found.sort(key=lambda g: (-round(float(np.median(sim[g])), 3), -len(g), int(g.min())))
    groups = found[:n_groups]
    seen: set[int] = {int(m) for g in groups for m in g.tolist()}
    # Fewer groups than asked for: add the most similar pairs of images not shown yet.
    for i in np.argsort(-sim, kind="stable").tolist():
        if len(groups) >= n_groups:
            break
        j = int(nearest[i])
        if i in seen or j in seen or not 0 <= j < len(ids):
            continue
        seen.update((i, j))
        groups.append(np.array([i, j]))
    out = []
    for g in groups:
        members = sorted(g.tolist(), key=lambda m: (-sim[m], m))
        if vectors is not None and len(members) > 2:
            V = np.asarray(vectors, dtype=np.float64)[members]  # (m, d)
            V /= np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
            to_first = V @ V[0]  # (m,) cosine similarity to the most redundant member
            rest = sorted(range(1, len(members)), key=lambda k: (-to_first[k], members[k]))
            members = [members[0]] + [members[k] for k in rest]
        out.append([(str(ids[m]), float(sim[m])) for m in members[:max_size]])
    return out


def load_images(
    manifest: pd.DataFrame, ids: Sequence[str], *, max_side: int = 256
) -> dict[str, np.ndarray]:
    """Read the images of `ids` from their sources, via :func:`enrich.io.read_frames`.

    Images are shown as stored (gray, intensities rescaled to [0, 1], no crop), shrunk by
    an integer stride so that no side exceeds `max_side`; only one full-size image is in
    memory at a time.

    Parameters
    ----------
    manifest : DataFrame
        The workspace manifest (``id, source_path, frame, ...``).
    ids : sequence of str
        Which images.
    max_side : int
        Largest thumbnail side in pixels.

    Returns
    -------
    dict of str to ndarray of shape (h, w)
        Unreadable images are absent (``read_frames`` skips them).
    """
    from enrich.io import read_frames

    wanted = {str(i) for i in ids}
    man = manifest.assign(id=manifest["id"].astype(str))
    rows = man.loc[man["id"].isin(wanted)]  # manifest order: each source file opened once
    out: dict[str, np.ndarray] = {}
    if rows.empty:
        return out
    for key, img in read_frames(rows.reset_index(drop=True)):
        a = np.asarray(img)
        step = max(1, -(-max(a.shape[:2]) // max_side))
        out[str(key)] = np.ascontiguousarray(a[::step, ::step])
    return out

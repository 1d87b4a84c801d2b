"""Image grids that let a clinician *see* what ENRICH does.

- :func:`picks_grid`: the first images each strategy adds to the shared seed set, one row
  per strategy (ENRICH's picks look different from each other; random's repeat).
- :func:`duplicates_grid`: the most redundant near-duplicate groups, one row per group.

Both draw plain arrays, at most four images across so that a phone shows them (and the
captions under them: image id, split, patient) readably. The helpers :func:`first_picks`,
:func:`duplicate_examples` and :func:`load_images` get the ids and pixels from a benchmark
run and its workspace; :func:`caption` writes an image's caption; :func:`leaks` finds the
near-duplicate pairs that cross the train/test split or patients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from enrich.errors import EnrichError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Leaks",
    "caption",
    "duplicate_examples",
    "duplicates_grid",
    "first_picks",
    "image_grid",
    "leaks",
    "load_images",
    "picks_grid",
    "wrap_id",
]

# Phone-readable layout (see enrich.report.plots): 4 cells of 1.08 in fit in 4.8 in, and no
# text is under 9.5 pt.
_MAX_COLS = 4
_CELL_IN = 1.08
_FONT_PT = 9.5
_ID_CHARS = 14  # characters of an id per caption line at that size and cell width


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
    cell: float = _CELL_IN,
    title: str | None = None,
    max_cols: int = _MAX_COLS,
) -> Figure:
    """A grid of images, one labelled group per entry of `rows`.

    A group longer than `max_cols` images wraps onto further lines. Its label is written
    above its first image (as that axes' left title).

    Parameters
    ----------
    rows : sequence of (str, sequence of ndarray)
        Group label and its images, each (H, W) grayscale or (H, W, 3) colour.
    captions : sequence of sequence of str, optional
        A caption under each image (same shape as the images in `rows`); lines split at
        ``"\\n"``.
    cell : float
        Size of one image in inches.
    title : str, optional
        Figure title.
    max_cols : int
        At most this many images side by side.

    Returns
    -------
    Figure

    Examples
    --------
    >>> fig = image_grid([("a", [np.zeros((4, 4)), np.eye(4)])])
    >>> len(fig.axes), fig.axes[0].get_title(loc="left")
    (2, 'a')
    """
    if not rows or all(len(imgs) == 0 for _, imgs in rows):
        raise EnrichError("no images to show in the grid")
    if max_cols < 1:
        raise EnrichError(f"max_cols={max_cols}; expected at least 1")
    ncols = min(max_cols, max(len(imgs) for _, imgs in rows))
    n_lines = max([len(c.split("\n")) for caps in (captions or []) for c in caps if c] or [0])
    line_in = _FONT_PT * 1.25 / 72.0
    cap_h = n_lines * line_in + (0.08 if n_lines else 0.0)
    label_h = 0.3
    gap, margin = 0.1, 0.08
    width = 2 * margin + ncols * cell + (ncols - 1) * gap
    if title:  # wrapped to the figure's width (a 2-image grid is narrow)
        import textwrap

        title = textwrap.fill(title, width=max(12, int(width * 72 / (10.5 * 0.58))))
    title_h = 0.2 + 0.2 * title.count("\n") + 0.25 if title else 0.05
    # Lines of images, each (group index, first image index in the group).
    lines = [(r, k) for r, (_, imgs) in enumerate(rows) for k in range(0, len(imgs), ncols)]
    line_h = [cell + cap_h + 0.1 + (label_h if k == 0 else 0.0) for _, k in lines]
    height = title_h + sum(line_h) + 0.05
    fig = Figure(figsize=(width, height))
    top = height - title_h
    for (r, k), h in zip(lines, line_h, strict=True):
        label, imgs = rows[r]
        y = top - (label_h if k == 0 else 0.0) - cell  # bottom of this line's images
        for c, i in enumerate(range(k, min(k + ncols, len(imgs)))):
            x = margin + c * (cell + gap)
            ax = fig.add_axes((x / width, y / height, cell / width, cell / height))
            ax.set_xticks([])
            ax.set_yticks([])
            img = _display(imgs[i])
            ax.imshow(
                img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
            )
            ax.set_aspect("auto")
            if captions is not None and i < len(captions[r]):
                ax.set_xlabel(captions[r][i], fontsize=_FONT_PT, labelpad=3, linespacing=1.1)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if i == 0:
                ax.set_title(label, loc="left", fontsize=10.5, fontweight="bold", pad=4)
        top -= h
    if title:
        fig.suptitle(title, fontsize=10.5, y=1 - 0.12 / height, va="top")
    return fig


def wrap_id(image_id: str, width: int = _ID_CHARS) -> str:
    """An image id broken into caption lines of at most `width` characters.

    Lines break before a ``/``, ``#`` or ``_`` where possible, else anywhere.

    >>> print(wrap_id("pneumoniamnist.npz#train/1234"))
    pneumoniamnist
    .npz#train
    /1234
    >>> wrap_id("a.png")
    'a.png'
    """
    import re

    parts = [p for p in re.split(r"(?=[/#_.])", str(image_id)) if p]
    lines: list[str] = []
    for part in parts:
        while len(part) > width:  # one piece longer than a line: cut it
            if lines and len(lines[-1]) < width:
                room = width - len(lines[-1])
                lines[-1] += part[:room]
                part = part[room:]
            else:
                lines.append(part[:width])
                part = part[width:]
        if lines and len(lines[-1]) + len(part) <= width:
            lines[-1] += part
        elif part:
            lines.append(part)
    return "\n".join(lines)


def caption(
    image_id: str,
    *,
    split: object = None,
    patient: object = None,
    extra: str | None = None,
) -> str:
    """The caption under a grid image: its id (wrapped), then split and patient, then `extra`.

    >>> print(caption("us/a.png", split="test", patient="P7", extra="sim 0.998"))
    us/a.png
    test · pt P7
    sim 0.998
    """
    facts = []
    if _known(split):
        facts.append(str(split))
    if _known(patient):
        facts.append(f"pt {patient}")
    lines = [wrap_id(image_id)]
    if facts:
        lines.append(" · ".join(facts))
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def _known(value: object) -> bool:
    if value is None:
        return False
    try:
        if bool(np.isnan(value)):  # type: ignore[call-overload]
            return False
    except (TypeError, ValueError):
        pass
    return str(value).strip() not in ("", "nan", "None", "<NA>")


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


@dataclass(frozen=True)
class Leaks:
    """Near-duplicate pairs that cross the train/test split or patients.

    Attributes
    ----------
    pairs : DataFrame
        The most similar such pairs, most similar first: ``id_a, id_b, similarity,
        split_a, split_b, patient_a, patient_b, crosses`` (``crosses``: ``"split"``,
        ``"patients"`` or ``"split, patients"``).
    n_split : int
        All pairs at or above the threshold with one image in the test split and the other
        in training (``train`` or ``val``).
    n_patients : int
        All such pairs whose images carry different patient ids.
    threshold : float
        The near-duplicate threshold.
    unchecked : tuple of int
        Sizes of groups too large to check pair by pair.
    """

    pairs: pd.DataFrame
    n_split: int
    n_patients: int
    threshold: float
    unchecked: tuple[int, ...] = ()


def leaks(
    result: Any,
    ids: Sequence[str] | np.ndarray,
    vectors: np.ndarray,
    info: pd.DataFrame,
    *,
    limit: int = 25,
    max_group: int = 20_000,
    block: int = 1024,
) -> Leaks:
    """Pairs of near-duplicates (similarity ≥ the threshold) that cross train/test or patients.

    Every pair at or above ``result.group_threshold`` lies inside one connected component of
    that graph, so each component is checked pair by pair, in row blocks. When `result` holds
    groups around representatives (the default, which do not chain, so a pair above the
    threshold can straddle two groups), the components are computed first (one more pass).
    A test image with a near-duplicate in training inflates the test score; two "different"
    patients with the same image point at a duplicated scan or a patient-id error.
    Both are worth a look before trusting the benchmark.

    Parameters
    ----------
    result : RedundancyResult
        From :func:`enrich.redundancy` on `vectors`.
    ids : sequence of str of shape (n_images,)
        Image ids, in the order of `vectors`.
    vectors : ndarray of shape (n_images, n_dims)
        The embeddings.
    info : DataFrame
        ``id`` and, where known, ``split`` (``train``/``val``/``test``) and ``patient_id``.
    limit : int
        How many pairs to list (all are counted).
    max_group : int
        Larger groups are not checked (their sizes are in ``unchecked``).

    Returns
    -------
    Leaks
    """
    import pandas as pd

    ids = np.asarray(ids).astype(str)
    if len(vectors) != len(ids):
        raise EnrichError(f"{len(vectors)} vectors but {len(ids)} ids; expected one per image")
    facts = info.assign(id=info["id"].astype(str)).drop_duplicates("id").set_index("id")

    def column(name: str) -> np.ndarray:
        if name not in facts.columns:
            return np.full(len(ids), "", dtype=object)
        col = facts[name].reindex(ids)
        return np.array([str(v) if _known(v) else "" for v in col], dtype=object)

    split = column("split")
    patient = column("patient_id")
    is_test = split == "test"
    is_train = np.isin(split, ["train", "val"])
    thr = float(result.group_threshold)
    if getattr(result, "group_method", "components") != "components":
        from enrich.redundancy import redundancy as _redundancy

        result = _redundancy(vectors, group_threshold=thr, group_method="components")
    found: list[tuple[float, int, int, bool, bool]] = []
    n_split = n_patients = 0
    unchecked = []
    for g in result.groups():
        g = np.sort(np.asarray(g, dtype=np.int64))
        if len(g) > max_group:
            unchecked.append(len(g))
            continue
        V = np.asarray(vectors[g], dtype=np.float64)  # (m, d)
        V /= np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
        for a in range(0, len(g), block):
            sim = V[a : a + block] @ V.T  # (b, m)
            rows, cols = np.nonzero(sim >= thr)
            keep = cols > rows + a  # each pair once
            rows, cols = rows[keep] + a, cols[keep]
            i, j = g[rows], g[cols]
            cross_split = (is_test[i] & is_train[j]) | (is_train[i] & is_test[j])
            cross_pt = (patient[i] != "") & (patient[j] != "") & (patient[i] != patient[j])
            n_split += int(cross_split.sum())
            n_patients += int(cross_pt.sum())
            hit = cross_split | cross_pt
            vals = sim[rows[hit] - a, cols[hit]]
            found += zip(
                vals.tolist(),
                i[hit].tolist(),
                j[hit].tolist(),
                cross_split[hit].tolist(),
                cross_pt[hit].tolist(),
                strict=True,
            )
            if len(found) > 4 * limit:
                found = sorted(found, key=lambda t: (-t[0], t[1], t[2]))[:limit]
    found = sorted(found, key=lambda t: (-t[0], t[1], t[2]))[:limit]
    records = [
        {
            "id_a": ids[i],
            "id_b": ids[j],
            "similarity": v,
            "split_a": split[i],
            "split_b": split[j],
            "patient_a": patient[i],
            "patient_b": patient[j],
            "crosses": ", ".join(w for w, on in (("split", cs), ("patients", cp)) if on),
        }
        for v, i, j, cs, cp in found
    ]
    columns = ["id_a", "id_b", "similarity", "split_a", "split_b", "patient_a", "patient_b"]
    pairs = pd.DataFrame(records, columns=[*columns, "crosses"])
    return Leaks(pairs, n_split, n_patients, thr, tuple(unchecked))


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

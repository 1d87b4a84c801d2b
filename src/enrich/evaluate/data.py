"""What a benchmark needs from a workspace: ids, embeddings, labels or masks, and pixels.

Selection sees only the embeddings; labels (or masks) are revealed only to train and score
the models. Images are read on demand, for the rows that the split keeps, through
:func:`enrich.io.read_frames`, then cropped and resized to the model's input size.

Segmentation masks come from, in order:

1. a manifest column ``mask_path``: a mask image (PNG, TIFF, ...) or ``.npy`` per row, or an
   ``.npz`` holding ``masks`` indexed by ``mask_frame`` (else ``frame``);
2. an ``.npz`` source (``source_path``) that holds a ``masks`` array beside its images, indexed
   like the image (HC18-style files).

Masks are class indices per pixel; a 0/255 mask becomes 0/1.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> d = BenchmarkData.from_arrays(rng.random((6, 8, 8)), labels=[0, 1] * 3,
...                               vectors=rng.normal(size=(6, 4)))
>>> d.load_images(np.array([0, 2]), size=4).shape
(2, 4, 4)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.errors import EnrichError, first_few
from enrich.io._paths import fs_path  # a non-UTF-8 source name is stored escaped

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BenchmarkData", "encode_labels", "load_mask_file", "resize_mask"]


def encode_labels(values: Sequence[object] | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Class codes ``0..K-1`` (``-1`` for missing) and the class names, in sorted order.

    Numbers sort numerically (``0 < 1 < 10``), anything else as text.

    >>> encode_labels(["b", None, "a", "b"])
    (array([ 1, -1,  0,  1]), ['a', 'b'])
    """
    import pandas as pd

    s = pd.Series(list(values), dtype=object)
    missing = s.isna().to_numpy() | (s.astype(str).str.strip() == "").to_numpy()
    present = s[~missing]
    numeric = pd.to_numeric(present, errors="coerce")
    if len(present) and numeric.notna().all():
        keys = numeric.to_numpy(dtype=np.float64)
        uniq = np.unique(keys)
        names = [str(int(u)) if float(u).is_integer() else str(u) for u in uniq]
        codes_present = np.searchsorted(uniq, keys)
    else:
        text = present.astype(str).str.strip().to_numpy()
        uniq_t = np.unique(text)
        names = [str(u) for u in uniq_t]
        codes_present = np.searchsorted(uniq_t, text)
    codes = np.full(len(s), -1, dtype=np.int64)
    codes[~missing] = codes_present
    return codes, names


def _label_key(value: object) -> str:
    """One spelling per label for matching: numbers by value (``2``, ``2.0``, ``"2.0"``)."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if number != number or number in (float("inf"), float("-inf")):
        return text
    return repr(int(number)) if number.is_integer() else repr(number)


def map_labels(values: Sequence[object], mapping: dict[Any, Any], *, source: str) -> list[object]:
    """Replace every label by ``mapping[label]`` (missing labels stay missing).

    >>> map_labels(["0.0", "3.0", None, 2], {0: "low", 2: "high", 3: "high"}, source="x")
    ['low', 'high', None, 'high']
    """
    import pandas as pd

    table: dict[str, object] = {}
    for k, v in mapping.items():
        key = _label_key(k)
        if key in table and str(table[key]) != str(v):
            raise EnrichError(f"label_map: {k!r} is mapped twice ({table[key]!r} and {v!r})")
        table[key] = str(v).strip()
    out: list[object] = []
    unknown: dict[str, int] = {}
    for value in values:
        if (
            value is None
            or (not isinstance(value, str) and bool(pd.isna(value)))  # type: ignore[call-overload]
            or str(value).strip() == ""
        ):
            out.append(None)
            continue
        key = _label_key(value)
        if key not in table:
            unknown[str(value)] = unknown.get(str(value), 0) + 1
            out.append(None)
        else:
            out.append(table[key])
    if unknown:
        shown = ", ".join(f"{v!r} ({n} image(s))" for v, n in list(unknown.items())[:5])
        raise EnrichError(
            f"{source}: label(s) {shown} not in label_map; expected one of "
            f"{', '.join(repr(k) for k in mapping)}"
        )
    return out


def resize_mask(mask: np.ndarray, size: int, *, crop: str | None = "center") -> np.ndarray:
    """Crop (centre square) and resize a class-index mask with nearest neighbours.

    >>> resize_mask(np.kron(np.eye(2, dtype=int), np.ones((2, 2), int)), 2).tolist()
    [[1, 0], [0, 1]]
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    if crop in ("center", "auto"):
        h, w = m.shape
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        m = m[top : top + s, left : left + s]
    h, w = m.shape
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(np.int64)
    return np.ascontiguousarray(m[np.ix_(rows, cols)])


def load_mask_file(path: str | os.PathLike[str], index: int | None = None) -> np.ndarray:
    """Read one mask: an image file, a ``.npy`` (H, W), or ``masks[index]`` of an ``.npz``."""
    p = Path(path)
    if not p.is_file():
        raise EnrichError(f"mask file {p} not found")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "masks" not in z.files:
                    raise EnrichError(f"{p}: no 'masks' array (has {', '.join(z.files)})")
                masks = z["masks"]
                arr = masks if masks.ndim == 2 else masks[int(index or 0)]
        else:
            from PIL import Image

            with Image.open(p) as im:
                arr = np.asarray(im)
    except EnrichError:
        raise
    except (OSError, ValueError, IndexError) as exc:
        raise EnrichError(f"cannot read mask {p} ({exc})") from None
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise EnrichError(f"mask {p} has shape {arr.shape}: expected a 2-D mask")
    return arr


def _binarize_255(masks: np.ndarray) -> np.ndarray:
    vals = np.unique(masks)
    if vals.max(initial=0) > 1 and set(vals.tolist()) <= {0, 255}:
        return (masks > 0).astype(np.int64)
    return masks.astype(np.int64)


@dataclass
class BenchmarkData:
    """Everything the protocol reads, row-aligned.

    Attributes
    ----------
    ids : ndarray of shape (n,) of str
    vectors : ndarray of shape (n, d), float32
        Embeddings; the only thing selection sees.
    manifest : DataFrame of shape (n, ...)
        ``id`` plus, where known, ``label``, ``patient_id``, ``clip_id``, ``split``,
        ``mask_path``.
    source : str
        Where the data came from (a workspace path, or ``arrays``).
    """

    ids: np.ndarray
    vectors: np.ndarray
    manifest: pd.DataFrame
    source: str = "arrays"
    meta: dict[str, Any] = field(default_factory=dict)
    read_options: dict[str, Any] = field(default_factory=dict)
    _image_reader: Callable[[np.ndarray, Any], np.ndarray] | None = field(default=None, repr=False)
    _mask_reader: Callable[[np.ndarray], list[np.ndarray]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_workspace(cls, path: str | os.PathLike[str]) -> BenchmarkData:
        """A workspace's manifest and embeddings (aligned); pixels are read on demand."""
        from enrich.workspace import Workspace

        ws = Workspace.open(path)
        manifest = ws.manifest()
        emb = ws.embeddings()
        data = cls(
            ids=emb.ids,
            vectors=emb.vectors,
            manifest=manifest,
            source=str(ws.path.resolve()),
            meta=dict(emb.meta),
        )
        data.read_options = _workspace_read_options(ws.model_dir / "config.json")
        data._image_reader = data._read_workspace_images
        data._mask_reader = data._read_workspace_masks
        return data

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        *,
        vectors: np.ndarray,
        labels: Sequence[object] | np.ndarray | None = None,
        masks: np.ndarray | None = None,
        ids: Sequence[str] | np.ndarray | None = None,
        **columns: Sequence[object] | np.ndarray,
    ) -> BenchmarkData:
        """In-memory data (the Python API and tests).

        Parameters
        ----------
        images : ndarray of shape (n, H, W)
        vectors : ndarray of shape (n, d)
        labels : sequence of length n, optional
        masks : ndarray of shape (n, H, W), optional
        ids : sequence of str, optional
            Default ``"0".."n-1"``.
        **columns
            Extra manifest columns, e.g. ``patient_id=...``, ``split=...``.
        """
        import pandas as pd

        imgs = np.asarray(images)
        n = len(imgs)
        ids_arr = np.arange(n).astype(str) if ids is None else np.asarray(ids).astype(str)
        vec = np.asarray(vectors, dtype=np.float32)
        if len(ids_arr) != n or len(vec) != n:
            raise EnrichError(
                f"{n} images, {len(ids_arr)} ids and {len(vec)} vectors: expected equal lengths"
            )
        frame: dict[str, Any] = {"id": ids_arr}
        if labels is not None:
            frame["label"] = list(labels)
        for name, col in columns.items():
            frame[name] = list(col)
        manifest = pd.DataFrame(frame)
        data = cls(ids=ids_arr, vectors=vec, manifest=manifest)
        from enrich.preprocess import Preprocess

        def read_images(rows: np.ndarray, pre: Preprocess) -> np.ndarray:
            return np.stack([pre(imgs[r]) for r in rows]).astype(np.float32)

        data._image_reader = read_images
        if masks is not None:
            m = np.asarray(masks)
            data._mask_reader = lambda rows: [m[r] for r in rows]
        return data

    # -- pixels --------------------------------------------------------------------------------
    def load_images(
        self, rows: np.ndarray, *, size: int, preprocess: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Images of `rows`, preprocessed to ``(len(rows), size, size)`` float32 in [0, 1]."""
        from enrich.preprocess import Preprocess

        opts = {**(preprocess or {}), "size": size, "grayscale": True}
        pre = Preprocess.from_dict(opts)
        if self._image_reader is None:
            raise EnrichError("this benchmark data has no images")
        return self._image_reader(np.asarray(rows, dtype=np.int64), pre)

    def has_masks(self) -> bool:
        if "mask_path" in self.manifest.columns and self.manifest["mask_path"].notna().any():
            return True
        if self._mask_reader is None:
            return False
        if self.source == "arrays":
            return True
        return self._npz_sources_with_masks()

    def load_masks(self, rows: np.ndarray, *, size: int, crop: str | None = "center") -> np.ndarray:
        """Masks of `rows` as class indices, ``(len(rows), size, size)`` int64."""
        rows = np.asarray(rows, dtype=np.int64)
        if "mask_path" in self.manifest.columns and self.manifest["mask_path"].notna().any():
            raw = self._read_mask_column(rows)
        elif self._mask_reader is not None:
            raw = self._mask_reader(rows)
        else:
            raise EnrichError(
                f"{self.source}: segmentation needs masks: add a manifest column 'mask_path' or "
                "use .npz sources that hold a 'masks' array"
            )
        out = np.stack([resize_mask(m, size, crop=crop) for m in raw])
        return _binarize_255(out)

    def _read_mask_column(self, rows: np.ndarray) -> list[np.ndarray]:
        man = self.manifest
        base = Path(self.source) if self.source != "arrays" else Path.cwd()
        paths = man["mask_path"].to_numpy(dtype=object)
        missing = [
            str(man["id"].iloc[r])
            for r in rows
            if paths[r] is None or str(paths[r]) in ("", "nan", "<NA>")
        ]
        if missing:
            raise EnrichError(f"{len(missing)} image(s) have no mask_path: {first_few(missing)}")
        index_col = "mask_frame" if "mask_frame" in man.columns else "frame"
        out = []
        for r in rows:
            p = Path(str(paths[r]))
            if not p.is_absolute() and not p.exists():
                p = base / p
            idx = None
            if index_col in man.columns and not _isna(man[index_col].iloc[r]):
                idx = int(man[index_col].iloc[r])
            out.append(load_mask_file(p, idx))
        return out

    # -- workspace readers ----------------------------------------------------------------------
    def _read_workspace_images(self, rows: np.ndarray, pre: Any) -> np.ndarray:
        try:
            from enrich.io import read_frames
        except ImportError:
            raise EnrichError(
                "reading images needs enrich.io.read_frames, which is not available in this "
                "installation"
            ) from None
        sub = self.manifest.iloc[rows]
        got: dict[str, np.ndarray] = {}
        for item in read_frames(sub, preprocess=pre, order="file", **self.read_options):
            image_id, img = item[0], item[1]
            got[str(image_id)] = np.asarray(img, dtype=np.float32)
        wanted = sub["id"].astype(str).tolist()
        missing = [w for w in wanted if w not in got]
        if missing:
            raise EnrichError(
                f"{len(missing)} image(s) of the manifest could not be read: {first_few(missing)}"
            )
        return np.stack([got[w] for w in wanted])

    def _npz_sources_with_masks(self) -> bool:
        srcs = self.manifest["source_path"].astype(str)
        npz = sorted(set(srcs[srcs.str.lower().str.endswith(".npz")]))
        for s in npz:
            try:
                with np.load(fs_path(s), allow_pickle=False) as z:
                    if "masks" in z.files:
                        return True
            except (OSError, ValueError):
                continue
        return False

    def _read_workspace_masks(self, rows: np.ndarray) -> list[np.ndarray]:
        man = self.manifest
        out: list[np.ndarray] = []
        cache: dict[str, np.ndarray] = {}
        for r in rows:
            src = str(man["source_path"].iloc[r])
            if not src.lower().endswith(".npz"):
                raise EnrichError(
                    f"{src}: no mask for this image; add a manifest column 'mask_path' "
                    "(segmentation needs a mask per image)"
                )
            if src not in cache:
                try:
                    with np.load(fs_path(src), allow_pickle=False) as z:
                        if "masks" not in z.files:
                            raise EnrichError(f"{src}: no 'masks' array beside the images")
                        cache[src] = z["masks"]
                except (OSError, ValueError) as exc:
                    raise EnrichError(f"cannot read masks from {src} ({exc})") from None
            masks = cache[src]
            frame = man["frame"].iloc[r]
            key = str(man["id"].iloc[r]).rsplit("#", 1)[-1] if "#" in str(man["id"].iloc[r]) else ""
            index = int(frame) if not _isna(frame) else 0
            if "/" in key and key.rsplit("/", 1)[-1].isdigit():
                index = int(key.rsplit("/", 1)[-1])
            if masks.ndim == 2:
                out.append(masks)
            elif index >= len(masks):
                raise EnrichError(f"{src}: masks has {len(masks)} entries, no index {index}")
            else:
                out.append(masks[index])
        return out


def _workspace_read_options(config: Path) -> dict[str, Any]:
    """The readers' options the embedder used (``nifti_axis``, ``video_step``, ``npz_key``),
    so that the models see the same frames; {} when the workspace does not record them."""
    import json

    try:
        saved = json.loads(config.read_text(encoding="utf-8"))
        opts = saved["pipeline"]["read_options"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    allowed = ("nifti_axis", "video_step", "npz_key")
    return {k: v for k, v in opts.items() if k in allowed} if isinstance(opts, dict) else {}


def _isna(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False

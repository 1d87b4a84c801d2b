"""Image preprocessing as in the paper (Chinn et al. 2023, Methods, "Image processing").

Every step is a pure function from an array to a new array, so that each can be tested
alone; :class:`Preprocess` composes them in a fixed order and is recorded in configs with
:meth:`Preprocess.to_dict` / :meth:`Preprocess.from_dict`.

The order in :meth:`Preprocess.__call__` is::

    rescale_intensity → to_grayscale → remove_oct_white_edge → crop → resize → clip to [0, 1]

Pixel work is done by maintained libraries: Pillow resamples (antialiased bilinear, as the
paper's scikit-image resize), SciPy finds the connected white regions of OCT scans. The
grayscale weights are OpenCV's ``cvtColor(..., COLOR_RGB2GRAY)`` (ITU-R BT.601), the
conversion the paper used.

>>> import numpy as np
>>> from enrich.preprocess import Preprocess
>>> img = np.random.default_rng(0).integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
>>> Preprocess(size=64)(img).shape
(64, 64)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from enrich.errors import EnrichError

__all__ = [
    "Preprocess",
    "autocrop_borders",
    "center_crop",
    "remove_oct_white_edge",
    "rescale_intensity",
    "resize",
    "to_grayscale",
]

# ITU-R BT.601 luma, as OpenCV's COLOR_RGB2GRAY (the paper converted with OpenCV).
_BT601_F64 = (0.299, 0.587, 0.114)

IntensityMode = Literal["auto", "dtype", "minmax", "percentile"]
CropMode = Literal["center", "auto"]


def _check_image(img: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4)):
        raise EnrichError(
            f"{name} has shape {img.shape}; expected (H, W) or (H, W, C) with C in 1..4"
        )
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise EnrichError(f"{name} has shape {img.shape}; expected a non-empty image")
    return img


def rescale_intensity(
    img: np.ndarray,
    *,
    mode: IntensityMode = "auto",
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """Map intensities to float32 in [0, 1].

    Parameters
    ----------
    img : ndarray of shape (H, W) or (H, W, C)
        Any numeric dtype: 8- or 16-bit integers, or floats (e.g. CT in Hounsfield units).
    mode : {"auto", "dtype", "minmax", "percentile"}
        - ``"dtype"``: divide by the dtype's range (``uint8`` → /255, ``uint16`` → /65535);
          floats are clipped to [0, 1].
        - ``"minmax"``: per image, ``(x - min) / (max - min)``.
        - ``"percentile"``: per image, map the ``percentiles`` to 0 and 1, then clip. Robust
          for 16-bit images whose few hot pixels would darken a min–max rescale.
        - ``"auto"`` (default): ``uint8`` and ``bool`` as ``"dtype"`` (absolute brightness
          is kept, as the paper's 8-bit inputs); floats already in [0, 1] unchanged; all
          others (16-bit, signed, HU floats) as ``"minmax"``.
    percentiles : (low, high)
        Used by ``"percentile"``; ``0 <= low < high <= 100``.

    Returns
    -------
    ndarray of float32, same shape as `img`, values in [0, 1]
        A constant image maps to zeros.

    Examples
    --------
    >>> import numpy as np
    >>> rescale_intensity(np.array([[0, 1024], [2048, 4095]], dtype=np.uint16)).max()
    np.float32(1.0)
    """
    img = np.asarray(img)
    if mode not in ("auto", "dtype", "minmax", "percentile"):
        raise EnrichError(
            f"intensity mode {mode!r} is not known; expected auto, dtype, minmax or percentile"
        )
    lo_p, hi_p = (float(p) for p in percentiles)
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise EnrichError(f"percentiles={percentiles}; expected 0 <= low < high <= 100")
    if img.dtype == bool:
        return img.astype(np.float32)
    if mode == "auto":
        if img.dtype == np.uint8:
            mode = "dtype"
        elif img.dtype.kind == "f" and img.size and np.nanmin(img) >= 0.0 and np.nanmax(img) <= 1.0:
            return np.nan_to_num(img.astype(np.float32, copy=False), nan=0.0)
        else:
            mode = "minmax"
    x = img.astype(np.float32)
    if mode == "dtype" and img.dtype.kind in "ui":
        info = np.iinfo(img.dtype)
        if info.min:
            x -= np.float32(info.min)
        x /= np.float32(float(info.max) - float(info.min))
        return x
    if img.dtype.kind == "f":
        x = np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if mode == "dtype":
        return np.clip(x, 0.0, 1.0, out=x)
    if mode == "minmax":
        lo, hi = float(x.min()), float(x.max())
    else:
        lo, hi = (float(v) for v in np.percentile(x, [lo_p, hi_p]))
    if not hi > lo:
        return np.zeros_like(x)
    if np.isfinite(hi - lo):
        x -= np.float32(lo)
        x /= np.float32(hi - lo)
    else:  # a range beyond float32: scale in float64
        x = ((x.astype(np.float64) - lo) / (float(hi) - float(lo))).astype(np.float32)
    return np.clip(x, 0.0, 1.0, out=x)


def to_grayscale(img: np.ndarray) -> np.ndarray:
    """Convert an RGB(A) image to one channel with OpenCV's BT.601 weights.

    Parameters
    ----------
    img : ndarray of shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4)
        Gray images pass through (a trailing channel axis is dropped); alpha is ignored.

    Returns
    -------
    ndarray of shape (H, W)
        Gray input keeps its dtype; colour input becomes float32 in the input's units.

    Examples
    --------
    >>> import numpy as np
    >>> to_grayscale(np.full((2, 2, 3), 200, dtype=np.uint8))[0, 0]
    np.float32(200.0)
    """
    img = _check_image(img)
    if img.ndim == 2:
        return img
    if img.shape[2] in (1, 2):  # gray, or gray + alpha
        return img[..., 0]
    # Elementwise in float64, rounded once: the same bits on every CPU. A BLAS product
    # (`rgb @ weights`) rounds differently from one CPU kernel to another, which changed
    # the data fingerprint of colour training images, so a shipped model did not match.
    rgb = img[..., :3].astype(np.float64)
    w = _BT601_F64
    return (rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2]).astype(np.float32)


def center_crop(img: np.ndarray, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Crop the centre of an image.

    Parameters
    ----------
    img : ndarray of shape (H, W) or (H, W, C)
    size : int or (height, width), optional
        The crop size; by default the largest centred square, ``min(H, W)``. A size larger
        than the image along an axis keeps that axis whole.

    Returns
    -------
    ndarray of shape (h, w) or (h, w, C)
        A view into `img`.

    Examples
    --------
    >>> import numpy as np
    >>> center_crop(np.zeros((300, 400))).shape
    (300, 300)
    """
    img = _check_image(img)
    h, w = img.shape[:2]
    if size is None:
        ch = cw = min(h, w)
    elif isinstance(size, (int, np.integer)):
        ch = cw = int(size)
    else:
        ch, cw = (int(s) for s in size)
    if ch <= 0 or cw <= 0:
        raise EnrichError(f"crop size {size!r}; expected positive integers")
    ch, cw = min(ch, h), min(cw, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top : top + ch, left : left + cw]


def autocrop_borders(
    img: np.ndarray, *, value: float | None = None, tol: float | None = None
) -> np.ndarray:
    """Remove constant borders (black frames, letterboxing) around the image content.

    The background value is `value`, or the median of the four corner pixels. Pixels that
    differ from it by more than `tol` are content; the result is their bounding box.

    Parameters
    ----------
    img : ndarray of shape (H, W) or (H, W, C)
    value : float, optional
        The border value; by default the median of the corners.
    tol : float, optional
        By default 2 % of the dtype range for integers, else 2 % of ``max - min``.

    Returns
    -------
    ndarray
        A view into `img`; the whole image when no border is found or nothing differs from
        the background.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((10, 10), dtype=np.uint8); x[2:5, 3:9] = 200
    >>> autocrop_borders(x).shape
    (3, 6)
    """
    img = _check_image(img)
    g = img.astype(np.float32)
    if g.ndim == 3:
        g = g[..., : min(3, g.shape[2])]
    if value is None:
        corners = np.stack([g[0, 0], g[0, -1], g[-1, 0], g[-1, -1]])
        bg = np.median(corners, axis=0)
    else:
        bg = np.float32(value)
    if tol is None:
        if img.dtype.kind in "ui":
            info = np.iinfo(img.dtype)
            tol = 0.02 * float(info.max - info.min)
        else:
            tol = 0.02 * float(np.ptp(g)) if g.size else 0.0
    diff = np.abs(g - bg)
    content = diff.max(axis=2) > tol if diff.ndim == 3 else diff > tol
    rows = np.flatnonzero(content.any(axis=1))
    cols = np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return img
    return img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def resize(img: np.ndarray, size: int | tuple[int, int] = 64) -> np.ndarray:
    """Resize with Pillow's antialiased bilinear filter.

    Parameters
    ----------
    img : ndarray of shape (H, W) or (H, W, C)
    size : int or (height, width)
        The output size; 64×64 (the β-VAE's input) by default.

    Returns
    -------
    ndarray of float32, shape (height, width) or (height, width, C)
        Values in the input's units (no rescaling).

    Examples
    --------
    >>> import numpy as np
    >>> resize(np.zeros((300, 400), dtype=np.uint8)).shape
    (64, 64)
    """
    from PIL import Image

    img = _check_image(img)
    if isinstance(size, (int, np.integer)):
        out_h = out_w = int(size)
    else:
        out_h, out_w = (int(s) for s in size)
    if out_h <= 0 or out_w <= 0:
        raise EnrichError(f"resize size {size!r}; expected positive integers")
    x = img.astype(np.float32, copy=False)
    channels = [x] if x.ndim == 2 else [x[..., c] for c in range(x.shape[2])]
    out = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(ch), mode="F").resize(
                (out_w, out_h), Image.Resampling.BILINEAR
            ),
            dtype=np.float32,
        )
        for ch in channels
    ]
    return out[0] if x.ndim == 2 else np.stack(out, axis=-1)


def remove_oct_white_edge(
    img: np.ndarray,
    *,
    threshold: float | None = None,
    trim: float = 0.5,
    fill: float | Literal["median"] = "median",
    min_width: int = 5,
) -> np.ndarray:
    """Remove the white padding that OCT B-scans carry at their edges.

    Kermany OCT scans are shifted during acquisition (registration); the uncovered area is
    filled with white (255) wedges along the top or bottom edge, sometimes down a side. The
    paper removed them before cropping. Here a pixel is "white edge" when it is at least
    `threshold` and belongs to a white region that touches the image border and is either
    at least `min_width` pixels thick or a long strip lying along that border (so bright
    but thin retinal layers, which cross the side edges, are kept). Then

    1. rows and columns at the edges that are at least `trim` white edge are cut off;
    2. the white edge left inside (the wedge tips) is set to `fill`.

    Parameters
    ----------
    img : ndarray of shape (H, W)
        A grayscale scan (integers or floats).
    threshold : float, optional
        By default 98 % of the dtype's maximum for integers, 0.98 for floats in [0, 1],
        else 98 % of the image maximum.
    trim : float in (0, 1]
        The white fraction above which an edge row or column is cut.
    fill : float or "median"
        The value for the remaining white edge; ``"median"`` is the median of the other
        pixels (the dark vitreous/background of a B-scan).
    min_width : int
        The thickness (pixels) a white region needs to count as padding.

    Returns
    -------
    ndarray of shape (h, w), the input's dtype
        A new array; unchanged content when there is no white edge.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.full((50, 60), 40, dtype=np.uint8); x[:10] = 255
    >>> remove_oct_white_edge(x).shape
    (40, 60)
    """
    from scipy import ndimage

    img = _check_image(img)
    if img.ndim != 2:
        raise EnrichError(f"image has shape {img.shape}; OCT white-edge removal needs (H, W)")
    if not 0.0 < trim <= 1.0:
        raise EnrichError(f"trim={trim}; expected a fraction in (0, 1]")
    if threshold is None:
        if img.dtype.kind in "ui":
            threshold = 0.98 * float(np.iinfo(img.dtype).max)
        else:
            top = float(np.nanmax(img)) if img.size else 1.0
            threshold = 0.98 * (1.0 if top <= 1.0 else top)
    white = img >= threshold
    if not white.any():
        return img.copy()
    # Seeds: solid white blobs touching any edge, and long white strips lying along an
    # edge (a wedge's thin tail: horizontal at the top/bottom, vertical at the sides).
    # Openings drop thin bright structures that are not padding (retinal layers, speckle).
    k = max(int(min_width), 1)
    line = max(3 * k, 15)
    blobs = _opening(white, (k, k))
    hstrips = _opening(white, (1, line))
    vstrips = _opening(white, (line, 1))
    seeds = (
        _touching(blobs, top=True, bottom=True, left=True, right=True)
        | _touching(hstrips, top=True, bottom=True)
        | _touching(vstrips, left=True, right=True)
    )
    if not seeds.any():
        return img.copy()
    # regrow within the white mask to recover the wedges' tips
    padding = ndimage.binary_propagation(seeds, mask=white)
    # JPEG ringing leaves a light seam along the wedges: grow them by 2 px into pixels
    # that are still bright (at least 3/4 of the threshold).
    padding = ndimage.binary_dilation(padding, iterations=2, mask=img >= 0.75 * threshold)

    # 1. trim edge rows/columns that are mostly padding
    row_frac, col_frac = padding.mean(axis=1), padding.mean(axis=0)
    top, bottom, left, right = 0, img.shape[0], 0, img.shape[1]
    while top < bottom - 1 and row_frac[top] >= trim:
        top += 1
    while bottom - 1 > top and row_frac[bottom - 1] >= trim:
        bottom -= 1
    while left < right - 1 and col_frac[left] >= trim:
        left += 1
    while right - 1 > left and col_frac[right - 1] >= trim:
        right -= 1
    out = img[top:bottom, left:right].copy()
    rest = padding[top:bottom, left:right]
    # 2. neutralise what is left
    if rest.any():
        if fill == "median":
            keep = out[~rest]
            value = float(np.median(keep)) if keep.size else 0.0
        else:
            value = float(fill)
        out[rest] = np.asarray(value).astype(out.dtype)
    return out


def _opening(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary opening by a rectangle, with SciPy's separable min/max filters (fast)."""
    from scipy import ndimage

    m = mask.view(np.uint8)
    opened = ndimage.maximum_filter(
        ndimage.minimum_filter(m, size=shape, mode="nearest"), size=shape, mode="nearest"
    )
    return opened.astype(bool)


def _touching(
    mask: np.ndarray,
    *,
    top: bool = False,
    bottom: bool = False,
    left: bool = False,
    right: bool = False,
) -> np.ndarray:
    """The connected components of `mask` that touch the named image edges."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    edges = [e for e, on in ((labels[0], top), (labels[-1], bottom)) if on]
    edges += [e for e, on in ((labels[:, 0], left), (labels[:, -1], right)) if on]
    ids = np.unique(np.concatenate(edges))
    return np.isin(labels, ids[ids > 0])


@dataclass(frozen=True)
class Preprocess:
    """The paper's preprocessing as one configurable, recordable step.

    Parameters
    ----------
    grayscale : bool
        Convert colour to gray (BT.601). With ``False`` colour images keep 3 channels.
    crop : {"center", "auto", None}
        ``"center"``: the largest centred square; ``"auto"``: cut constant borders, then the
        largest centred square; ``None``: no crop (the resize may change the aspect ratio).
    size : int or None
        Output side length (64 for the β-VAE); ``None`` keeps the size.
    oct_white_edge : bool
        Apply :func:`remove_oct_white_edge` (the paper's extra OCT step) before cropping.
    intensity : {"auto", "dtype", "minmax", "percentile"}
        See :func:`rescale_intensity`.
    percentiles : (float, float)
        For ``intensity="percentile"``.

    Examples
    --------
    >>> p = Preprocess(crop="auto", size=32)
    >>> Preprocess.from_dict(p.to_dict()) == p
    True
    """

    grayscale: bool = True
    crop: CropMode | None = "center"
    size: int | None = 64
    oct_white_edge: bool = False
    intensity: IntensityMode = "auto"
    percentiles: tuple[float, float] = (1.0, 99.0)

    def __post_init__(self) -> None:
        if self.crop not in ("center", "auto", None):
            raise EnrichError(f"crop={self.crop!r}; expected 'center', 'auto' or None")
        if self.size is not None and (
            isinstance(self.size, bool)
            or not isinstance(self.size, (int, np.integer))
            or self.size < 1
        ):
            raise EnrichError(f"size={self.size!r}; expected a positive integer or None")
        if self.intensity not in ("auto", "dtype", "minmax", "percentile"):
            raise EnrichError(
                f"intensity={self.intensity!r}; expected auto, dtype, minmax or percentile"
            )
        pct = tuple(float(p) for p in self.percentiles)
        if len(pct) != 2 or not 0.0 <= pct[0] < pct[1] <= 100.0:
            raise EnrichError(f"percentiles={self.percentiles!r}; expected 0 <= low < high <= 100")
        object.__setattr__(self, "percentiles", pct)
        if self.size is not None:
            object.__setattr__(self, "size", int(self.size))

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """Preprocess one image.

        Parameters
        ----------
        img : ndarray of shape (H, W) or (H, W, C)

        Returns
        -------
        ndarray of float32, shape (size, size) (or (size, size, 3) without grayscale)
            Values in [0, 1].
        """
        x = _check_image(img)
        x = rescale_intensity(x, mode=self.intensity, percentiles=self.percentiles)
        if self.grayscale:
            x = to_grayscale(x)
        elif x.ndim == 3:
            x = x[..., :3] if x.shape[2] >= 3 else np.repeat(x[..., :1], 3, axis=2)
        if self.oct_white_edge:
            x = remove_oct_white_edge(to_grayscale(x) if x.ndim == 3 else x)
        if self.crop == "auto":
            x = center_crop(autocrop_borders(x))
        elif self.crop == "center":
            x = center_crop(x)
        if self.size is not None:
            x = resize(x, self.size)
        return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain JSON-able values."""
        d = dataclasses.asdict(self)
        d["percentiles"] = list(self.percentiles)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocess:
        """Rebuild from :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EnrichError(
                f"unknown preprocessing option(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(names))}"
            )
        kw = dict(d)
        if "percentiles" in kw:
            kw["percentiles"] = tuple(kw["percentiles"])
        return cls(**kw)

"""NIfTI volumes through nibabel (extra ``enrich-imaging[nifti]``).

A volume is a clip and its 2-D slices along one spatial axis are the frames
(``ct/vol.nii.gz#42``). ``axis`` counts the three spatial axes (default ``-1``: the last,
usually axial). A 4-D series (x, y, z, t) has ``t * n_slices + slice`` as frame index.
A 2-D file is one image. Slices come out as ``np.rot90`` of the (i, j) plane, so that
``+j`` points up as in most viewers, with the file's scaling (``scl_slope``) applied.

Discovery reads the header only. Reading maps an uncompressed ``.nii`` from disk and
slices it; a ``.nii.gz`` is decompressed once per file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from enrich.errors import EnrichError
from enrich.io._base import FrameRecord, Reader, require

__all__ = ["NiftiReader"]


class NiftiReader(Reader):
    """NIfTI-1/2 files (``.nii``, ``.nii.gz``).

    Parameters
    ----------
    axis : int
        The spatial axis to slice along: 0, 1, 2 or -1..-3.
    """

    name: ClassVar[str] = "nifti"
    suffixes: ClassVar[tuple[str, ...]] = (".nii", ".nii.gz")

    def __init__(self, *, axis: int = -1) -> None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -3 <= axis <= 2:
            raise EnrichError(f"nifti_axis={axis!r}; expected one of 0, 1, 2, -1, -2, -3")
        self.axis = int(axis) % 3

    def options(self) -> dict[str, Any]:
        return {"nifti_axis": self.axis}

    def _load(self, path: str | Path) -> Any:
        nib = require("nibabel", "nifti")
        img = nib.load(str(path))
        if len(img.shape) < 2:
            raise ValueError(f"NIfTI image has shape {img.shape}; expected at least 2-D")
        return img

    def _layout(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(slices per volume, volumes) for a shape."""
        if len(shape) == 2:
            return 1, 1
        n_slices = int(shape[self.axis])
        n_vol = int(np.prod(shape[3:], dtype=np.int64)) if len(shape) > 3 else 1
        return n_slices, n_vol

    def count(self, path: str | Path) -> list[FrameRecord]:
        img = self._load(path)
        # The header's shape must fit in the file (a .nii.gz within deflate's ~1032:1).
        need = int(np.prod(img.shape, dtype=np.int64)) * img.get_data_dtype().itemsize
        size = os.path.getsize(path)
        gz = str(path).lower().endswith(".gz")
        if (gz and need > 1100 * size) or (not gz and need + img.header.get_data_offset() > size):
            raise ValueError(
                f"truncated NIfTI: shape {tuple(img.shape)} needs {need} bytes of data, "
                f"the file has {size}"
            )
        n_slices, n_vol = self._layout(tuple(img.shape))
        n = n_slices * n_vol
        return [FrameRecord(i, key=str(i)) for i in range(n)]

    def _index(self, shape: tuple[int, ...], frame: int) -> tuple[Any, ...]:
        if len(shape) == 2:
            return (slice(None), slice(None))
        n_slices, _ = self._layout(shape)
        vol, sl = divmod(frame, n_slices)
        idx: list[Any] = [slice(None)] * 3
        idx[self.axis] = sl
        if len(shape) > 3:
            idx.extend(int(v) for v in np.unravel_index(vol, shape[3:]))
        return tuple(idx)

    def read(
        self, path: str | Path, frames: Iterable[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        img = self._load(path)
        shape = tuple(int(s) for s in img.shape)
        n_slices, n_vol = self._layout(shape)
        n = n_slices * n_vol
        wanted = range(n) if frames is None else frames
        # A .gz stream cannot seek cheaply: decompress the volume once.
        data = np.asanyarray(img.dataobj) if str(path).lower().endswith(".gz") else img.dataobj
        for i in wanted:
            if not 0 <= i < n:
                raise ValueError(f"frame {i} is out of range (the file has {n})")
            sl = np.asarray(data[self._index(shape, int(i))])
            if sl.ndim != 2:
                raise ValueError(f"slice {i} has shape {sl.shape}; expected 2-D")
            if sl.dtype.kind == "f":
                sl = sl.astype(np.float32, copy=False)
            yield int(i), np.ascontiguousarray(np.rot90(sl))

"""Image arrays in NumPy ``.npz`` files (the layout of the project's ``data/``).

Recognised layouts (``K`` is the images key, ``"images"`` by default):

- split arrays ``train_K, val_K, test_K`` (PneumoniaMNIST, CIFAR) with optional
  ``<split>_labels`` and ``<split>_patient_id`` / ``<split>_subject_id``;
- one array ``K`` (HC18: ``images``), or the first ``images_*`` key in sorted order when
  there is no ``images`` (OCT: ``images_256``), with optional ``labels``, ``patient_id``
  or ``subject_id``;
- an ``.npz`` with a single array of shape (N, H, W) or (N, H, W, C).

Arrays are (N, H, W), (N, H, W, C) or channel-first (N, C, H, W) with C in 1..4. For an
images key ending in ``_padded`` with an ``orig_hw`` array (OCT ``images_native_padded``),
each image is cropped back to its original size.

Ids: ``file.npz#<split>/<i>`` (``data.npz#train/17``) for split layouts, else
``file.npz#<i>``; ``i`` is the row in that array. The manifest's ``frame`` is the position
in the file's order (the splits in the order train, val/valid/validation, test, then
others alphabetically), and ``split`` is filled in. Labels are strings (``"0"``, ``"1"``).
Per-image masks (HC18 ``masks``) are not labels and are not read.

Discovery reads only the array headers (shapes) and the small label and id arrays.
Reading decompresses one images array at a time.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from enrich.io._base import FrameRecord, Reader

__all__ = ["NpzReader"]

_SPLITS = ("train", "val", "valid", "validation", "test")


@dataclass(frozen=True)
class _Group:
    split: str | None
    key: str
    n: int
    start: int  # first frame index of this group in the file


def _npy_shape(zf: zipfile.ZipFile, key: str) -> tuple[int, ...]:
    with zf.open(key + ".npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape)


# Deflate expands at most ~1032:1; a member claiming more than this is lying about its size.
_MAX_DEFLATE_RATIO = 1100


def _check_claim(zf: zipfile.ZipFile, key: str, shape: tuple[int, ...]) -> None:
    """Refuse an array whose header claims more data than the file can hold.

    A 374-byte file whose header claims 3 million images would otherwise cost a
    3-million-row manifest (and a training sample drawn from it) before anything is read.
    """
    info = zf.getinfo(key + ".npy")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(fh)
        header = fh.tell()
    need = header + math.prod(shape) * dtype.itemsize
    if need > info.file_size:
        raise ValueError(
            f"npz array {key!r} claims shape {shape} ({need} bytes) but holds "
            f"{info.file_size} bytes: truncated or corrupt"
        )
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size < info.file_size:
            raise ValueError(f"npz array {key!r} is truncated")
    elif info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1):
        raise ValueError(
            f"npz array {key!r} claims {info.file_size} bytes from {info.compress_size} "
            "compressed bytes, more than compression allows: corrupt"
        )


def _is_image_stack(shape: tuple[int, ...]) -> bool:
    if len(shape) == 3:
        return True
    return len(shape) == 4 and (shape[3] in (1, 2, 3, 4) or shape[1] in (1, 3))


def _split_rank(split: str) -> tuple[int, str]:
    return (_SPLITS.index(split) if split in _SPLITS else len(_SPLITS), split)


class NpzReader(Reader):
    """Stacks of images in ``.npz`` files.

    Parameters
    ----------
    key : str, optional
        The images key (``"images_native_padded"``), or the suffix of split keys
        (``"images"`` for ``train_images``). By default ``"images"`` (see the module doc).
    """

    name: ClassVar[str] = "npz"
    suffixes: ClassVar[tuple[str, ...]] = (".npz",)
    clip_per_file: ClassVar[bool] = False

    def __init__(self, *, key: str | None = None) -> None:
        self.key = key
        self._cache: (
            tuple[tuple[Any, ...], dict[str, tuple[np.ndarray, np.ndarray | None]]] | None
        ) = None
        self._groups_cache: tuple[tuple[Any, ...], list[_Group]] | None = None

    def options(self) -> dict[str, Any]:
        return {"npz_key": self.key}

    def _groups(self, path: str | Path) -> list[_Group]:
        stat = Path(path).stat()
        tag = (str(Path(path).absolute()), stat.st_mtime_ns, stat.st_size)
        if self._groups_cache is not None and self._groups_cache[0] == tag:
            return self._groups_cache[1]
        groups = self._find_groups(path)
        self._groups_cache = (tag, groups)
        return groups

    def _find_groups(self, path: str | Path) -> list[_Group]:
        with zipfile.ZipFile(path) as zf:
            names = [n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")]
            want = self.key or "images"
            groups: list[tuple[str | None, str]] = []
            if want in names:
                groups = [(None, want)]
            else:
                pat = re.compile(rf"^(.+)_{re.escape(want)}$")
                split_keys = [(m.group(1), n) for n in names if (m := pat.match(n))]
                if split_keys:
                    groups = sorted(split_keys, key=lambda sk: _split_rank(str(sk[0])))
                elif self.key is not None:
                    raise ValueError(
                        f"npz has no array {self.key!r} or '<split>_{self.key}' "
                        f"(it has {', '.join(sorted(names))})"
                    )
                else:
                    prefixed = sorted(n for n in names if n.startswith("images_"))
                    if prefixed:
                        groups = [(None, prefixed[0])]
                    else:
                        stacks = [n for n in names if _is_image_stack(_npy_shape(zf, n))]
                        if len(stacks) != 1:
                            raise ValueError(
                                "npz has no 'images' array and no single image stack "
                                f"(arrays: {', '.join(sorted(names))})"
                            )
                        groups = [(None, stacks[0])]
            out: list[_Group] = []
            start = 0
            for split, key in groups:
                shape = _npy_shape(zf, key)
                if not _is_image_stack(shape):
                    raise ValueError(
                        f"npz array {key!r} has shape {shape}; expected (N, H, W) or (N, H, W, C)"
                    )
                _check_claim(zf, key, shape)
                out.append(_Group(split, key, shape[0], start))
                start += shape[0]
        return out

    @staticmethod
    def _strings(arr: Any, n: int) -> list[str | None] | None:
        a = np.asarray(arr)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1 or a.shape[0] != n:
            return None
        if a.dtype.kind == "f":
            return [
                None if np.isnan(v) else (str(int(v)) if float(v).is_integer() else str(v))
                for v in a
            ]
        return [str(v) for v in a.tolist()]

    def count(self, path: str | Path) -> list[FrameRecord]:
        groups = self._groups(path)
        records: list[FrameRecord] = []
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            for g in groups:
                prefix = f"{g.split}_" if g.split else ""
                labels = patients = None
                for k in (f"{prefix}labels", f"{prefix}label", f"{prefix}y"):
                    if k in files:
                        labels = self._strings(z[k], g.n)
                        break
                for k in (f"{prefix}patient_id", f"{prefix}subject_id"):
                    if k in files:
                        patients = self._strings(z[k], g.n)
                        break
                for i in range(g.n):
                    records.append(
                        FrameRecord(
                            g.start + i,
                            key=f"{g.split}/{i}" if g.split else str(i),
                            patient_id=patients[i] if patients else None,
                            label=labels[i] if labels else None,
                            split=g.split,
                        )
                    )
        return records

    def _stack(self, path: str | Path, group: _Group) -> tuple[np.ndarray, np.ndarray | None]:
        """The decompressed images array of `group` (and crop sizes), cached per reader.

        The arrays of the last file read stay in memory, so a stream that visits an
        ``.npz`` in many runs (a random subset of a manifest) decompresses each once.
        """
        stat = Path(path).stat()
        tag = (str(Path(path).absolute()), stat.st_mtime_ns, stat.st_size)
        if self._cache is None or self._cache[0] != tag:
            self._cache = None  # free the old arrays before loading new ones
            self._cache = (tag, {})
        arrays = self._cache[1]
        if group.key not in arrays:
            with np.load(path, allow_pickle=False) as z:
                stack = z[group.key]
                if stack.ndim == 4 and stack.shape[3] not in (1, 2, 3, 4):
                    stack = np.moveaxis(stack, 1, -1)  # channel-first
                hw = None
                if group.key.endswith("_padded") and group.split is None and "orig_hw" in z.files:
                    hw = np.asarray(z["orig_hw"]).reshape(-1, 2)
                    if len(hw) != stack.shape[0]:
                        hw = None
            arrays[group.key] = (stack, hw)
        return arrays[group.key]

    def read(
        self, path: str | Path, frames: Iterable[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        groups = self._groups(path)
        total = sum(g.n for g in groups)
        wanted = range(total) if frames is None else frames
        for i in wanted:
            i = int(i)
            if not 0 <= i < total:
                raise ValueError(f"frame {i} is out of range (the file has {total})")
            g = next(g for g in groups if g.start <= i < g.start + g.n)
            stack, hw = self._stack(path, g)
            img = stack[i - g.start]
            if hw is not None:
                h, w = (int(v) for v in hw[i - g.start])
                img = img[:h, :w]
            if img.ndim == 3 and img.shape[2] == 1:
                img = img[..., 0]
            yield i, np.ascontiguousarray(img)

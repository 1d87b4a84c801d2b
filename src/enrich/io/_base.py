"""The reader interface shared by every format.

A :class:`Reader` knows one family of files. Discovery asks it for :meth:`Reader.count`
(cheap: headers only where the format allows) and streaming asks it for
:meth:`Reader.read`. Optional libraries are imported inside the methods, through
:func:`require`, so that a missing one names the extra to install.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from enrich.errors import MissingExtraError

__all__ = ["FrameRecord", "Reader", "SkipFile", "require", "suffix_of"]


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One image inside a source file, as found by :meth:`Reader.count`.

    Attributes
    ----------
    frame : int
        The index that :meth:`Reader.read` takes (0 for single images).
    key : str or None
        The id suffix after ``#`` (``"17"``, ``"train/17"``); ``None`` for a file that holds
        one image, whose id is the bare path.
    patient_id, clip_id, label, split : str or None
        What the file itself says; ``None`` when unknown.
    modality, sop_class : str or None
        DICOM ``Modality`` (``CT``) and SOP class name (``Enhanced CT Image Storage``);
        ``None`` for other formats.
    """

    frame: int
    key: str | None = None
    patient_id: str | None = None
    clip_id: str | None = None
    label: str | None = None
    split: str | None = None
    modality: str | None = None
    sop_class: str | None = None


class SkipFile(ValueError):
    """A file that is left out, with a message that says why and what to do.

    Discovery and streaming record the message as the reason, as it is (no exception name).
    """


def suffix_of(path: str | Path) -> str:
    """The lower-case suffix, with double suffixes kept (``.nii.gz``)."""
    name = Path(path).name.lower()
    for double in (".nii.gz",):
        if name.endswith(double):
            return double
    return Path(name).suffix


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module.split(".")[0], extra) from exc


class Reader(ABC):
    """One image format.

    Subclasses set :attr:`name` and :attr:`suffixes` and implement :meth:`count` and
    :meth:`read`. Both raise on a corrupt file; discovery and streaming catch the error and
    record the file as skipped.

    Attributes
    ----------
    name : str
        Short name (``"dicom"``).
    suffixes : tuple of str
        Lower-case suffixes with the dot.
    clip_per_file : bool
        Whether the frames of one file form a clip (cine, video, volume); then discovery sets
        ``clip_id`` to the file's id when the file says nothing better.
    """

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    clip_per_file: ClassVar[bool] = True

    def verify(self, path: str | Path) -> bool:
        """Whether this reader handles `path` (by suffix)."""
        return suffix_of(path) in self.suffixes

    @abstractmethod
    def count(self, path: str | Path) -> list[FrameRecord]:
        """The images in `path`, from its header where possible.

        Returns
        -------
        list of FrameRecord
            In ascending ``frame`` order; empty when the file holds no image.
        """

    @abstractmethod
    def read(
        self, path: str | Path, frames: Iterable[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Decode images from `path`, opening it once.

        Parameters
        ----------
        path : path
        frames : iterable of int, optional
            Frame indices (as in :meth:`count`), ascending; all frames by default.

        Yields
        ------
        frame : int
        image : ndarray of shape (H, W) or (H, W, C)
            As stored: ``uint8``/``uint16`` for photos, ``float32`` after a DICOM rescale or
            window (windowed images are already in [0, 1]); colour as RGB.
        """

    def options(self) -> dict[str, Any]:
        """The options this reader was built with (recorded with the manifest)."""
        return {}

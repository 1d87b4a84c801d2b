"""Which reader handles which file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from enrich.io._base import Reader, suffix_of
from enrich.io.dicom import DicomReader, is_dicom
from enrich.io.nifti import NiftiReader
from enrich.io.npz import NpzReader
from enrich.io.pillow import PillowReader
from enrich.io.video import VideoReader

__all__ = ["READERS", "SUFFIXES", "make_readers", "reader_for"]

#: name → reader class, in lookup order.
READERS: dict[str, type[Reader]] = {
    "pillow": PillowReader,
    "dicom": DicomReader,
    "nifti": NiftiReader,
    "video": VideoReader,
    "npz": NpzReader,
}

#: every suffix some reader handles (other files are sniffed for DICOM).
SUFFIXES: tuple[str, ...] = tuple(s for cls in READERS.values() for s in cls.suffixes)


def make_readers(
    *,
    nifti_axis: int = -1,
    video_step: int = 1,
    npz_key: str | None = None,
    include_sop: str | Sequence[str] | None = None,
) -> dict[str, Reader]:
    """One configured reader per format, keyed by :attr:`Reader.name`.

    `include_sop`: non-image DICOM SOP classes to read anyway (:class:`DicomReader`).
    """
    return {
        "pillow": PillowReader(),
        "dicom": DicomReader(include_sop=include_sop),
        "nifti": NiftiReader(axis=nifti_axis),
        "video": VideoReader(step=video_step),
        "npz": NpzReader(key=npz_key),
    }


def reader_for(path: str | Path, readers: dict[str, Reader]) -> Reader | None:
    """The reader for `path` by its suffix; another file is DICOM if its preamble says so.

    DICOM files often have no suffix or a numeric one (``IM0001``, ``1.2.840.5``), so files
    with an unknown suffix are sniffed (132 bytes) for the ``DICM`` marker (or a DICOM tag
    at byte 0: files without preamble).
    """
    suffix = suffix_of(path)
    for reader in readers.values():
        if suffix in reader.suffixes:
            return reader
    if is_dicom(path):
        return readers["dicom"]
    return None

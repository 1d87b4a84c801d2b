"""Image readers: find every image in the user's sources and stream them.

One reader per format, behind one small interface (:class:`Reader`: ``suffixes``,
``verify(path)``, ``count(path)`` → frame records from headers, ``read(path, frames)`` →
``(frame, array)``):

========  ==================================  =================================  ===========
reader    files                               frames / ids                       library
========  ==================================  =================================  ===========
pillow    .png .jpg .jpeg .tif .tiff .bmp     one image; multi-page TIFF: ``#k``  Pillow
dicom     .dcm .dicom, or DICOM by content    multi-frame: ``a.dcm#k``             pydicom
nifti     .nii .nii.gz                        slices along an axis: ``v.nii#k``    nibabel
video     .avi .mp4 .mov .mkv .m4v .webm      every (k-th) frame: ``v.mp4#k``      PyAV
npz       .npz (the layout of ``data/``)      ``d.npz#train/17`` or ``d.npz#17``   NumPy
========  ==================================  =================================  ===========

A CSV file given as a source is a manifest: a ``path`` column (relative to the CSV) and
optional ``patient_id, clip_id, label, split, frame``.

Ids are stable: the path relative to the source folder (posix), plus ``#<key>`` for
files that hold several images. :func:`discover` returns the workspace manifest
(``id, source_path, frame, patient_id, clip_id, label, split, modality, sop_class``) and the
skipped files (``source_path, reason``: why, and what to do); :func:`read_frames` streams the
images. Non-image DICOM objects (SEG, RTDOSE, SR, ...) are skipped unless ``include_sop``
names them; ``modality`` keeps only the given DICOM modalities.

>>> from enrich.io import discover, read_frames  # doctest: +SKIP
>>> found = discover(["scans/", "labels.csv"])  # doctest: +SKIP
>>> for image_id, img in read_frames(found.manifest, **found.options):  # doctest: +SKIP
...     pass
"""

from __future__ import annotations

from enrich.io._base import FrameRecord, Reader, SkipFile, suffix_of
from enrich.io._discover import MANIFEST_COLUMNS, SKIPPED_COLUMNS, Discovery, discover
from enrich.io._registry import READERS, SUFFIXES, make_readers, reader_for
from enrich.io._stream import FrameStream, SkippedImages, read_frames
from enrich.io.dicom import DicomReader
from enrich.io.nifti import NiftiReader
from enrich.io.npz import NpzReader
from enrich.io.pillow import PillowReader
from enrich.io.video import VideoReader

__all__ = [
    "MANIFEST_COLUMNS",
    "READERS",
    "SKIPPED_COLUMNS",
    "SUFFIXES",
    "DicomReader",
    "Discovery",
    "FrameRecord",
    "FrameStream",
    "NiftiReader",
    "NpzReader",
    "PillowReader",
    "Reader",
    "SkipFile",
    "SkippedImages",
    "VideoReader",
    "discover",
    "make_readers",
    "read_frames",
    "reader_for",
    "suffix_of",
]

"""DICOM through pydicom (extra ``enrich-imaging[dicom]``): single frames and multi-frame cine.

- Files are found by suffix (``.dcm``, ``.dicom``) or, whatever their name, by the
  ``DICM`` marker at byte 128.
- Every frame of a multi-frame file is an image: ``echo/a.dcm#17`` (0-based). A file with
  one frame has the bare path as id.
- Compressed transfer syntaxes are decoded by pydicom's plugins (pylibjpeg for JPEG, also
  Pillow or GDCM when installed). A syntax without an installed decoder is skipped at
  discovery, with the missing package in the reason.
- ``PatientID`` → ``patient_id``; ``SeriesInstanceUID`` → ``clip_id`` (for a multi-frame
  file without one, discovery uses the file's id).
- Gray images: the Modality LUT (``RescaleSlope``/``RescaleIntercept``, e.g. CT → HU) is
  applied, then the first VOI LUT or window (``WindowCenter``/``WindowWidth``) when the
  file has one, and the windowed values are mapped to [0, 1] (``float32``).
  ``MONOCHROME1`` is inverted so that bright means dense. Without a window, the values
  are returned as stored or rescaled; :func:`enrich.preprocess.rescale_intensity` maps
  them later.
- Colour (``RGB``, ``YBR_*``, ``PALETTE COLOR``) is returned as RGB ``uint8``.
- Discovery reads only the header (``stop_before_pixels``) and checks that an
  uncompressed file is long enough for its pixel data, so truncated files are caught
  without decoding.

Needs pydicom ≥ 3.0 (for :mod:`pydicom.pixels`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from enrich.io._base import FrameRecord, Reader, require, suffix_of

__all__ = ["DicomReader", "is_dicom"]

# Files up to this size are parsed once, pixels included; larger ones are read frame by frame.
_SMALL_FILE = 16 * 1024 * 1024


def is_dicom(path: str | Path) -> bool:
    """Whether `path` starts with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def _pydicom() -> Any:
    pydicom = require("pydicom", "dicom")
    try:
        import pydicom.pixels
    except ImportError as exc:
        from enrich.errors import MissingExtraError

        raise MissingExtraError("pydicom>=3.0", "dicom") from exc
    return pydicom


class DicomReader(Reader):
    """DICOM files: ``.dcm``, ``.dicom``, and any other file whose preamble says ``DICM``."""

    name: ClassVar[str] = "dicom"
    suffixes: ClassVar[tuple[str, ...]] = (".dcm", ".dicom")

    def verify(self, path: str | Path) -> bool:
        suffix = suffix_of(path)
        if suffix in self.suffixes:
            return True
        return is_dicom(path)

    def _header(self, path: str | Path) -> tuple[Any, int]:
        """The dataset without pixel data, and the file offset where pixel data starts."""
        pydicom = _pydicom()
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            offset = fh.tell()
        return ds, offset

    def count(self, path: str | Path) -> list[FrameRecord]:
        pydicom = _pydicom()
        from pydicom.pixels import get_decoder

        ds, offset = self._header(path)
        rows, cols = ds.get("Rows"), ds.get("Columns")
        if not rows or not cols:
            raise ValueError("DICOM file has no image (no Rows/Columns)")
        n = int(ds.get("NumberOfFrames") or 1)
        if n < 1:
            raise ValueError(f"DICOM file has NumberOfFrames={n}")
        meta = getattr(ds, "file_meta", None)
        tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
        tsyntax = pydicom.uid.UID(tsyntax or pydicom.uid.ImplicitVRLittleEndian)
        if tsyntax.is_compressed:
            try:
                decoder = get_decoder(tsyntax)
            except NotImplementedError:
                raise ValueError(f"no pydicom decoder for transfer syntax {tsyntax.name}") from None
            if not decoder.is_available:
                raise ValueError(
                    f"cannot decode {tsyntax.name}: install one of "
                    + "; ".join(decoder.missing_dependencies)
                )
        else:
            bits = int(ds.get("BitsAllocated") or 8)
            spp = int(ds.get("SamplesPerPixel") or 1)
            pixels = int(rows) * int(cols) * spp * n
            need = (pixels + 7) // 8 if bits == 1 else pixels * (bits // 8)
            have = os.path.getsize(path) - offset
            if have < need:
                raise ValueError(
                    f"truncated DICOM: pixel data needs {need} bytes, the file has {max(have, 0)}"
                )
        patient = _str_or_none(ds.get("PatientID"))
        clip = _str_or_none(ds.get("SeriesInstanceUID"))
        if n == 1:
            return [FrameRecord(0, patient_id=patient, clip_id=clip)]
        return [FrameRecord(i, key=str(i), patient_id=patient, clip_id=clip) for i in range(n)]

    def read(
        self, path: str | Path, frames: Iterable[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        _pydicom()
        from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, iter_pixels

        source: Any
        if os.path.getsize(path) <= _SMALL_FILE:
            # one parse for header and pixels
            ds = _pydicom().dcmread(path)
            source = ds
        else:
            # large (cine) files: only the requested frames are read from disk
            ds, _ = self._header(path)
            source = path
        n = int(ds.get("NumberOfFrames") or 1)
        wanted = list(range(n)) if frames is None else [int(i) for i in frames]
        for i in wanted:
            if not 0 <= i < n:
                raise ValueError(f"frame {i} is out of range (the file has {n})")
        if not wanted:
            return
        gray = int(ds.get("SamplesPerPixel") or 1) == 1
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        has_voi = "VOILUTSequence" in ds or (
            "WindowCenter" in ds and "WindowWidth" in ds and ds.WindowCenter is not None
        )
        has_modality = (
            "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds
        )
        lo = hi = 0.0
        if gray and has_voi:
            # The window's output range, found by pushing extreme inputs through it, so
            # that any VOI function (linear, sigmoid, LUT) maps onto [0, 1].
            probe = np.array([-1e12, 1e12], dtype=np.float64)
            try:
                lo, hi = (float(v) for v in apply_voi_lut(probe, ds, index=0))
            except Exception:
                has_voi = False
            if hi == lo:
                has_voi = False
        indices = wanted if frames is not None else None
        for i, arr in zip(wanted, iter_pixels(source, indices=indices), strict=False):
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            if photometric == "PALETTE COLOR":
                rgb = np.asarray(apply_color_lut(arr, ds))
                if rgb.dtype != np.uint8:  # 16-bit palette entries
                    rgb = (rgb.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
                yield i, rgb
            elif gray and arr.ndim == 2:
                x = np.asarray(arr)
                if has_modality:
                    x = apply_modality_lut(x, ds)
                if has_voi:
                    x = (np.asarray(apply_voi_lut(x, ds, index=0), dtype=np.float64) - lo) / (
                        hi - lo
                    )
                    x = np.clip(x, 0.0, 1.0).astype(np.float32)
                    if photometric == "MONOCHROME1":
                        x = 1.0 - x
                elif photometric == "MONOCHROME1":
                    x = -x.astype(np.float32)
                elif x.dtype.kind == "f":
                    x = x.astype(np.float32)
                yield i, x
            else:
                yield i, np.asarray(arr)

    def header(self, path: str | Path) -> dict[str, Any]:
        """Per-file metadata: patient, study, series, modality, frame count, size."""
        ds, _ = self._header(path)
        return {
            "patient_id": _str_or_none(ds.get("PatientID")),
            "study_uid": _str_or_none(ds.get("StudyInstanceUID")),
            "series_uid": _str_or_none(ds.get("SeriesInstanceUID")),
            "modality": _str_or_none(ds.get("Modality")),
            "n_frames": int(ds.get("NumberOfFrames") or 1),
            "rows": int(ds.get("Rows") or 0),
            "columns": int(ds.get("Columns") or 0),
            "photometric": _str_or_none(ds.get("PhotometricInterpretation")),
        }

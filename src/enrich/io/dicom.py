"""DICOM through pydicom (extra ``enrich-imaging[dicom]``): single frames, cine, enhanced
multi-frame.

- Files are found by suffix (``.dcm``, ``.dicom``) or, whatever their name, by content: the
  ``DICM`` marker at byte 128, or (files written without the 128-byte preamble and file
  meta header, as old ACR-NEMA exports are) a group 0008 or 0002 tag at byte 0. Those are
  read with ``force=True``, their transfer syntax taken from what pydicom found.
- Deflated Explicit VR Little Endian files are inflated by pydicom and read whole.
- Every frame of a multi-frame file is an image: ``echo/a.dcm#17`` (0-based). A file with
  one frame has the bare path as id.
- Compressed transfer syntaxes are decoded by pydicom's plugins (pylibjpeg for JPEG, also
  Pillow or GDCM when installed). A syntax without an installed decoder is skipped at
  discovery, with the missing package in the reason.
- ``PatientID`` → ``patient_id``; ``SeriesInstanceUID`` → ``clip_id`` (for a multi-frame
  file without one, discovery uses the file's id); ``Modality`` → ``modality``; the SOP
  class name → ``sop_class``.
- Objects that are not images to label (segmentations, RT dose/structures/plans, structured
  reports, presentation states, key-object selections, DICOMDIRs, ...: :data:`NON_IMAGE_SOP`)
  are skipped at discovery with the reason; ``include_sop`` lets chosen ones through.
- Gray images: the Modality LUT (``RescaleSlope``/``RescaleIntercept``, e.g. CT → HU) is
  applied, then the first VOI LUT or window (``WindowCenter``/``WindowWidth``) when the
  file has one, and the windowed values are mapped to [0, 1] (``float32``). Enhanced
  multi-frame objects (Enhanced CT/MR/PET, ...) keep these in functional groups: the
  Pixel Value Transformation and Frame VOI LUT of the shared group, overridden by the
  frame's own per-frame group, are applied frame by frame. ``MONOCHROME1`` is inverted so
  that bright means dense. Without a window, the values are returned as stored or
  rescaled; :func:`enrich.preprocess.rescale_intensity` maps them later.
- Colour (``RGB``, ``YBR_*``, ``PALETTE COLOR``) is returned as RGB ``uint8``.
- Discovery reads only the header (``stop_before_pixels``) and checks that an
  uncompressed file is long enough for its pixel data, so truncated files are caught
  without decoding.
- pydicom's warnings are not printed: they are collected per file in
  :attr:`DicomReader.warnings` and, when the file is skipped, added to the reason.

Needs pydicom ≥ 3.0 (for :mod:`pydicom.pixels`).
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from enrich.errors import EnrichError, MissingExtraError
from enrich.io._base import FrameRecord, Reader, SkipFile, require, suffix_of

__all__ = ["NON_IMAGE_SOP", "DicomReader", "frame_view", "is_dicom", "non_image_code"]

# Files up to this size are parsed once, pixels included; larger ones are read frame by frame.
_SMALL_FILE = 16 * 1024 * 1024

_STORAGE = "1.2.840.10008.5.1.4.1.1."
#: Short code → (SOP class UIDs (a trailing "." is a prefix), what it is, whether it can
#: hold pixel data). These are not images to label; they are skipped unless included.
NON_IMAGE_SOP: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "SEG": (
        (_STORAGE + "66.4", _STORAGE + "66.5", _STORAGE + "66.7", _STORAGE + "66.8"),
        "a segmentation (label masks of other images)",
        True,
    ),
    "RTDOSE": ((_STORAGE + "481.2",), "a radiotherapy dose grid", True),
    "RTSTRUCT": ((_STORAGE + "481.3",), "radiotherapy structure contours", False),
    "RTPLAN": ((_STORAGE + "481.5", _STORAGE + "481.8"), "a radiotherapy plan", False),
    "RTRECORD": (
        (_STORAGE + "481.4", _STORAGE + "481.6", _STORAGE + "481.7", _STORAGE + "481.9"),
        "a radiotherapy treatment record",
        False,
    ),
    "KO": ((_STORAGE + "88.59",), "a key-object selection (a list of other images)", False),
    "SR": ((_STORAGE + "88.",), "a structured report", False),
    "PR": ((_STORAGE + "11.",), "a presentation state (display settings of other images)", False),
    "REG": (
        (_STORAGE + "66.1", _STORAGE + "66.3"),
        "a registration between other images",
        False,
    ),
    "FID": ((_STORAGE + "66.2",), "spatial fiducials", False),
    "RAW": ((_STORAGE + "66",), "raw data", False),
    "WAVEFORM": ((_STORAGE + "9.",), "a waveform (ECG, audio, ...)", False),
    "DOC": ((_STORAGE + "104.",), "an encapsulated document (PDF, CDA, ...)", False),
    "PALETTE": (("1.2.840.10008.5.1.4.39.1",), "a colour palette", False),
    "DICOMDIR": (
        ("1.2.840.10008.1.3.10",),
        "a DICOMDIR (the index of a DICOM disc; its images are read from their own files)",
        False,
    ),
}
# For files without a SOP Class UID: the Modality values of the same objects.
_NON_IMAGE_MODALITY = {"SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG"}
_MODALITY_LUT_KEYS = ("ModalityLUTSequence", "RescaleSlope", "RescaleIntercept", "RescaleType")
_VOI_KEYS = (
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "WindowCenterWidthExplanation",
)
_PIXEL_KEYS = (
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
)
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split()
)
_RE_EXPORT = "re-export it from the archive or PACS"


def _plausible_start(head: bytes) -> bool:
    """Whether `head` (the first 132 bytes) can start a DICOM file.

    Either the preamble's ``DICM`` marker at byte 128, or a file without preamble that
    starts with a file meta (0002) or identifying (0008) group element, little or big endian,
    explicit VR (a known VR after the tag) or implicit (a small even element number).
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    for order in "<>":
        group, element = struct.unpack(order + "HH", head[:4])
        if group not in (0x0002, 0x0008) or element > 0x0100:
            continue
        if head[4:6] in _VRS:
            return True
        (length,) = struct.unpack(order + "I", head[4:8])
        if length < 0x1000:
            return True
    return False


def is_dicom(path: str | Path) -> bool:
    """Whether `path` looks like DICOM: ``DICM`` at byte 128, or a DICOM tag at byte 0."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return _plausible_start(head)


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
        raise MissingExtraError("pydicom>=3.0", "dicom") from exc
    return pydicom


def non_image_code(ds: Any) -> str | None:
    """The :data:`NON_IMAGE_SOP` code of a dataset (``"SEG"``), or None for an image."""
    sop = _sop_uid(ds)
    if sop:
        for code, (uids, _, _) in NON_IMAGE_SOP.items():
            for uid in uids:
                if sop == uid or (uid.endswith(".") and sop.startswith(uid)):
                    return code
        return None
    modality = str(ds.get("Modality") or "").strip().upper()
    return modality if modality in _NON_IMAGE_MODALITY else None


def _sop_uid(ds: Any) -> str:
    """SOP Class UID, or the file meta's Media Storage SOP Class UID (a DICOMDIR has only that)."""
    uid = ds.get("SOPClassUID")
    if not uid:
        meta = getattr(ds, "file_meta", None)
        uid = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return str(uid or "").strip()


def _sop_name(ds: Any) -> str | None:
    uid = _sop_uid(ds)
    if not uid:
        return None
    from pydicom.uid import UID

    name = UID(uid).name
    return str(name or uid).strip() or None


def _parse_sop_codes(include_sop: str | Sequence[str] | None) -> frozenset[str]:
    """``"SEG,RTDOSE"`` / ``["seg"]`` / ``"all"`` → upper-case codes or UIDs."""
    if include_sop is None:
        return frozenset()
    items = include_sop.split(",") if isinstance(include_sop, str) else list(include_sop)
    codes = {str(c).strip().upper() for c in items if str(c).strip()}
    unknown = sorted(
        c for c in codes if c not in NON_IMAGE_SOP and c != "ALL" and not c[:1].isdigit()
    )
    if unknown:
        raise EnrichError(
            f"include_sop {', '.join(unknown)}: expected codes among "
            f"{', '.join(NON_IMAGE_SOP)}, a SOP Class UID, or 'all'"
        )
    return frozenset(codes)


def frame_view(ds: Any, index: int = 0) -> Any:
    """A small dataset with the pixel-value transforms that apply to frame `index`.

    The top-level Modality LUT / rescale and VOI LUT / window attributes, replaced by those
    of the Shared Functional Groups' Pixel Value Transformation and Frame VOI LUT items, in
    turn replaced by those of the frame's Per-Frame Functional Groups item (PS3.3 C.7.6.16).
    Pass it to :func:`pydicom.pixels.apply_modality_lut` and
    :func:`pydicom.pixels.apply_voi_lut`.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file  # doctest: +SKIP
    >>> import pydicom  # doctest: +SKIP
    >>> ds = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))  # doctest: +SKIP
    >>> v = frame_view(ds, 1)  # doctest: +SKIP
    >>> float(v.RescaleIntercept), float(v.WindowCenter), float(v.WindowWidth)  # doctest: +SKIP
    (-1024.0, 49.0, 102.0)
    """
    from pydicom.dataset import Dataset

    view = Dataset()
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        view.file_meta = meta
    implicit, little = ds.original_encoding
    if little is not None:
        view.set_original_encoding(implicit, little, None)
    for key in (*_PIXEL_KEYS, *_MODALITY_LUT_KEYS, *_VOI_KEYS):
        if key in ds:
            view[key] = ds[key]
    items = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        items.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and 0 <= index < len(per_frame):
        items.append(per_frame[index])
    for item in items:
        for seq, keys in (
            ("PixelValueTransformationSequence", _MODALITY_LUT_KEYS),
            ("FrameVOILUTSequence", _VOI_KEYS),
        ):
            macro = item.get(seq)
            if not macro:
                continue
            for key in keys:
                if key in view:
                    del view[key]
            for key in keys:
                if key in macro[0]:
                    view[key] = macro[0][key]
    return view


def _transform_key(view: Any) -> tuple[str, ...]:
    return tuple(
        repr(view[k].value) if k in view else "" for k in (*_MODALITY_LUT_KEYS, *_VOI_KEYS)
    )


class _GrayTransform:
    """Modality LUT + VOI of one frame view; output float32, [0, 1] when windowed."""

    def __init__(self, view: Any, photometric: str) -> None:
        from pydicom.pixels import apply_voi_lut

        self.view = view
        self.photometric = photometric
        self.has_modality = any(k in view for k in _MODALITY_LUT_KEYS[:3])
        self.has_voi = bool(view.get("VOILUTSequence")) or (
            view.get("WindowCenter") is not None and view.get("WindowWidth") is not None
        )
        self.lo = self.hi = 0.0
        self.lut_domain: tuple[int, int] | None = None
        if self.has_voi:
            try:
                lut = view.get("VOILUTSequence")
                item = lut[0] if lut else None
                if item is not None and item.get("LUTDescriptor") and "LUTData" in item:
                    # a VOI LUT (pydicom prefers it to a window): its input domain, and the
                    # range of its entries, which is mapped onto [0, 1]
                    n_entries, first = (
                        int(item.LUTDescriptor[0]) or 65536,
                        int(item.LUTDescriptor[1]),
                    )
                    self.lut_domain = (first, first + n_entries - 1)
                    domain = np.arange(first, first + n_entries, dtype=np.int64)
                    out = np.asarray(apply_voi_lut(domain, view, index=0), dtype=np.float64)
                    self.lo, self.hi = float(out.min()), float(out.max())
                else:
                    # The window's output range, found by pushing extreme inputs through
                    # it, so that any VOI function (linear, sigmoid) maps onto [0, 1].
                    probe = np.array([-1e12, 1e12], dtype=np.float64)
                    out = np.asarray(apply_voi_lut(probe, view, index=0), dtype=np.float64)
                    self.lo, self.hi = float(out[0]), float(out[1])
            except Exception:
                self.has_voi = False
            if self.hi == self.lo or not np.isfinite([self.lo, self.hi]).all():
                self.has_voi = False

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut

        x = np.asarray(arr)
        if self.has_modality:
            x = apply_modality_lut(x, self.view)
        if self.has_voi:
            if self.lut_domain is not None:  # LUT indices: integers inside its domain
                x = np.clip(np.rint(x), *self.lut_domain).astype(np.int64)
            y = np.asarray(apply_voi_lut(x, self.view, index=0), dtype=np.float64)
            x = np.clip((y - self.lo) / (self.hi - self.lo), 0.0, 1.0).astype(np.float32)
            if self.photometric == "MONOCHROME1":
                x = 1.0 - x
        elif self.photometric == "MONOCHROME1":
            x = -x.astype(np.float32)
        elif x.dtype.kind == "f":
            x = x.astype(np.float32)
        return x


class DicomReader(Reader):
    """DICOM files: ``.dcm``, ``.dicom``, and any other file whose start says DICOM.

    Parameters
    ----------
    include_sop : str or sequence of str, optional
        Non-image SOP classes to read anyway: codes of :data:`NON_IMAGE_SOP` (``"SEG"``,
        ``"RTDOSE"``), SOP Class UIDs, or ``"all"``. By default they are skipped.

    Attributes
    ----------
    warnings : dict of str to list of str
        pydicom's warnings per file (source path → messages), collected instead of printed.
    """

    name: ClassVar[str] = "dicom"
    suffixes: ClassVar[tuple[str, ...]] = (".dcm", ".dicom")

    def __init__(self, *, include_sop: str | Sequence[str] | None = None) -> None:
        self.include_sop = _parse_sop_codes(include_sop)
        self.warnings: dict[str, list[str]] = {}

    def verify(self, path: str | Path) -> bool:
        suffix = suffix_of(path)
        if suffix in self.suffixes:
            return True
        return is_dicom(path)

    # -- warnings and errors ---------------------------------------------------------------
    @contextmanager
    def _quiet(self, path: str | Path, tsyntax: Any = None) -> Iterator[None]:
        """Collect pydicom's warnings for `path`; turn failures into an actionable SkipFile."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            except (MissingExtraError, EnrichError):
                raise
            except SkipFile as exc:
                raise SkipFile(f"{exc}{_warned(caught)}") from exc
            except Exception as exc:
                raise SkipFile(_explain(exc, tsyntax) + _warned(caught)) from exc
            finally:
                if caught:
                    msgs = self.warnings.setdefault(str(Path(path).absolute().as_posix()), [])
                    msgs.extend(" ".join(str(w.message).split()) for w in caught)

    # -- reading -------------------------------------------------------------------------
    def _dcmread(self, path: str | Path, *, header_only: bool) -> tuple[Any, int, bool]:
        """The dataset (without pixels when `header_only`), the pixel data offset, forced."""
        pydicom = _pydicom()
        from pydicom.errors import InvalidDicomError

        with open(path, "rb") as fh:
            head = fh.read(132)
            fh.seek(0)
            forced = not (len(head) >= 132 and head[128:132] == b"DICM")
            if forced and not _plausible_start(head):
                raise SkipFile(
                    "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM tag at byte "
                    "0; if it is DICOM, it is damaged: " + _RE_EXPORT
                )
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=header_only, force=forced)
            except InvalidDicomError:  # a meta header pydicom rejects: retry leniently
                fh.seek(0)
                ds = pydicom.dcmread(fh, stop_before_pixels=header_only, force=True)
                forced = True
            offset = fh.tell()
        if forced:
            _fill_transfer_syntax(ds)
        return ds, offset, forced

    def count(self, path: str | Path) -> list[FrameRecord]:
        # pydicom converts raw values (and warns) lazily, when they are first read
        with self._quiet(path):
            return self._count(path)

    def _count(self, path: str | Path) -> list[FrameRecord]:
        pydicom = _pydicom()
        from pydicom.pixels import get_decoder

        ds, offset, _ = self._dcmread(path, header_only=True)
        code = non_image_code(ds)
        sop = _sop_name(ds)
        if code is not None:
            what = NON_IMAGE_SOP[code][1] if code in NON_IMAGE_SOP else f"a {code} object"
            uid = _sop_uid(ds)
            included = bool({code, uid, "ALL"} & self.include_sop)
            has_pixels = NON_IMAGE_SOP[code][2] if code in NON_IMAGE_SOP else True
            label = f"{sop or 'SOP class unknown'} ({code})"
            if not has_pixels:
                raise SkipFile(f"{label} is {what}, with no image: nothing to embed")
            if not included:
                raise SkipFile(
                    f"{label} is {what}, not an image to label; skipped by default: pass "
                    f"--include-sop {code} (include_sop=['{code}']) to embed it anyway"
                )
        rows, cols = ds.get("Rows"), ds.get("Columns")
        if not rows or not cols:
            raise SkipFile(
                f"no image in this DICOM file (no Rows/Columns; SOP class "
                f"{sop or 'not given'}, modality {_str_or_none(ds.get('Modality')) or 'not given'})"
                ": nothing to embed"
            )
        n = int(ds.get("NumberOfFrames") or 1)
        if n < 1:
            raise SkipFile(
                f"DICOM header says NumberOfFrames={n}: no image; fix the header or {_RE_EXPORT}"
            )
        meta = getattr(ds, "file_meta", None)
        tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
        tsyntax = pydicom.uid.UID(tsyntax or pydicom.uid.ImplicitVRLittleEndian)
        if tsyntax.is_compressed:
            have = os.path.getsize(path) - offset  # each encapsulated frame takes ≥ 8 bytes
            if 8 * n > have:
                raise ValueError(
                    f"truncated DICOM: NumberOfFrames={n} needs at least {8 * n} bytes of "
                    f"pixel data, the file has {max(have, 0)}"
                )
            try:
                decoder = get_decoder(tsyntax)
            except NotImplementedError:
                raise SkipFile(
                    f"pydicom has no decoder for transfer syntax {tsyntax.name}: convert the "
                    "file to an uncompressed syntax (e.g. `gdcmconv --raw` or dcmtk's "
                    "`dcmdjpeg`) and add the converted file"
                ) from None
            if not decoder.is_available:
                raise SkipFile(
                    f"cannot decode {tsyntax.name}: install one of "
                    + "; ".join(decoder.missing_dependencies)
                    + " (then run the same command again)"
                )
        else:
            bits = int(ds.get("BitsAllocated") or 8)
            spp = int(ds.get("SamplesPerPixel") or 1)
            pixels = int(rows) * int(cols) * spp * n
            need = (pixels + 7) // 8 if bits == 1 else pixels * (bits // 8)
            if tsyntax.is_deflated:  # the offset is in the inflated stream: inflate and look
                full, _, _ = self._dcmread(path, header_only=False)
                have = len(full.get("PixelData") or b"")
            else:
                have = os.path.getsize(path) - offset
            if have <= 0:
                raise SkipFile(
                    "the DICOM file has an image header (Rows/Columns) but no Pixel Data: "
                    f"nothing to embed; {_RE_EXPORT} with its pixel data"
                )
            if have < need:
                raise SkipFile(
                    f"truncated DICOM: pixel data needs {need} bytes, the file has {have}; "
                    f"the copy was cut short: {_RE_EXPORT}"
                )
        patient = _str_or_none(ds.get("PatientID"))
        clip = _str_or_none(ds.get("SeriesInstanceUID"))
        modality = _str_or_none(ds.get("Modality"))
        info = {"patient_id": patient, "clip_id": clip, "modality": modality, "sop_class": sop}
        if n == 1:
            return [FrameRecord(0, **info)]
        return [FrameRecord(i, key=str(i), **info) for i in range(n)]

    def read(
        self, path: str | Path, frames: Iterable[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        _pydicom()
        from pydicom.pixels import apply_color_lut, iter_pixels

        tsyntax = None
        with self._quiet(path):
            ds, _, forced = self._dcmread(path, header_only=True)
            n = int(ds.get("NumberOfFrames") or 1)  # from the header: a torn file may lose it
            meta = getattr(ds, "file_meta", None)
            tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
            source: Any
            if (
                forced
                or os.path.getsize(path) <= _SMALL_FILE
                or getattr(tsyntax, "is_deflated", False)
            ):
                # one parse for header and pixels (and the only way for deflated or
                # preamble-less files)
                ds, _, _ = self._dcmread(path, header_only=False)
                source = ds
                if not any(
                    k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
                ):
                    raise SkipFile(
                        f"the file ends before or inside its pixel data: the copy was cut short; "
                        f"{_RE_EXPORT}"
                    )
            else:
                # large (cine) files: only the requested frames are read from disk
                source = path
            gray = int(ds.get("SamplesPerPixel") or 1) == 1
            photometric = str(ds.get("PhotometricInterpretation", "")).upper()
            per_frame = bool(ds.get("PerFrameFunctionalGroupsSequence"))
        wanted = list(range(n)) if frames is None else [int(i) for i in frames]
        for i in wanted:
            if not 0 <= i < n:
                raise SkipFile(
                    f"frame {i} is out of range (the file has {n}); the file changed since "
                    "discovery: run the same command again"
                )
        if not wanted:
            return
        transforms: dict[tuple[str, ...], _GrayTransform] = {}

        def transform(i: int) -> _GrayTransform:
            view = frame_view(ds, i if per_frame else 0)
            key = _transform_key(view)
            if key not in transforms:
                transforms[key] = _GrayTransform(view, photometric)
            return transforms[key]

        indices = wanted if frames is not None else None
        pixels = iter_pixels(source, indices=indices)
        for i in wanted:
            with self._quiet(path, tsyntax):
                try:
                    arr = next(pixels)
                except StopIteration:
                    raise SkipFile(
                        f"the file holds fewer frames than its header's NumberOfFrames={n}: "
                        f"frame {i} is missing; the copy was cut short: {_RE_EXPORT}"
                    ) from None
                if arr.ndim == 3 and arr.shape[-1] == 1:
                    arr = arr[..., 0]
                if photometric == "PALETTE COLOR":
                    rgb = np.asarray(apply_color_lut(arr, ds))
                    if rgb.dtype != np.uint8:  # 16-bit palette entries
                        rgb = (rgb.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
                    out = rgb
                elif gray and arr.ndim == 2:
                    out = transform(i)(arr)
                else:
                    out = np.asarray(arr)
            yield i, out

    def header(self, path: str | Path) -> dict[str, Any]:
        """Per-file metadata: patient, study, series, modality, SOP class, frames, size."""
        with self._quiet(path):
            ds, _, _ = self._dcmread(path, header_only=True)
            return {
                "patient_id": _str_or_none(ds.get("PatientID")),
                "study_uid": _str_or_none(ds.get("StudyInstanceUID")),
                "series_uid": _str_or_none(ds.get("SeriesInstanceUID")),
                "modality": _str_or_none(ds.get("Modality")),
                "sop_class": _sop_name(ds),
                "n_frames": int(ds.get("NumberOfFrames") or 1),
                "rows": int(ds.get("Rows") or 0),
                "columns": int(ds.get("Columns") or 0),
                "photometric": _str_or_none(ds.get("PhotometricInterpretation")),
            }


def _fill_transfer_syntax(ds: Any) -> None:
    """A file read with ``force=True`` often has no file meta: record what pydicom found."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian
        if implicit
        else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    )


def _warned(caught: list[warnings.WarningMessage]) -> str:
    if not caught:
        return ""
    first = " ".join(str(caught[0].message).split())
    if len(first) > 160:
        first = first[:157] + "..."
    more = f" and {len(caught) - 1} more" if len(caught) > 1 else ""
    return f" (pydicom warned: {first}{more})"


def _explain(exc: BaseException, tsyntax: Any) -> str:
    """A pydicom failure as one line that says what to do."""
    msg = " ".join(str(exc).split())
    if len(msg) > 240:
        msg = msg[:237] + "..."
    what = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    if tsyntax is not None and getattr(tsyntax, "is_compressed", False):
        advice = ""
        try:
            from pydicom.pixels import get_decoder

            missing = get_decoder(tsyntax).missing_dependencies
            if missing:
                advice = " or install another decoder (" + "; ".join(missing) + ")"
        except Exception:
            pass
        return (
            f"cannot decode the {tsyntax.name} pixel data ({what}); the compressed data may be "
            f"damaged: {_RE_EXPORT}{advice}"
        )
    if isinstance(exc, (ValueError, TypeError)) and "invalid literal" in msg:
        return (
            f"a malformed value in the DICOM header ({what}); fix the tag (e.g. with dcmtk's "
            f"`dcmodify`) or {_RE_EXPORT}"
        )
    return f"cannot read this DICOM file ({what}); it may be damaged: {_RE_EXPORT}"

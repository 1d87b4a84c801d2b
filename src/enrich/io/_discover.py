"""Find every image in folders, files and CSV manifests: the manifest and what was skipped."""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrich.errors import EnrichError, MissingExtraError
from enrich.io._base import FrameRecord, Reader, SkipFile
from enrich.io._paths import fs_path, text_message, text_path
from enrich.io._registry import SUFFIXES, make_readers, reader_for

if TYPE_CHECKING:
    import pandas as pd

    from enrich.io._stream import FrameStream

__all__ = ["MANIFEST_COLUMNS", "SKIPPED_COLUMNS", "Discovery", "discover"]

#: The workspace's manifest columns (docs/architecture.md).
MANIFEST_COLUMNS = (
    "id",
    "source_path",
    "frame",
    "patient_id",
    "clip_id",
    "label",
    "split",
    "modality",
    "sop_class",
)
#: The columns of ``skipped.csv``.
SKIPPED_COLUMNS = ("source_path", "reason")
#: The columns of the reader warnings (:attr:`Discovery.warnings`).
WARNING_COLUMNS = ("source_path", "warning")
#: The ``skipped.csv`` reason of files in a source folder that no reader handles.
IGNORED_REASON = "not an image format"
_CSV_OPTIONAL = ("patient_id", "clip_id", "label", "split", "frame")


@dataclass
class Discovery:
    """What :func:`discover` found.

    Attributes
    ----------
    manifest : DataFrame
        One row per image: ``id, source_path, frame, patient_id, clip_id, label, split,
        modality, sop_class``. ``source_path`` is absolute (posix); ``frame`` is the reader's
        index in that file; the other columns are strings or ``None`` (``modality`` and
        ``sop_class`` come from DICOM headers).
    skipped : DataFrame
        ``source_path, reason``: files that could not be read.
    options : dict
        The reader options (``nifti_axis``, ``video_step``, ``npz_key``); pass them to
        :func:`read_frames` (or use :meth:`read_frames`) so frames are read the same way.
    warnings : DataFrame or None
        ``source_path, warning``: what the reader libraries warned about while reading
        headers (collected, not printed), pydicom's included.
    ignored : DataFrame or None
        ``source_path, reason``: files in the source folders that no reader handles (reason
        :data:`IGNORED_REASON`); ``enrich embed`` lists them in ``skipped.csv``.
    """

    manifest: pd.DataFrame
    skipped: pd.DataFrame
    options: dict[str, Any] = field(default_factory=dict)
    warnings: pd.DataFrame | None = None
    ignored: pd.DataFrame | None = None

    def read_frames(self, **kwargs: Any) -> FrameStream:
        """:func:`enrich.io.read_frames` on this manifest, with the discovery's options."""
        from enrich.io._stream import read_frames

        return read_frames(self.manifest, **{**self.options, **kwargs})


@dataclass
class _Entry:
    path: Path
    root: Path
    reader: Reader | None
    overrides: dict[str, str] = field(default_factory=dict)
    frame: int | None = None
    source: str = ""


def _walk(
    folder: Path, skipped: list[tuple[str, str]], exclude: frozenset[Path] = frozenset()
) -> list[Path]:
    """Regular files under `folder` sorted by their path components, without hidden entries.

    Folders in `exclude` (absolute) and enrich workspaces (a ``workspace.json`` marker) are
    not entered; FIFOs, devices, sockets and broken links are not returned. Each of these,
    and each folder that cannot be listed, is recorded in `skipped` with its reason.
    """
    found: list[tuple[tuple[str, ...], Path]] = []

    def unlistable(err: OSError) -> None:
        where = Path(err.filename).absolute() if err.filename else folder
        why = f"cannot list folder: {type(err).__name__}: {err.strerror}"
        skipped.append((text_path(where.as_posix()), why))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unlistable):
        keep = []
        for d in dirnames:
            sub = Path(dirpath) / d
            if d.startswith(".") or sub.absolute() in exclude:
                continue
            if is_workspace(sub):
                skipped.append((text_path(sub.absolute().as_posix()), _WORKSPACE_REASON))
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if not name.startswith("."):
                path = Path(dirpath) / name
                reason = not_regular(path)
                if reason:
                    skipped.append((text_path(path.absolute().as_posix()), reason))
                    continue
                found.append((path.relative_to(folder).parts, path))
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


_WORKSPACE_REASON = "an enrich workspace (its figures and files are outputs, not source images)"


def is_workspace(folder: Path) -> bool:
    """Whether `folder` holds an enrich workspace marker (``workspace.json``)."""
    marker = folder / "workspace.json"
    try:
        if not marker.is_file() or marker.stat().st_size > 65536:
            return False
        return json.loads(marker.read_text(encoding="utf-8")).get("format") == "enrich-workspace"
    except (OSError, ValueError, AttributeError):
        return False


def not_regular(path: Path) -> str | None:
    """Why `path` (after following links) cannot be an image file, or None for a regular file.

    Opening a FIFO blocks until a writer comes and a device such as ``/dev/zero`` never
    ends, so such files are skipped before any reader opens them.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if path.is_symlink():
            return f"broken symbolic link ({exc.strerror})"
        return f"cannot stat: {type(exc).__name__}: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
        stat.S_ISDIR: "a folder",
    }
    kind = next((k for test, k in kinds.items() if test(mode)), "not a regular file")
    return f"not a regular file: {kind}"


def _rel_id(path: Path, root: Path) -> str:
    try:
        return text_path(path.relative_to(root).as_posix())
    except ValueError:
        return text_path(path.as_posix())


def _cell(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    s = str(value).strip()
    return s or None


def _manifest_entries(
    csv: Path,
    readers: dict[str, Reader],
    skipped: list[tuple[str, str]],
    exclude: frozenset[Path] = frozenset(),
) -> list[_Entry]:
    import pandas as pd

    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise EnrichError(f"cannot read manifest {csv}: {exc}") from exc
    if "path" not in table.columns:
        raise EnrichError(
            f"manifest {csv} has no 'path' column (columns: {', '.join(table.columns)}); "
            f"expected 'path' and optionally {', '.join(_CSV_OPTIONAL)}"
        )
    root = csv.parent.absolute()
    entries: list[_Entry] = []
    for row in table.to_dict("records"):
        raw = _cell(row["path"])
        if raw is None:
            continue
        path = Path(fs_path(raw))  # a name stored in its escaped form is found again
        path = path if path.is_absolute() else root / path
        if not path.exists():
            skipped.append((text_path(path.as_posix()), f"file not found (listed in {csv.name})"))
            continue
        overrides = {c: v for c in _CSV_OPTIONAL[:-1] if (v := _cell(row.get(c)))}
        frame = _cell(row.get("frame"))
        try:
            frame_i = None if frame is None else int(frame)
        except ValueError:
            raise EnrichError(
                f"manifest {csv}: frame {frame!r} for {raw} is not an integer"
            ) from None
        if path.is_dir():  # a folder row: its images share the row's values
            if frame_i is not None:
                raise EnrichError(f"manifest {csv}: {raw} is a folder; it cannot have a frame")
            found = [(p, r) for p in _walk(path, skipped, exclude) if (r := reader_for(p, readers))]
            if not found:
                skipped.append(
                    (text_path(path.as_posix()), f"no images in folder (listed in {csv.name})")
                )
            entries.extend(_Entry(p, root, r, overrides, None, str(csv)) for p, r in found)
            continue
        reason = not_regular(path)
        if reason:
            skipped.append((text_path(path.as_posix()), reason))
            continue
        reader = reader_for(path, readers)
        if reader is None:
            skipped.append((text_path(path.as_posix()), f"unsupported file type {path.suffix!r}"))
            continue
        entries.append(_Entry(path, root, reader, overrides, frame_i, str(csv)))
    return entries


def discover(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    nifti_axis: int = -1,
    video_step: int = 1,
    npz_key: str | None = None,
    check_pixels: bool = False,
    progress: bool = False,
    exclude: Sequence[str | os.PathLike[str]] = (),
    modality: str | Sequence[str] | None = None,
    include_sop: str | Sequence[str] | None = None,
) -> Discovery:
    """Find every image in `sources` and describe it in a manifest, without decoding.

    Parameters
    ----------
    sources : path or sequence of paths
        Folders (searched recursively, hidden entries ignored), image files, or CSV
        manifests (a ``.csv`` file with a ``path`` column, relative to the CSV's folder, and
        optional ``patient_id, clip_id, label, split, frame``; manifest values override
        what the files say; a ``path`` may name a folder, whose images all get that row's
        values).
    nifti_axis : int
        Spatial axis along which NIfTI volumes are sliced (default: the last).
    video_step : int
        Keep every k-th video frame.
    npz_key : str, optional
        The images array in ``.npz`` files (see :mod:`enrich.io.npz`).
    check_pixels : bool
        Also decode every image now, so that files whose pixel data is corrupt are skipped
        here rather than when read. Slow: off by default.
    progress : bool
        Show a progress bar (stderr).
    exclude : sequence of paths
        Folders not to search (e.g. a workspace kept inside the image folder, whose
        figures would otherwise be found as images).
    modality : str or sequence of str, optional
        Keep only files whose DICOM ``Modality`` is one of these (``"CT,MR"``); other
        files, and files that are not DICOM, are skipped with the reason.
    include_sop : str or sequence of str, optional
        Non-image DICOM objects (segmentations, RT dose, ...) are skipped by default; these
        codes (``"SEG,RTDOSE"``), SOP Class UIDs or ``"all"`` are read anyway
        (:data:`enrich.io.dicom.NON_IMAGE_SOP`).

    Returns
    -------
    Discovery
        ``.manifest``, ``.skipped`` and the reader ``.options``.

    Raises
    ------
    EnrichError
        A source does not exist, holds no image files, or nothing in it is readable; two
        different files get the same id.
    MissingExtraError
        A file needs an optional reader library that is not installed.

    Notes
    -----
    Ids are stable: the file's path relative to its source folder (for a file source, its
    name; for a CSV manifest, relative to the CSV's folder), plus ``#<key>`` for files that
    hold several images (``echo/a.dcm#17``, ``vol.nii.gz#40``, ``data.npz#train/17``).
    Files with an unknown suffix inside folders are not read (DICOM files are recognised by
    content) and are listed in ``ignored`` as "not an image format"; hidden files are not
    listed. A named file that no reader handles is skipped with its reason.

    Examples
    --------
    >>> from enrich.io import discover
    >>> found = discover("data/pneumoniamnist")  # doctest: +SKIP
    >>> found.manifest.id.iloc[0]  # doctest: +SKIP
    'pneumoniamnist.npz#train/0'
    """
    import pandas as pd

    readers = make_readers(
        nifti_axis=nifti_axis, video_step=video_step, npz_key=npz_key, include_sop=include_sop
    )
    modalities = _modalities(modality)
    options: dict[str, Any] = {}
    for r in readers.values():
        options.update(r.options())
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    excluded = frozenset(Path(e).absolute() for e in exclude)
    if not sources:
        raise EnrichError("no sources given; expected folders, image files or CSV manifests")

    skipped: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    columns: dict[str, list[Any]] = {c: [] for c in MANIFEST_COLUMNS}
    seen: dict[str, str] = {}  # id → source_path
    seen_frames: dict[tuple[str, int], dict[str, Any]] = {}  # → the manifest values given
    warned: list[tuple[str, str]] = []

    failures: list[str] = []  # one line per source that gave no image
    for src in sources:
        src_path = Path(src)
        if not src_path.exists():
            raise EnrichError(f"source {text_path(src)} does not exist")
        n_skipped_before = len(skipped)
        where = text_path(src_path.absolute().as_posix())
        entries: list[_Entry] = []
        if src_path.is_dir():
            root = src_path.absolute()
            for p in _walk(root, skipped, excluded):
                if (rd := reader_for(p, readers)) is not None:
                    entries.append(_Entry(p, root, rd, source=str(src)))
                else:  # listed, so that a user can see what was left out
                    ignored.append((text_path(p.absolute().as_posix()), IGNORED_REASON))
            if not entries and len(skipped) == n_skipped_before:
                looked = f"looked for {', '.join(SUFFIXES)} and DICOM files"
                skipped.append((where, f"no images found ({looked})"))
                failures.append(f"no images found in {text_path(src)} ({looked})")
                continue
        elif reason := not_regular(src_path):
            skipped.append((where, reason))
        elif src_path.suffix.lower() == ".csv":
            entries = _manifest_entries(src_path.absolute(), readers, skipped, excluded)
        else:
            path = src_path.absolute()
            found = reader_for(path, readers)
            if found is None:
                skipped.append((where, f"unsupported file type {path.suffix!r}"))
            else:
                entries = [_Entry(path, path.parent, found, source=str(src))]

        n_found = 0
        iterator: Iterable[_Entry] = entries
        if progress:
            from tqdm import tqdm

            iterator = tqdm(entries, desc=f"scanning {src}", unit="file", leave=False)
        for entry in iterator:
            n_found += _add_entry(
                entry, columns, skipped, seen, seen_frames, check_pixels, warned, modalities
            )
        if n_found == 0:
            # Not fatal while another source has images: its files are in `skipped`.
            new = skipped[n_skipped_before:]
            if new:
                failures.append(
                    f"nothing readable in {text_path(src)}: {len(new)} file(s) skipped, "
                    f"first {new[0][0]}: {new[0][1]}"
                )
            else:
                skipped.append((where, "no images found"))
                failures.append(f"no images found in {text_path(src)}")

    if not columns["id"]:
        if len(failures) == 1:
            raise EnrichError(failures[0])
        raise EnrichError(f"nothing readable in any of the {len(failures)} sources: {failures[0]}")
    manifest = pd.DataFrame(columns)
    manifest["frame"] = manifest["frame"].astype("int64")
    skipped_df = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
    # readers that keep their own library's warnings per file (DicomReader) add theirs
    for r in readers.values():
        for path, msgs in getattr(r, "warnings", {}).items():
            warned.extend((text_path(path), m) for m in msgs)
    warned_df = pd.DataFrame(warned, columns=list(WARNING_COLUMNS))
    ignored_df = pd.DataFrame(ignored, columns=list(SKIPPED_COLUMNS))
    return Discovery(manifest, skipped_df, options, warned_df, ignored_df)


def _modalities(modality: str | Sequence[str] | None) -> frozenset[str] | None:
    """``"CT, mr"`` → {"CT", "MR"}; None (or empty) keeps every file."""
    if modality is None:
        return None
    items = modality.split(",") if isinstance(modality, str) else list(modality)
    wanted = frozenset(str(m).strip().upper() for m in items if str(m).strip())
    if not wanted:
        raise EnrichError(f"modality={modality!r}: expected DICOM modalities such as CT,MR")
    return wanted


def _add_entry(
    entry: _Entry,
    columns: dict[str, list[Any]],
    skipped: list[tuple[str, str]],
    seen: dict[str, str],
    seen_frames: dict[tuple[str, int], dict[str, Any]],
    check_pixels: bool,
    warned: list[tuple[str, str]],
    modalities: frozenset[str] | None = None,
) -> int:
    """Add the images of one file to `columns`; return how many it holds."""
    reader = entry.reader
    assert reader is not None
    source_path = text_path(entry.path.as_posix())
    try:
        with collect_warnings(warned, source_path):
            records: list[FrameRecord] = reader.count(entry.path)
            if entry.frame is not None:
                records = [r for r in records if r.frame == entry.frame]
                if not records:
                    raise ValueError(f"frame {entry.frame} is not in the file")
            if check_pixels:
                for _ in reader.read(entry.path, [r.frame for r in records]):
                    pass
    except MissingExtraError:
        raise
    except Exception as exc:
        skipped.append((source_path, _reason(exc)))
        return 0
    if not records:
        skipped.append((source_path, "no images in file"))
        return 0
    if modalities is not None and (records[0].modality or "").upper() not in modalities:
        mod, wanted = records[0].modality, ",".join(sorted(modalities))
        skipped.append(
            (
                source_path,
                f"modality {mod} is not in --modality {wanted}: left out (add {mod} to embed it)"
                if mod
                else f"no DICOM modality (not DICOM, or no Modality tag): left out by "
                f"--modality {wanted} (drop the option to embed it)",
            )
        )
        return 0
    base = _rel_id(entry.path, entry.root)
    multi = reader.clip_per_file and (len(records) > 1 or records[0].key is not None)
    ov = entry.overrides
    for rec in records:
        if (source_path, rec.frame) in seen_frames:
            # The same image reached twice (a folder and a file in it, a repeated manifest
            # row): fine unless two manifest rows give it different values.
            before = seen_frames[(source_path, rec.frame)]
            clash = [k for k in ov if k in before and before[k] != ov[k]]
            if clash:
                k = clash[0]
                raise EnrichError(
                    f"{entry.source}: conflicting rows for {source_path}"
                    f"{'' if rec.key is None else '#' + str(rec.key)}: {k} "
                    f"{before[k]!r} and {ov[k]!r}; keep one row per image"
                )
            continue
        image_id = base if rec.key is None else f"{base}#{rec.key}"
        if image_id in seen:
            raise EnrichError(
                f"two images get the id {image_id!r}: {seen[image_id]} and {source_path}; "
                "give their common parent folder as the source instead"
            )
        seen[image_id] = source_path
        seen_frames[(source_path, rec.frame)] = dict(ov)
        columns["id"].append(image_id)
        columns["source_path"].append(source_path)
        columns["frame"].append(rec.frame)
        columns["patient_id"].append(ov.get("patient_id", rec.patient_id))
        columns["clip_id"].append(ov.get("clip_id", rec.clip_id or (base if multi else None)))
        columns["label"].append(ov.get("label", rec.label))
        columns["split"].append(ov.get("split", rec.split))
        columns["modality"].append(rec.modality)
        columns["sop_class"].append(rec.sop_class)
    return len(records)


@contextlib.contextmanager
def collect_warnings(sink: list[tuple[str, str]], source_path: str) -> Iterator[None]:
    """Record the warnings a reader library raises as ``(source_path, warning)`` in `sink`.

    Libraries (pydicom, Pillow, nibabel) warn once per odd tag or chunk; printed one by one
    they flood a log, so they are collected and summarised instead.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        msg = text_message(" ".join(str(w.message).split()))[:300]
        sink.append((source_path, f"{w.category.__name__}: {msg}"))


def _reason(exc: BaseException) -> str:
    msg = text_message(" ".join(str(exc).split()))
    if isinstance(exc, SkipFile):  # already says why and what to do
        return msg
    if len(msg) > 300:
        msg = msg[:297] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__

"""Find every image in folders, files and CSV manifests: the manifest and what was skipped."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrich.errors import EnrichError, MissingExtraError
from enrich.io._base import FrameRecord, Reader
from enrich.io._registry import SUFFIXES, make_readers, reader_for

if TYPE_CHECKING:
    import pandas as pd

    from enrich.io._stream import FrameStream

__all__ = ["MANIFEST_COLUMNS", "SKIPPED_COLUMNS", "Discovery", "discover"]

#: The workspace's manifest columns (docs/architecture.md).
MANIFEST_COLUMNS = ("id", "source_path", "frame", "patient_id", "clip_id", "label", "split")
#: The columns of ``skipped.csv``.
SKIPPED_COLUMNS = ("source_path", "reason")
#: The ``skipped.csv`` reason of files in a source folder that no reader handles.
IGNORED_REASON = "not an image format"
_CSV_OPTIONAL = ("patient_id", "clip_id", "label", "split", "frame")


@dataclass
class Discovery:
    """What :func:`discover` found.

    Attributes
    ----------
    manifest : DataFrame
        One row per image: ``id, source_path, frame, patient_id, clip_id, label, split``.
        ``source_path`` is absolute (posix); ``frame`` is the reader's index in that file;
        the other columns are strings or ``None``.
    skipped : DataFrame
        ``source_path, reason``: files that could not be read.
    options : dict
        The reader options (``nifti_axis``, ``video_step``, ``npz_key``); pass them to
        :func:`read_frames` (or use :meth:`read_frames`) so frames are read the same way.
    ignored : DataFrame or None
        ``source_path, reason``: files in the source folders that no reader handles (reason
        :data:`IGNORED_REASON`); ``enrich embed`` lists them in ``skipped.csv``.
    """

    manifest: pd.DataFrame
    skipped: pd.DataFrame
    options: dict[str, Any] = field(default_factory=dict)
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
    """Files under `folder` sorted by their path components, without hidden entries.

    Folders in `exclude` (absolute) are not entered. Folders that cannot be listed are
    recorded in `skipped`.
    """
    found: list[tuple[tuple[str, ...], Path]] = []

    def unlistable(err: OSError) -> None:
        where = Path(err.filename).absolute().as_posix() if err.filename else folder.as_posix()
        skipped.append((where, f"cannot list folder: {type(err).__name__}: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unlistable):
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".") and (Path(dirpath) / d).absolute() not in exclude
        ]
        for name in filenames:
            if not name.startswith("."):
                path = Path(dirpath) / name
                found.append((path.relative_to(folder).parts, path))
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def _rel_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


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
        path = Path(raw)
        path = path if path.is_absolute() else root / path
        if not path.exists():
            skipped.append((path.as_posix(), f"file not found (listed in {csv.name})"))
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
                skipped.append((path.as_posix(), f"no images in folder (listed in {csv.name})"))
            entries.extend(_Entry(p, root, r, overrides, None, str(csv)) for p, r in found)
            continue
        reader = reader_for(path, readers)
        if reader is None:
            skipped.append((path.as_posix(), f"unsupported file type {path.suffix!r}"))
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

    readers = make_readers(nifti_axis=nifti_axis, video_step=video_step, npz_key=npz_key)
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
    seen_frames: set[tuple[str, int]] = set()

    for src in sources:
        src_path = Path(src)
        if not src_path.exists():
            raise EnrichError(f"source {src} does not exist")
        n_skipped_before = len(skipped)
        if src_path.is_dir():
            root = src_path.absolute()
            entries = []
            for p in _walk(root, skipped, excluded):
                if (rd := reader_for(p, readers)) is not None:
                    entries.append(_Entry(p, root, rd, source=str(src)))
                else:  # listed, so that a user can see what was left out
                    ignored.append((p.absolute().as_posix(), IGNORED_REASON))
            if not entries:
                raise EnrichError(
                    f"no images found in {src} (looked for {', '.join(SUFFIXES)} and DICOM files)"
                )
        elif src_path.suffix.lower() == ".csv":
            entries = _manifest_entries(src_path.absolute(), readers, skipped, excluded)
        else:
            path = src_path.absolute()
            found = reader_for(path, readers)
            if found is None:
                skipped.append((path.as_posix(), f"unsupported file type {path.suffix!r}"))
                entries = []
            else:
                entries = [_Entry(path, path.parent, found, source=str(src))]

        n_found = 0
        iterator: Iterable[_Entry] = entries
        if progress:
            from tqdm import tqdm

            iterator = tqdm(entries, desc=f"scanning {src}", unit="file", leave=False)
        for entry in iterator:
            n_found += _add_entry(entry, columns, skipped, seen, seen_frames, check_pixels)
        if n_found == 0:
            new = skipped[n_skipped_before:]
            if new:
                raise EnrichError(
                    f"nothing readable in {src}: {len(new)} file(s) skipped, "
                    f"first {new[0][0]}: {new[0][1]}"
                )
            raise EnrichError(f"no images found in {src}")

    manifest = pd.DataFrame(columns)
    manifest["frame"] = manifest["frame"].astype("int64")
    skipped_df = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
    ignored_df = pd.DataFrame(ignored, columns=list(SKIPPED_COLUMNS))
    return Discovery(manifest, skipped_df, options, ignored_df)


def _add_entry(
    entry: _Entry,
    columns: dict[str, list[Any]],
    skipped: list[tuple[str, str]],
    seen: dict[str, str],
    seen_frames: set[tuple[str, int]],
    check_pixels: bool,
) -> int:
    """Add the images of one file to `columns`; return how many it holds."""
    reader = entry.reader
    assert reader is not None
    source_path = entry.path.as_posix()
    try:
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
    base = _rel_id(entry.path, entry.root)
    multi = reader.clip_per_file and (len(records) > 1 or records[0].key is not None)
    ov = entry.overrides
    for rec in records:
        if (source_path, rec.frame) in seen_frames:
            continue  # the same image reached twice (a folder and a file in it)
        image_id = base if rec.key is None else f"{base}#{rec.key}"
        if image_id in seen:
            raise EnrichError(
                f"two images get the id {image_id!r}: {seen[image_id]} and {source_path}; "
                "give their common parent folder as the source instead"
            )
        seen[image_id] = source_path
        seen_frames.add((source_path, rec.frame))
        columns["id"].append(image_id)
        columns["source_path"].append(source_path)
        columns["frame"].append(rec.frame)
        columns["patient_id"].append(ov.get("patient_id", rec.patient_id))
        columns["clip_id"].append(ov.get("clip_id", rec.clip_id or (base if multi else None)))
        columns["label"].append(ov.get("label", rec.label))
        columns["split"].append(ov.get("split", rec.split))
    return len(records)


def _reason(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    if len(msg) > 300:
        msg = msg[:297] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__

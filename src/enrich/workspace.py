"""The workspace: the on-disk project folder that ``enrich embed`` fills and the other
commands read.

A workspace is a folder a user can browse::

    WS/
      workspace.json     marker: format name and version
      manifest.parquet   one row per image: id, source_path, frame, patient_id, clip_id,
                         label, split, modality, sop_class
      embeddings.npz     ids (N,) and vectors (N, d) float32, in manifest order
      embeddings.json    how they were made: embedder, model fingerprint, counts, timings
      model/             the embedder: config.json (params, seed, data fingerprint) + weights
      skipped.csv        source_path, reason: files that could not be read
      runs/<name>/       orders, benchmark results, figures, reports
      runs/batches/      the labeling loop's batch records (enrich.loop.batches)

``enrich labels import`` adds a ``labeled_at`` column (ISO time, UTC) beside ``label``: the
images labeled through the loop, which ``enrich next`` counts as labeled.

Every file is written atomically (:mod:`enrich._atomic`). ``enrich embed`` writes the
embeddings before the manifest, so an interrupted run leaves a manifest whose every image has
a vector; :meth:`Workspace.embeddings` returns exactly the manifest's images, in its order.

Examples
--------
>>> import tempfile, numpy as np, pandas as pd
>>> from enrich.embeddings import Embeddings
>>> ws = Workspace.create(tempfile.mkdtemp())
>>> df = pd.DataFrame({"id": ["a.png", "b.png"], "source_path": ["/d/a.png", "/d/b.png"]})
>>> ws.write_manifest(df)
>>> ws.write_embeddings(Embeddings(np.array(["a.png", "b.png"]), np.eye(2, dtype=np.float32)))
>>> ws.embeddings().ids.tolist(), ws.resolve_ids(["/d/b.png"]).tolist()
(['a.png', 'b.png'], ['b.png'])
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich._atomic import _fsync_dir, _pid_alive, atomic_path, clean_stale_temps, write_json
from enrich._csv import write_csv
from enrich._lock import LOCK_NAME
from enrich.embeddings import Embeddings, load_embeddings, save_embeddings
from enrich.errors import EnrichError, first_few
from enrich.io._discover import MANIFEST_COLUMNS, SKIPPED_COLUMNS  # one definition

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MANIFEST_COLUMNS", "SKIPPED_COLUMNS", "Workspace"]

FORMAT = "enrich-workspace"
VERSION = 1
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Workspace:
    """A project folder: manifest, embeddings, model, skipped files and runs.

    ``Workspace(path)`` only stores the path; use :meth:`create` to make (or reuse) a
    folder and :meth:`open` to require an existing workspace.

    Parameters
    ----------
    path : str or PathLike
        The folder.
    """

    MARKER = "workspace.json"
    MANIFEST = "manifest.parquet"
    EMBEDDINGS = "embeddings.npz"
    EMBEDDINGS_INFO = "embeddings.json"
    SKIPPED = "skipped.csv"
    MODEL = "model"
    RUNS = "runs"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    # -- creating and opening --------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Workspace:
        """Make the folder (and ``runs/``) if needed; an existing workspace is reused.

        Refuses a path that is a file, or a non-empty folder that is not a workspace (so a
        typo cannot litter a folder of images with outputs). Creation is atomic: a new
        workspace is built in a hidden sibling folder and renamed into place, and an
        existing empty folder gets its marker first, so a failure never leaves a folder that
        is neither empty nor a workspace. What a killed creation left behind (an empty
        ``runs/``, a temporary marker) is recognised and cleaned up.
        """
        ws = cls(path)
        if ws.is_workspace():
            ws.runs_dir.mkdir(exist_ok=True)
            return ws
        ws.check_creatable()
        ws._clean_half_created()
        from enrich import __version__

        marker = {"format": FORMAT, "version": VERSION, "enrich_version": __version__}
        if ws.path.is_dir():  # an empty folder (maybe a mount point): marker first, then runs/
            write_json(ws.path / cls.MARKER, marker)
            ws.runs_dir.mkdir(exist_ok=True)
            return ws
        parent = ws.path.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_builds(parent, ws.path.name)
        build = parent / f".{ws.path.name}.creating-{os.getpid()}-{secrets.token_hex(4)}"
        build.mkdir()
        try:
            (build / cls.RUNS).mkdir()
            write_json(build / cls.MARKER, marker)
            try:
                os.rename(build, ws.path)
            except OSError:
                if ws.is_workspace():  # another process created it meanwhile: use theirs
                    return ws
                raise
        finally:
            shutil.rmtree(build, ignore_errors=True)
        _fsync_dir(parent)
        return ws

    def _clean_half_created(self) -> None:
        """Remove what a killed :meth:`create` left in a folder without a marker."""
        if not self.path.is_dir():
            return
        for entry in self.path.iterdir():
            if entry.name == self.RUNS and entry.is_dir() and not any(entry.iterdir()):
                entry.rmdir()
        clean_stale_temps(self.path / self.MARKER)

    def _leftover(self, entry: Path) -> bool:
        """An entry a killed :meth:`create` may leave: empty runs/, the lock, a marker temp."""
        if entry.name == self.RUNS:
            return entry.is_dir() and not entry.is_symlink() and not any(entry.iterdir())
        return entry.name == LOCK_NAME or (
            entry.name.startswith(f".{self.MARKER}.") and entry.is_file()
        )

    def check_creatable(self) -> None:
        """Raise :class:`EnrichError` if :meth:`create` would refuse this path (no writes)."""
        if self.path.exists() and not self.path.is_dir():
            raise EnrichError(f"{self.path}: is a file; expected a workspace folder")
        if (
            self.path.is_dir()
            and not self.is_workspace()
            and any(not self._leftover(e) for e in self.path.iterdir())
        ):
            raise EnrichError(
                f"{self.path}: is a non-empty folder that is not an enrich workspace; "
                "choose a new or empty folder for --workspace"
            )

    def remove_if_unused(self, *, keep_folder: bool = False) -> bool:
        """Delete the workspace if it holds nothing but what :meth:`create` made.

        Used when the command that created it fails before writing anything, so a failed
        first run leaves no folder behind (with `keep_folder`, the folder the user made is
        kept, empty). Returns whether it was removed.
        """
        try:
            entries = list(self.path.iterdir())
        except OSError:
            return False
        if not all(e.name == self.MARKER or self._leftover(e) for e in entries):
            return False
        for e in entries:
            if e.is_dir():
                e.rmdir()
            else:
                e.unlink()
        if not keep_folder:
            self.path.rmdir()
        return True

    def lock(self, *, command: str | None = None) -> contextlib.AbstractContextManager[Path]:
        """Hold ``WS/.enrich.lock`` while writing: one writing command per workspace.

        Raises :class:`enrich._lock.LockedError` naming the holder when another live
        process holds it; a lock left by a killed process is taken over.
        """
        from enrich._lock import folder_lock

        return folder_lock(self.path, command=command)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Workspace:
        """An existing workspace; anything else is an :class:`EnrichError` saying what to run."""
        ws = cls(path)
        if not ws.path.is_dir():
            raise EnrichError(
                f"{ws.path}: no such workspace folder; create it with "
                f"`enrich embed SOURCE --workspace {ws.path}`"
            )
        if not ws.is_workspace():
            raise EnrichError(
                f"{ws.path}: not an enrich workspace (no {cls.MARKER}, {cls.MANIFEST} or "
                f"{cls.EMBEDDINGS}); create it with `enrich embed SOURCE --workspace {ws.path}`"
            )
        return ws

    def is_workspace(self) -> bool:
        """Whether the folder holds a workspace marker, a manifest or embeddings."""
        return any(
            (self.path / name).is_file() for name in (self.MARKER, self.MANIFEST, self.EMBEDDINGS)
        )

    # -- paths -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def embeddings_path(self) -> Path:
        return self.path / self.EMBEDDINGS

    @property
    def embeddings_info_path(self) -> Path:
        return self.path / self.EMBEDDINGS_INFO

    @property
    def skipped_path(self) -> Path:
        return self.path / self.SKIPPED

    @property
    def model_dir(self) -> Path:
        """``WS/model/`` (not created here; the embedder creates it when saving)."""
        return self.path / self.MODEL

    @property
    def runs_dir(self) -> Path:
        return self.path / self.RUNS

    def run_dir(self, name: str, *, create: bool = True) -> Path:
        """``WS/runs/<name>/``; `name` is a plain folder name (letters, digits, ``._-``)."""
        if not _RUN_NAME.match(name):
            raise EnrichError(
                f"run name {name!r}: expected letters, digits, '.', '_' or '-' (no slashes)"
            )
        path = self.runs_dir / name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    def has_embeddings(self) -> bool:
        return self.embeddings_path.is_file() or (self.path / "embeddings.zarr").is_dir()

    # -- manifest ----------------------------------------------------------------------------
    def manifest(self) -> pd.DataFrame:
        """The manifest: one row per image, columns :data:`MANIFEST_COLUMNS` first.

        ``id`` and ``source_path`` are strings; ``frame`` is a nullable integer;
        ``patient_id``, ``clip_id``, ``label``, ``split``, ``modality`` and ``sop_class`` may
        be missing (``<NA>``; a manifest written before ``modality`` existed gets it empty).
        Extra columns the readers add are kept after these.
        """
        import pandas as pd

        if not self.has_manifest():
            raise EnrichError(
                f"{self.manifest_path}: no manifest; run `enrich embed SOURCE --workspace "
                f"{self.path}` first"
            )
        try:
            df = pd.read_parquet(self.manifest_path)
        except (OSError, ValueError, ImportError) as exc:
            raise EnrichError(f"{self.manifest_path}: cannot read the manifest ({exc})") from None
        return _normalise_manifest(df, where=str(self.manifest_path))

    def write_manifest(self, manifest: pd.DataFrame) -> None:
        """Validate (unique string ids, a source path per row) and write atomically."""
        for col in ("id", "source_path"):  # Parquet (and pandas' Arrow strings) hold UTF-8 only
            values = manifest[col].tolist() if col in getattr(manifest, "columns", ()) else []
            bad = [v for v in values if not _is_text(v)]
            if bad:
                from enrich.io._paths import text_path

                raise EnrichError(
                    f"manifest: {len(bad)} {col}(s) are not valid UTF-8, e.g. "
                    f"{text_path(bad[0])!r}; store file names with "
                    "enrich.io._paths.text_path (as enrich.io.discover does)"
                )
        df = _normalise_manifest(manifest, where="manifest")
        with atomic_path(self.manifest_path, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)

    # -- embeddings --------------------------------------------------------------------------
    def embeddings(self, *, aligned: bool = True) -> Embeddings:
        """The workspace's embeddings, with provenance in ``meta``.

        Parameters
        ----------
        aligned : bool
            When the workspace has a manifest, return exactly its images in its order
            (vectors left over from an interrupted run are dropped); an image of the manifest
            without a vector is an error. ``False`` returns the file as stored.

        Returns
        -------
        Embeddings
            ids (N,), vectors (N, d) float32; ``meta`` holds ``workspace``, ``source`` and
            what ``embeddings.json`` records (embedder, seed, model fingerprint).
        """
        if not self.has_embeddings():
            raise EnrichError(
                f"{self.embeddings_path}: no embeddings; run `enrich embed SOURCE --workspace "
                f"{self.path}` first"
            )
        zarr_store = self.path / "embeddings.zarr"  # a chunked store, when there is no .npz
        use_zarr = not self.embeddings_path.is_file() and zarr_store.is_dir()
        emb = load_embeddings(zarr_store if use_zarr else self.embeddings_path)
        meta: dict[str, Any] = {**emb.meta, "workspace": str(self.path)}
        info = self.embeddings_info()
        if info:
            meta.update(
                {k: info[k] for k in ("embedder", "params", "model_fingerprint") if k in info}
            )
        ids, vectors = emb.ids, emb.vectors
        if aligned and self.has_manifest():
            wanted = self.manifest()["id"].to_numpy(dtype=str)
            if len(wanted) != len(ids) or not np.array_equal(wanted, ids):
                pos = {k: i for i, k in enumerate(ids.tolist())}
                missing = [w for w in wanted.tolist() if w not in pos]
                if missing:
                    raise EnrichError(
                        f"{self.path}: {len(missing)} image(s) of the manifest have no embedding "
                        f"({first_few(missing)}); rerun `enrich embed` on this workspace"
                    )
                take = np.fromiter((pos[w] for w in wanted.tolist()), np.int64, len(wanted))
                ids, vectors = wanted, vectors[take]
        return Embeddings(ids=ids, vectors=np.asarray(vectors, dtype=np.float32), meta=meta)

    def write_embeddings(
        self, embeddings: Embeddings, *, info: dict[str, Any] | None = None
    ) -> None:
        """Write ``embeddings.npz`` atomically, then ``embeddings.json`` (`info` + fingerprint)."""
        from enrich.embeddings import fingerprint

        vectors = np.asarray(embeddings.vectors, dtype=np.float32)
        save_embeddings(self.embeddings_path, Embeddings(embeddings.ids, vectors))
        record = dict(info or {})
        record.update(
            {
                "n_images": len(embeddings),
                "dim": int(vectors.shape[1]),
                "fingerprint": fingerprint(vectors, embeddings.ids),
            }
        )
        write_json(self.embeddings_info_path, record)

    def embeddings_info(self) -> dict[str, Any]:
        """What ``embeddings.json`` records ({} when absent or unreadable)."""
        try:
            info = json.loads(self.embeddings_info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    # -- skipped files -----------------------------------------------------------------------
    def skipped(self) -> pd.DataFrame:
        """``skipped.csv`` (``source_path, reason``); empty when nothing was skipped."""
        import pandas as pd

        from enrich._csv import read_csv

        if not self.skipped_path.is_file():
            return pd.DataFrame({c: pd.Series(dtype=str) for c in SKIPPED_COLUMNS})
        return read_csv(self.skipped_path, dtype=str, keep_default_na=False)

    def write_skipped(self, skipped: pd.DataFrame) -> None:
        """Write ``skipped.csv`` atomically (always, so an empty file means none skipped)."""
        import pandas as pd

        df = pd.DataFrame(skipped).copy()
        for col in SKIPPED_COLUMNS:
            if col not in df.columns:
                df[col] = ""
        from enrich.io._paths import text_message

        # a raw non-UTF-8 path (in a path or a reason) escaped, as discovery writes it
        df = pd.DataFrame(
            {c: [text_message(str(v)) for v in df[c].tolist()] for c in SKIPPED_COLUMNS}
        ).astype(str)
        write_csv(df, self.skipped_path)  # file names may begin with '=': escaped

    # -- ids -----------------------------------------------------------------------------------
    def resolve_ids(self, ids_or_paths: Iterable[object]) -> np.ndarray:
        """Turn image ids or source paths into ids, in the given order, without repeats.

        Each item may be an id (``"scans/a.png"``, ``"echo.dcm#12"``), the source path of a
        file as the manifest records it, the same path written differently (relative to the
        current folder, absolute, with ``..``), or a multi-frame file's id without
        ``#frame``; a file stands for all its frames. Unknown items are one
        :class:`EnrichError` that lists them.

        Returns
        -------
        ndarray of shape (n_resolved,)
            str ids of the manifest.
        """
        manifest = self.manifest()
        ids = manifest["id"].tolist()
        id_set = set(ids)
        by_path: dict[str, list[str]] = {}
        for i, src in zip(ids, manifest["source_path"].tolist(), strict=True):
            by_path.setdefault(str(src), []).append(i)
        by_norm: dict[str, list[str]] | None = None  # built only when needed
        by_stem: dict[str, list[str]] | None = None
        out: list[str] = []
        missing: list[str] = []
        for raw in ids_or_paths:
            if raw is None or (isinstance(raw, float) and np.isnan(raw)):
                continue
            item = str(raw).strip()
            if not item:
                continue
            if not _is_text(item):  # a real non-UTF-8 path: the manifest holds its text form
                from enrich.io._paths import text_path

                item = text_path(item)
            if item in id_set:
                out.append(item)
                continue
            if item in by_path:
                out.extend(by_path[item])
                continue
            if by_norm is None:
                by_norm = {}
                for src, members in by_path.items():
                    by_norm.setdefault(_norm(src), []).extend(members)
                by_stem = {}
                for i in ids:
                    if "#" in i:
                        by_stem.setdefault(i.rsplit("#", 1)[0], []).append(i)
            assert by_stem is not None
            key = _norm(item)
            if key in by_norm:
                out.extend(by_norm[key])
            elif item in by_stem:
                out.extend(by_stem[item])
            else:
                missing.append(item)
        if missing:
            raise EnrichError(
                f"{len(missing)} item(s) are neither ids nor source paths of {self.path}: "
                f"{first_few(missing)}"
            )
        return np.array(list(dict.fromkeys(out)), dtype=str)


def _clean_stale_builds(parent: Path, name: str) -> None:
    """Remove hidden build folders of killed :meth:`Workspace.create` calls for `name`."""
    prefix = f".{name}.creating-"
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _is_text(value: object) -> bool:
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _norm(path: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(os.path.expanduser(path))))


def _as_string(col: pd.Series) -> pd.Series:
    """Strings or <NA>; integral floats (a label column with gaps) lose their ``.0``."""
    import pandas as pd

    if pd.api.types.is_float_dtype(col.dtype):
        vals = col.to_numpy(dtype=float)
        finite = vals[~np.isnan(vals)]
        if np.array_equal(finite, np.round(finite)):
            return col.astype("Int64").astype("string")
    return col.astype("string")


def _normalise_manifest(df: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """Columns in contract order with contract dtypes; unique non-empty ids."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise EnrichError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    if "id" not in df.columns or "source_path" not in df.columns:
        raise EnrichError(
            f"{where}: has columns {list(df.columns)}; expected at least 'id' and 'source_path'"
        )
    df = df.reset_index(drop=True).copy()
    if df["id"].isna().any():
        raise EnrichError(f"{where}: {int(df['id'].isna().sum())} row(s) have no id")
    df["id"] = df["id"].astype(str)
    dup = df["id"][df["id"].duplicated()].unique().tolist()
    if dup:
        raise EnrichError(f"{where}: duplicate ids: {first_few(dup)}")
    df["source_path"] = df["source_path"].astype(str)
    if "frame" not in df.columns:
        df["frame"] = pd.array([pd.NA] * len(df), dtype="Int64")
    else:
        df["frame"] = pd.to_numeric(df["frame"], errors="coerce").astype("Int64")
    for col in ("patient_id", "clip_id", "label", "split", "modality", "sop_class"):
        if col not in df.columns:
            df[col] = pd.Series([pd.NA] * len(df), dtype="string")
        else:  # strings or <NA>; a label 1 read from a CSV and from a DICOM tag compare equal
            df[col] = _as_string(df[col])
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return df[list(MANIFEST_COLUMNS) + extra]

"""Exports that keep the labeling order in the tools annotators use.

=============  ==========================================================================
format         what is written to the output folder
=============  ==========================================================================
csv            ``order.csv``: rank, id, file, frame, patient_id, clip_id
labelstudio    ``tasks.json``: one task per image in labeling order; ``data.image`` is a
               local-files URL (``/data/local-files/?d=`` + the path relative to the
               document root) or a URL prefix + that path; ``meta`` carries rank, id,
               patient and clip. ``label_config.xml`` when classes are known.
cvat           ``files.txt`` (the order), ``task.json`` (task spec, labels) and
               ``data.json`` (the data request: ``sorting_method: predefined`` and
               ``job_file_mapping`` cutting the order into jobs of ``job_size``).
monailabel     ``datastore/``: the images (linked or copied) named ``<rank>_<name>`` so
               MONAI Label's ids sort in the labeling order, and ``enrich.json`` (order,
               MONAI id -> enrich id, workspace) that
               :class:`enrich.integrations.monailabel.EnrichStrategy` reads.
=============  ==========================================================================

A frame of a multi-frame file (``clip.dcm#17``) exports as the file plus the frame index,
or, with ``extract_frames``, as a PNG of that frame (read with the project's readers).

Examples
--------
>>> import pandas as pd, tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("a.png", "b.png"):
...     _ = (root / name).write_bytes(b"")
>>> order = pd.DataFrame({"rank": [0, 1], "id": ["b.png", "a.png"],
...                       "path": [str(root / "b.png"), str(root / "a.png")]})
>>> out = export_order(order, root / "out", format="labelstudio", root=root)
>>> [t["data"]["image"] for t in out.tasks]
['/data/local-files/?d=b.png', '/data/local-files/?d=a.png']
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from enrich._atomic import write_json, write_text
from enrich.errors import EnrichError, first_few

if TYPE_CHECKING:
    import pandas as pd

    from enrich.workspace import Workspace

__all__ = ["EXPORT_FORMATS", "ExportResult", "export_order", "load_order"]

EXPORT_FORMATS = ("csv", "labelstudio", "cvat", "monailabel")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportResult:
    """What an export wrote."""

    format: str
    out: Path
    files: list[Path]
    n_images: int
    tasks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _find_workspace(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if (parent / "workspace.json").is_file() or (parent / "manifest.parquet").is_file():
            return parent
    return None


def load_order(
    source: str, *, workspace: str | os.PathLike[str] | None = None
) -> tuple[pd.DataFrame, Workspace | None]:
    """An order to export: ``order.csv`` (from ``enrich rank``), ``batch.csv`` (from
    ``enrich next``), a batch record ``batch-0003.json``, or with a workspace a batch number
    (``3``) or ``latest``.

    Returns the table (``rank, id`` and whatever of ``path, frame, patient_id, clip_id,
    batch`` is known, completed from the workspace manifest) and the workspace if found.
    """
    import pandas as pd

    from enrich.workspace import Workspace

    ws_path = Path(workspace) if workspace is not None else None
    ws: Workspace | None
    p = Path(source)
    batch_no: int | None = None
    if not p.exists():
        m = re.fullmatch(r"(?:batch-?)?(\d+)|latest", source.strip())
        if m is None:
            raise EnrichError(
                f"{source}: no such file; expected order.csv, batch.csv, batch-NNNN.json, or a "
                "batch number / 'latest' with --workspace"
            )
        if ws_path is None:
            raise EnrichError(f"batch {source!r}: give --workspace to find it")
        from enrich.loop.batches import load_batches

        ws = Workspace.open(ws_path)
        history = load_batches(ws)
        if not history:
            raise EnrichError(f"{ws.path}: no batches yet; run `enrich next` first")
        batch_no = len(history) if m.group(1) is None else int(m.group(1))
        if not 1 <= batch_no <= len(history):
            raise EnrichError(f"batch {batch_no}: no such batch (there are {len(history)})")
        p = history[batch_no - 1].path
    if p.suffix.lower() == ".json":
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EnrichError(f"{p}: unreadable batch record ({exc})") from None
        if not isinstance(rec, dict) or "ids" not in rec:
            raise EnrichError(f"{p}: not an enrich batch record (no 'ids')")
        ws_path = ws_path or _find_workspace(p.parent)
        if ws_path is not None:  # checks the record's checksum and numbering
            from enrich.loop.batches import load_batches

            if p.parent.resolve() == (Path(ws_path) / "runs" / "batches").resolve():
                load_batches(Workspace(ws_path))
        table = pd.DataFrame(
            {"rank": range(len(rec["ids"])), "id": rec["ids"], "batch": rec.get("batch")}
        )
    else:
        try:
            table = pd.read_csv(
                p, dtype={"id": str, "path": str}, keep_default_na=False, na_values=[""]
            )
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise EnrichError(f"{p}: cannot read the order ({exc})") from None
        if "id" not in table.columns:
            raise EnrichError(f"{p}: columns {list(table.columns)}; expected at least 'id'")
        if "rank" not in table.columns:
            table.insert(0, "rank", range(len(table)))
        ws_path = ws_path or _find_workspace(p.parent)
        if ws_path is None and (p.parent / "batch.json").is_file():
            rec = json.loads((p.parent / "batch.json").read_text(encoding="utf-8"))
            ws_path = Path(rec["workspace"]) if rec.get("workspace") else None
    table = table.sort_values("rank", kind="stable").reset_index(drop=True)
    table["id"] = table["id"].astype(str)
    if table["id"].duplicated().any():
        raise EnrichError(f"{p}: ids repeat ({first_few(table['id'][table['id'].duplicated()])})")
    ws = Workspace.open(ws_path) if ws_path is not None else None
    if ws is not None:
        manifest = ws.manifest().set_index("id")
        unknown = table["id"][~table["id"].isin(manifest.index)].tolist()
        if unknown:
            raise EnrichError(
                f"{p}: {len(unknown)} id(s) are not in workspace {ws.path}: {first_few(unknown)}"
            )
        for col, src in (
            ("path", "source_path"),
            ("frame", "frame"),
            ("patient_id", "patient_id"),
            ("clip_id", "clip_id"),
        ):
            if src in manifest.columns:
                table[col] = manifest[src].reindex(table["id"]).to_numpy()
    elif "path" not in table.columns:
        raise EnrichError(f"{p}: has no 'path' column and no workspace was found; give --workspace")
    if "frame" not in table.columns:
        table["frame"] = pd.NA
    table["frame"] = pd.to_numeric(table["frame"], errors="coerce").astype("Int64")
    # a frame index means something only for a file that holds several images
    table.loc[~table["id"].str.contains("#", regex=False), "frame"] = pd.NA
    return table, ws


def _safe_name(image_id: str) -> str:
    return _SAFE.sub("_", image_id.replace("/", "__").replace("#", "_f")).strip("_") or "image"


def _extract_frames(table: pd.DataFrame, ws: Workspace | None, out: Path) -> dict[str, str]:
    """Write a PNG per frame row (``out/frames/<name>.png``); returns id -> file path."""
    import numpy as np
    from PIL import Image

    from enrich.io import read_frames

    rows = table[table["frame"].notna()]
    if not len(rows):
        return {}
    options: dict[str, Any] = {}
    if ws is not None:
        try:
            cfg = json.loads((ws.model_dir / "config.json").read_text(encoding="utf-8"))
            options = dict(cfg.get("pipeline", {}).get("read_options", {}))
        except (OSError, ValueError):
            options = {}
    manifest = rows.rename(columns={"path": "source_path"})[["id", "source_path", "frame"]]
    folder = out / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    stream = read_frames(manifest, order="file", **options)
    for image_id, img in stream:
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        target = folder / f"{_safe_name(str(image_id))}.png"
        from enrich._atomic import atomic_path

        with atomic_path(target) as tmp:
            Image.fromarray(np.round(arr * 255).astype(np.uint8)).save(tmp)
        written[str(image_id)] = str(target)
    if len(stream.skipped):
        bad = [f"{s.source_path} ({s.reason})" for s in stream.skipped]
        raise EnrichError(
            f"could not read {len(rows) - len(written)} frame(s) to extract: "
            f"{first_few(bad or ['?'])}"
        )
    return written


def _relative(files: list[str], root: Path | None, *, what: str) -> tuple[list[str], Path]:
    """Paths relative to `root` (default: their longest common folder), posix."""
    absolute = [Path(f).resolve() for f in files]
    if root is None:
        root = Path(os.path.commonpath([str(a.parent) for a in absolute])) if absolute else Path()
    root = Path(root).resolve()
    out, outside = [], []
    for a in absolute:
        try:
            out.append(a.relative_to(root).as_posix())
        except ValueError:
            outside.append(str(a))
    if outside:
        raise EnrichError(
            f"{len(outside)} file(s) are outside {what} {root}: {first_few(outside)}; "
            f"give a {what} that contains them"
        )
    return out, root


def export_order(
    table: pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    format: str,
    ws: Workspace | None = None,
    root: str | os.PathLike[str] | None = None,
    url_prefix: str | None = None,
    job_size: int = 50,
    extract_frames: bool = False,
    classes: list[str] | None = None,
    copy: bool = False,
    name: str = "enrich",
) -> ExportResult:
    """Write `table` (from :func:`load_order`) for a labeling tool; see the module doc."""
    if format not in EXPORT_FORMATS:
        raise EnrichError(f"--format {format!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if "path" not in table.columns or table["path"].isna().any():
        raise EnrichError("the order has images without a path; give the workspace it came from")
    if len(table) == 0:
        raise EnrichError("the order is empty: nothing to export")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EnrichError(f"--out {out} is a file; expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    t = table.copy()
    if "rank" not in t.columns:
        t.insert(0, "rank", range(len(t)))
    if "frame" not in t.columns:
        t["frame"] = pd.array([pd.NA] * len(t), dtype="Int64")
    t["file"] = t["path"].astype(str)
    if extract_frames:
        frames = _extract_frames(t, ws, out)
        has = t["id"].isin(list(frames))
        t.loc[has, "file"] = t.loc[has, "id"].map(frames)
        t.loc[has, "frame"] = pd.NA
        if ws is not None and frames:
            from enrich.loop.batches import record_exported_names

            record_exported_names(ws, {Path(f).name: i for i, f in frames.items()})
    missing = [f for f in dict.fromkeys(t["file"]) if not Path(f).is_file()]
    if missing:
        raise EnrichError(f"{len(missing)} image file(s) do not exist: {first_few(missing)}")
    uid = None
    if ws is not None:
        from enrich.loop.batches import workspace_uid

        uid = workspace_uid(ws)
    writers: dict[str, Callable[..., ExportResult]] = {
        "csv": _write_csv,
        "labelstudio": _write_labelstudio,
        "cvat": _write_cvat,
        "monailabel": _write_monailabel,
    }
    writer = writers[format]
    return writer(
        t,
        out,
        ws=ws,
        uid=uid,
        root=None if root is None else Path(root),
        url_prefix=url_prefix,
        job_size=job_size,
        classes=classes or _known_classes(ws),
        copy=copy,
        name=name,
    )


def _known_classes(ws: Workspace | None) -> list[str]:
    if ws is None:
        return []
    labels = ws.manifest()["label"].dropna().astype(str)
    return sorted(set(labels)) if labels.nunique() <= 50 else []


def _val(v: Any) -> Any:
    import pandas as pd

    if v is None or (not isinstance(v, (list, dict)) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _write_csv(t: pd.DataFrame, out: Path, **_: Any) -> ExportResult:
    from enrich.cli._common import write_csv

    cols = [
        c
        for c in ("rank", "id", "file", "frame", "patient_id", "clip_id", "batch")
        if c in t.columns
    ]
    write_csv(t[cols], out / "order.csv")
    return ExportResult("csv", out, [out / "order.csv"], len(t))


def _write_labelstudio(
    t: pd.DataFrame,
    out: Path,
    *,
    uid: str | None,
    root: Path | None,
    url_prefix: str | None,
    classes: list[str],
    **_: Any,
) -> ExportResult:
    if root is None and url_prefix is None:
        raise EnrichError(
            "labelstudio: give --root (Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) "
            "or --url-prefix (where the images are served)"
        )
    rel, root_used = _relative(t["file"].tolist(), root, what="--root")
    tasks = []
    for (_k, row), r in zip(t.iterrows(), rel, strict=True):
        url = (
            f"{url_prefix.rstrip('/')}/{quote(r)}"
            if url_prefix is not None
            else f"/data/local-files/?d={quote(r)}"
        )
        data: dict[str, Any] = {
            "image": url,
            "enrich_id": row["id"],
            "enrich_rank": int(row["rank"]),
        }
        if uid is not None:
            data["enrich_workspace"] = uid
        frame = _val(row.get("frame"))
        if frame is not None:
            data["frame"] = int(frame)
        meta = {
            "rank": int(row["rank"]),
            "id": row["id"],
            "patient_id": _val(row.get("patient_id")),
            "clip_id": _val(row.get("clip_id")),
            "frame": None if frame is None else int(frame),
            "batch": _val(row.get("batch")),
            "workspace": uid,
        }
        tasks.append({"data": data, "meta": {k: v for k, v in meta.items() if v is not None}})
    write_json(out / "tasks.json", tasks)
    files = [out / "tasks.json"]
    notes = [
        f"paths relative to {root_used}" + (" (the document root)" if url_prefix is None else "")
    ]
    if t["frame"].notna().any():
        notes.append(
            "frames of multi-frame files point at the whole file with data.frame; a browser "
            "cannot show DICOM/NIfTI: use --extract-frames for PNG frames"
        )
    if classes:
        choices = "\n".join(f'    <Choice value="{_xml(c)}"/>' for c in classes)
        write_text(
            out / "label_config.xml",
            '<View>\n  <Image name="image" value="$image"/>\n'
            '  <Choices name="label" toName="image" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>\n",
        )
        files.append(out / "label_config.xml")
    return ExportResult("labelstudio", out, files, len(t), tasks=tasks, notes=notes)


def _xml(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def _write_cvat(
    t: pd.DataFrame,
    out: Path,
    *,
    root: Path | None,
    job_size: int,
    classes: list[str],
    name: str,
    **_: Any,
) -> ExportResult:
    if isinstance(job_size, bool) or job_size < 1:
        raise EnrichError(f"--job-size {job_size}: expected a whole number >= 1")
    dup = t["file"][t["file"].duplicated()].unique().tolist()
    if dup or t["frame"].notna().any():
        raise EnrichError(
            f"cvat: {int(t['frame'].notna().sum())} image(s) are frames of multi-frame files "
            f"({first_few(t['id'][t['frame'].notna()].tolist())}); a CVAT image task needs one "
            "file per image: add --extract-frames"
        )
    rel, root_used = _relative(t["file"].tolist(), root, what="--root")
    write_text(out / "files.txt", "".join(f"{r}\n" for r in rel))
    jobs = [rel[i : i + job_size] for i in range(0, len(rel), job_size)]
    data = {
        "image_quality": 95,
        "use_cache": True,
        "sorting_method": "predefined",
        "server_files": rel,
        "job_file_mapping": jobs,
    }
    task = {"name": name, "labels": [{"name": c} for c in classes]}
    write_json(out / "data.json", data)
    write_json(out / "task.json", task)
    notes = [
        f"server_files are relative to {root_used}: mount that folder as CVAT's share "
        f"(CVAT_SHARE_DIR), {len(jobs)} job(s) of up to {job_size} consecutive ranks"
    ]
    if not classes:
        notes.append("task.json has no labels: add them (or --classes a,b,c) before creating it")
    return ExportResult(
        "cvat",
        out,
        [out / "files.txt", out / "task.json", out / "data.json"],
        len(t),
        notes=notes,
    )


def _write_monailabel(
    t: pd.DataFrame,
    out: Path,
    *,
    ws: Workspace | None,
    uid: str | None,
    copy: bool,
    **_: Any,
) -> ExportResult:
    store = out / "datastore"
    store.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(t))))
    order: list[str] = []
    ids: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    seen: dict[str, str] = {}
    for _k, row in t.iterrows():
        src = Path(row["file"])
        if str(src) in seen:  # frames of one volume or clip: the file stays whole, once
            ids[seen[str(src)]].append(row["id"])
            continue
        suffix = "".join(src.suffixes[-2:]) if src.name.endswith(".nii.gz") else src.suffix
        stem = _safe_name(str(row["id"]).split("#", 1)[0])
        stem = stem[: -len(suffix)] if suffix and stem.endswith(_safe_name(suffix)) else stem
        monai_id = f"{len(order):0{width}d}_{stem}"
        target = store / f"{monai_id}{suffix}"
        if target.exists() or target.is_symlink():
            target.unlink()
        if copy:
            shutil.copy2(src, target)
        else:
            os.symlink(src.resolve(), target)
        order.append(monai_id)
        ids[monai_id] = [row["id"]]
        files[monai_id] = target.name
        seen[str(src)] = monai_id
    record = {
        "format": "enrich-monailabel",
        "version": 1,
        "workspace": str(ws.path.resolve()) if ws is not None else None,
        "workspace_uid": uid,
        "order": order,
        "ids": ids,
        "files": files,
    }
    write_json(store / "enrich.json", record)
    exts = sorted(
        {
            "*" + ("".join(Path(f).suffixes[-2:]) if f.endswith(".nii.gz") else Path(f).suffix)
            for f in files.values()
        }
    )
    notes = [
        f"start MONAI Label with --studies {store} and extensions {exts}; its ids sort in "
        "the labeling order, and EnrichStrategy (enrich.integrations.monailabel) serves them"
    ]
    if ws is not None:
        from enrich.loop.batches import record_exported_names

        record_exported_names(ws, {f: ids[m][0] for m, f in files.items()})
    return ExportResult("monailabel", out, [store / "enrich.json"], len(order), notes=notes)

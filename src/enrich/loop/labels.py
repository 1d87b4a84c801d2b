"""Labels coming back: read a CSV, a Label Studio JSON export or a CVAT for images 1.1 XML
export, map every entry to a workspace image id, and write the ``label`` column.

Each reader returns a :class:`LabelTable`: one row per entry of the file with the key it
names (an id, a path, a URL or a CVAT image name), an optional frame index, the label (or
<NA> when the file only lists ids) and where in the file it came from. :class:`IdMatcher`
maps keys to ids (exact id, source path, path suffix such as a URL or a share-relative
name, extracted-frame names recorded by ``enrich export``). :func:`match_labels` returns
the matched ``(id, label)`` rows and every problem (unknown key, conflicting labels), so
nothing is dropped silently.

Examples
--------
>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "done.csv"
>>> _ = p.write_text("id,label\\na.png,cat\\nb.png,dog\\n")
>>> read_labels(p).table[["key", "label"]].values.tolist()
[['a.png', 'cat'], ['b.png', 'dog']]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

from enrich.errors import EnrichError, first_few

if TYPE_CHECKING:
    import pandas as pd

    from enrich.workspace import Workspace

__all__ = [
    "FORMATS",
    "IdMatcher",
    "ImportSummary",
    "LabelTable",
    "import_labels",
    "match_labels",
    "read_labels",
]

FORMATS = ("csv", "labelstudio", "cvat")
TABLE_COLUMNS = ("key", "frame", "label", "enrich_id", "workspace", "source")
PROBLEM_COLUMNS = ("source", "key", "id", "problem", "detail")
KEY_COLUMNS = ("id", "path", "image", "file", "filename", "source_path", "name")
# Label Studio result value keys that carry class names (choices, region labels, taxonomy).
_LS_LABEL_KEYS = (
    "choices",
    "labels",
    "rectanglelabels",
    "polygonlabels",
    "brushlabels",
    "keypointlabels",
    "ellipselabels",
    "polylinelabels",
    "taxonomy",
)
_CVAT_SHAPES = ("box", "polygon", "polyline", "points", "mask", "ellipse", "cuboid", "skeleton")


@dataclass(frozen=True)
class LabelTable:
    """Entries of a labels file, in file order.

    Attributes
    ----------
    table : DataFrame
        ``key`` (id, path, URL or name), ``frame`` (Int64 or <NA>), ``label`` (string or
        <NA>), ``enrich_id`` and ``workspace`` (what ``enrich export`` put in a Label Studio
        task, else <NA>), ``source`` (e.g. ``"row 3"``, ``"task 17"``, ``"image 4"``).
    format : str
        One of :data:`FORMATS`.
    path : Path
    n_unlabeled : int
        Tasks or images of the export that carry no annotation (not labels, not problems).
    """

    table: pd.DataFrame
    format: str
    path: Path
    n_unlabeled: int = 0


def read_labels(path: str | os.PathLike[str], *, format: str | None = None) -> LabelTable:
    """Read a labels file: CSV (ids or paths, optional ``label``), Label Studio JSON export
    (full JSON or JSON-MIN) or CVAT for images 1.1 XML. The format comes from the suffix
    (``.json``, ``.xml``, anything else is CSV) unless `format` is given."""
    p = Path(path)
    if not p.is_file():
        raise EnrichError(f"{p}: no such labels file")
    fmt = format or {".json": "labelstudio", ".xml": "cvat"}.get(p.suffix.lower(), "csv")
    if fmt not in FORMATS:
        raise EnrichError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnrichError(f"{p}: cannot read it as UTF-8 text ({exc})") from None
    if fmt == "labelstudio":
        rows, n_unlabeled = _read_labelstudio(text, p)
    elif fmt == "cvat":
        rows, n_unlabeled = _read_cvat(text, p)
    else:
        rows, n_unlabeled = _read_csv(text, p), 0
    return LabelTable(table=_table(rows), format=fmt, path=p, n_unlabeled=n_unlabeled)


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    df["frame"] = pd.to_numeric(df["frame"], errors="coerce").astype("Int64")
    for col in ("key", "label", "enrich_id", "workspace", "source"):
        df[col] = df[col].astype("string")
    return df


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# -- CSV ---------------------------------------------------------------------------------------
def _read_csv(text: str, p: Path) -> list[dict[str, Any]]:
    import csv
    import io

    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise EnrichError(f"{p}: holds no ids (expected a CSV with an 'id' or 'path' column)")
    sample = lines[0]
    delimiter = "\t" if "\t" in sample and "," not in sample else ","
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    records = list(reader)
    header = [h.strip().lower() for h in records[0]]
    key_col = next((c for c in KEY_COLUMNS if c in header), None)
    if key_col is None:
        if len(header) > 1:
            raise EnrichError(
                f"{p}: CSV header {records[0]} has no id column; expected one of "
                f"{', '.join(KEY_COLUMNS)} (and optionally 'label')"
            )
        body, k, lab, fr = records, 0, None, None  # one id per line, no header
    else:
        body, k = records[1:], header.index(key_col)
        lab = header.index("label") if "label" in header else None
        fr = header.index("frame") if "frame" in header else None
    rows = []
    for i, rec in enumerate(body):
        line_no = i + (1 if key_col is None else 2)
        if len(rec) <= k or not rec[k].strip():
            raise EnrichError(f"{p}: row {line_no} has no {key_col or 'id'}")
        frame = rec[fr].strip() if fr is not None and len(rec) > fr else None
        if frame and not frame.lstrip("-").isdigit():
            raise EnrichError(f"{p}: row {line_no} has frame {frame!r}; expected a whole number")
        rows.append(
            {
                "key": rec[k].strip(),
                "frame": frame or None,
                "label": _clean(rec[lab]) if lab is not None and len(rec) > lab else None,
                "enrich_id": None,
                "workspace": None,
                "source": f"row {line_no}",
            }
        )
    if not rows:
        raise EnrichError(f"{p}: holds no ids")
    return rows


# -- Label Studio ---------------------------------------------------------------------------
def _ls_key(data: dict[str, Any]) -> str | None:
    """The image reference of a task's data: its ``image`` field (or the first URL-like
    string), with a local-files URL turned back into its path."""
    value = data.get("image")
    if not isinstance(value, str):
        value = next(
            (v for k, v in data.items() if isinstance(v, str) and not k.startswith("enrich_")),
            None,
        )
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.query and "d" in parse_qs(parsed.query):
        return unquote(parse_qs(parsed.query)["d"][0])
    if parsed.scheme in ("http", "https", "s3", "gs", "azure-blob") or value.startswith("/data/"):
        return unquote(parsed.path).lstrip("/")
    return value


def _ls_labels(annotation: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for item in annotation.get("result") or []:
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, dict):
            continue
        for key in _LS_LABEL_KEYS:
            for v in value.get(key) or []:
                # taxonomy values are paths: ["Lung", "Nodule"] -> "Lung/Nodule"
                out.append("/".join(map(str, v)) if isinstance(v, list) else str(v))
    return out


def _read_labelstudio(text: str, p: Path) -> tuple[list[dict[str, Any]], int]:
    try:
        tasks = json.loads(text)
    except ValueError as exc:
        raise EnrichError(f"{p}: not valid JSON ({exc}); expected a Label Studio export") from None
    if isinstance(tasks, dict) and "data" in tasks:
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise EnrichError(
            f"{p}: expected a Label Studio JSON export (a list of tasks), got "
            f"{type(tasks).__name__}"
        )
    rows: list[dict[str, Any]] = []
    n_unlabeled = 0
    for i, task in enumerate(tasks):
        source = f"task {task.get('id', i)}"
        if "data" in task:  # full JSON export
            data = task.get("data")
            if not isinstance(data, dict):
                raise EnrichError(f"{p}: {source} has no 'data' object; not a Label Studio export")
            meta = task.get("meta") if isinstance(task.get("meta"), dict) else {}
            labels: list[str] | None = None
            for ann in task.get("annotations") or []:
                if not isinstance(ann, dict) or ann.get("was_cancelled"):
                    continue
                found = _ls_labels(ann)
                if found:
                    labels = (labels or []) + ["\x1f".join(sorted(set(found)))]
        else:  # JSON-MIN: the data fields and one key per control tag, flat
            data, meta = task, {}
            skip = {"id", "image", "frame", "annotator", "annotation_id", "created_at"}
            skip |= {"updated_at", "lead_time"}
            controls = [v for k, v in task.items() if k not in skip and not k.startswith("enrich_")]
            found = []
            for v in controls:
                if isinstance(v, str):
                    found.append(v)
                elif isinstance(v, dict):
                    for name in _LS_LABEL_KEYS:
                        found.extend(str(x) for x in v.get(name) or [])
            labels = ["\x1f".join(sorted(set(found)))] if found else None
        enrich_id = _clean(data.get("enrich_id")) or _clean(meta.get("id"))
        key = enrich_id or _ls_key(data)
        if key is None:
            raise EnrichError(f"{p}: {source} has no image reference in its data")
        frame = data.get("frame", meta.get("frame"))
        if labels is None:
            n_unlabeled += 1
            continue
        for label in dict.fromkeys(labels):  # distinct annotations' labels; a conflict shows
            rows.append(
                {
                    "key": key,
                    "frame": frame if enrich_id is None else None,
                    "label": label.replace("\x1f", ";"),
                    "enrich_id": enrich_id,
                    "workspace": _clean(data.get("enrich_workspace"))
                    or _clean(meta.get("workspace")),
                    "source": source,
                }
            )
    return rows, n_unlabeled


# -- CVAT -------------------------------------------------------------------------------------
def _read_cvat(text: str, p: Path) -> tuple[list[dict[str, Any]], int]:
    import xml.etree.ElementTree as ET

    if "<!ENTITY" in text:  # entity expansion is how XML bombs work; CVAT never writes one
        raise EnrichError(f"{p}: declares XML entities; expected a plain CVAT XML export")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise EnrichError(f"{p}: not valid XML ({exc}); expected a CVAT export") from None
    if root.tag != "annotations":
        raise EnrichError(f"{p}: root element <{root.tag}>; expected a CVAT <annotations> export")
    images = root.findall("image")
    if not images and root.findall("track"):
        raise EnrichError(
            f"{p}: a CVAT for video export (tracks); export the task as 'CVAT for images 1.1'"
        )
    rows: list[dict[str, Any]] = []
    n_unlabeled = 0
    for el in images:
        name = el.get("name")
        source = f"image {el.get('id', '?')}"
        if not name:
            raise EnrichError(f"{p}: {source} has no name attribute")
        tags = [t.get("label") for t in el.findall("tag") if t.get("label")]
        shapes = [s.get("label") for s in el if s.tag in _CVAT_SHAPES and s.get("label")]
        found = tags or shapes  # an image-level tag wins; else the labels of its shapes
        if not found:
            n_unlabeled += 1
            continue
        rows.append(
            {
                "key": name,
                "frame": None,
                "label": ";".join(sorted(set(map(str, found)))),
                "enrich_id": None,
                "workspace": None,
                "source": source,
            }
        )
    return rows, n_unlabeled


# -- matching keys to ids ---------------------------------------------------------------------
class IdMatcher:
    """Map keys (ids, source paths, URLs, share-relative names) to workspace ids.

    Built once from the manifest (and the names ``enrich export`` recorded for extracted
    frames), so matching many keys costs one dictionary lookup or a few each.
    """

    def __init__(self, manifest: pd.DataFrame, exported: dict[str, str] | None = None) -> None:
        import pandas as pd

        self._ids = manifest["id"].astype(str).tolist()
        self._srcs = manifest["source_path"].astype(str).tolist()
        frames: list[int | None]
        if "frame" in manifest.columns:
            col = pd.to_numeric(manifest["frame"], errors="coerce").astype("Int64")
            frames = [None if pd.isna(v) else int(v) for v in col.to_numpy(dtype=float)]
        else:
            frames = [None] * len(self._ids)
        self.ids = set(self._ids)
        self.exported = dict(exported or {})
        self.by_path: dict[str, list[str]] = {}
        self.frame_of: dict[str, int | None] = dict(zip(self._ids, frames, strict=True))
        self.files: dict[str, list[str]] = {}  # file key (id without '#k') -> ids of its frames
        for i, src in zip(self._ids, self._srcs, strict=True):
            self.by_path.setdefault(src, []).append(i)
            self.files.setdefault(i.rsplit("#", 1)[0] if "#" in i else i, []).append(i)
        # built on first need: most files name exact ids or paths
        self._by_norm: dict[str, list[str]] | None = None
        self._suffix: dict[str, set[str]] | None = None

    @property
    def by_norm(self) -> dict[str, list[str]]:
        if self._by_norm is None:
            self._by_norm = {}
            for src, members in self.by_path.items():
                self._by_norm.setdefault(_norm(src), []).extend(members)
        return self._by_norm

    @property
    def suffix(self) -> dict[str, set[str]]:
        """Path suffix -> file keys (or ``"\\0" + exported name``)."""
        if self._suffix is None:
            index: dict[str, set[str]] = {}
            for i, src in zip(self._ids, self._srcs, strict=True):
                stem = i.rsplit("#", 1)[0] if "#" in i else i
                for path in (stem, PurePosixPath(src.replace("\\", "/")).as_posix()):
                    parts = [x for x in path.split("/") if x]
                    for k in range(len(parts)):
                        index.setdefault("/".join(parts[k:]), set()).add(stem)
            for name in self.exported:
                parts = [x for x in name.replace("\\", "/").split("/") if x]
                for k in range(len(parts)):
                    index.setdefault("/".join(parts[k:]), set()).add("\0" + name)
            self._suffix = index
        return self._suffix

    def match(self, key: str, frame: int | None = None) -> list[str]:
        """Ids for `key` (several for a multi-frame file without a frame); [] if unknown,
        or raises :class:`EnrichError` when a short name fits several files."""
        key = key.strip()
        if key in self.ids:
            return [key]
        if key in self.exported:
            return [self.exported[key]]
        hits = self.by_path.get(key) or self.files.get(key)
        if hits is None and (os.sep in key or "/" in key):
            hits = self.by_norm.get(_norm(key))
        if hits is None:
            parts = [x for x in key.replace("\\", "/").split("/") if x]
            for k in range(len(parts)):
                found = self.suffix.get("/".join(parts[k:]))
                if found is None:
                    continue
                if len(found) > 1:
                    raise EnrichError(
                        f"{key!r} fits {len(found)} images ({first_few(sorted(found))}); "
                        "use workspace ids or longer paths"
                    )
                (stem,) = found
                if stem.startswith("\0"):
                    return [self.exported[stem[1:]]]
                hits = self.files[stem]
                break
        if not hits:
            return []
        hits = list(dict.fromkeys(hits))
        if frame is not None:
            hits = [h for h in hits if self.frame_of.get(h) == frame]
        return hits


def _norm(path: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(os.path.expanduser(path))))


def match_labels(
    labels: LabelTable,
    manifest: pd.DataFrame,
    *,
    workspace_uid: str | None = None,
    exported: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Matched ``(id, label, source)`` rows (one per id) and the problems.

    Problems (``source, key, id, problem, detail``): ``unknown`` (no image of the workspace),
    ``ambiguous`` (a short name that fits several images), ``conflict`` (one image given
    different labels in the file; none of them is kept). A Label Studio export made from
    another workspace (its tasks carry another ``enrich_workspace``) is an error.
    """
    import pandas as pd

    t = labels.table
    if workspace_uid is not None and t["workspace"].notna().any():
        other = sorted(set(t["workspace"].dropna()) - {workspace_uid})
        if other:
            raise EnrichError(
                f"{labels.path}: exported from another enrich workspace ({other[0]}; this one "
                f"is {workspace_uid}): is it the export of a different project?"
            )
    matcher = IdMatcher(manifest, exported)
    rows: list[tuple[str, Any, str]] = []
    problems: list[dict[str, Any]] = []
    for key, frame, label, enrich_id, source in zip(
        t["key"], t["frame"], t["label"], t["enrich_id"], t["source"], strict=True
    ):
        fr = None if pd.isna(frame) else int(frame)
        try:
            hits = matcher.match(str(enrich_id) if not pd.isna(enrich_id) else str(key), fr)
        except EnrichError as exc:
            problems.append(_problem(source, key, None, "ambiguous", str(exc)))
            continue
        if not hits:
            where = "" if fr is None else f" frame {fr}"
            problems.append(
                _problem(source, key, None, "unknown", f"no image of the workspace{where}")
            )
            continue
        rows.extend((h, None if pd.isna(label) else str(label), str(source)) for h in hits)
    matched = pd.DataFrame(rows, columns=["id", "label", "source"])
    # one image, several different labels: a conflict, reported and not written
    labelled = matched.dropna(subset=["label"])
    n_labels = labelled.groupby("id")["label"].nunique()
    conflicted = set(n_labels[n_labels > 1].index)
    for i in sorted(conflicted):
        rows_i = labelled[labelled["id"] == i]
        detail = "; ".join(
            f"{s}: {lab}" for s, lab in zip(rows_i["source"], rows_i["label"], strict=True)
        )
        problems.append(_problem(", ".join(rows_i["source"]), i, i, "conflict", detail))
    matched = matched[~matched["id"].isin(conflicted)]
    matched = matched.sort_values("label", na_position="first", kind="stable")
    matched = matched.drop_duplicates("id", keep="last").sort_index().reset_index(drop=True)
    return matched, pd.DataFrame(problems, columns=list(PROBLEM_COLUMNS))


def _problem(source: object, key: object, i: object, problem: str, detail: str) -> dict[str, Any]:
    return {"source": source, "key": key, "id": i, "problem": problem, "detail": detail}


def describe_problems(problems: pd.DataFrame) -> str:
    """``"2 unknown ids, 1 conflicting label"`` for a problems table."""
    words = {
        "unknown": "unknown id",
        "ambiguous": "ambiguous name",
        "conflict": "conflicting label",
    }
    counts = problems["problem"].value_counts()
    return ", ".join(
        f"{n} {words.get(str(k), str(k))}{'s' if n > 1 else ''}" for k, n in counts.items()
    )


# -- importing into the manifest --------------------------------------------------------------
@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_labels` did."""

    n_entries: int
    n_written: int
    n_unchanged: int
    n_changed: int
    n_unlabeled: int
    problems: pd.DataFrame
    format: str

    def line(self) -> str:
        text = (
            f"{self.n_written} label(s) written ({self.n_changed} changed, {self.n_unchanged} "
            f"already there) from {self.n_entries} {self.format} entr"
            f"{'y' if self.n_entries == 1 else 'ies'}"
        )
        if self.n_unlabeled:
            text += f"; {self.n_unlabeled} without annotation"
        if len(self.problems):
            text += f"; {len(self.problems)} problem(s): {describe_problems(self.problems)}"
        return text


def import_labels(
    ws: Workspace,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    overwrite: bool = False,
    now: str | None = None,
) -> ImportSummary:
    """Write the labels of `path` into the workspace manifest (``label``, ``labeled_at``).

    Entries that map to no image, or that give one image different labels, are problems
    (returned, not written). An image whose manifest label differs from the file's is a
    ``relabel`` problem unless `overwrite`. The manifest is rewritten atomically, once.
    """
    import pandas as pd

    from enrich.loop.batches import exported_names, workspace_uid

    labels = read_labels(path, format=format)
    manifest = ws.manifest()
    matched, problems = match_labels(
        labels,
        manifest,
        workspace_uid=workspace_uid(ws, create=False),
        exported=exported_names(ws),
    )
    matched = matched.dropna(subset=["label"])
    if labels.format == "csv" and len(labels.table) and labels.table["label"].isna().all():
        raise EnrichError(f"{labels.path}: has no 'label' column; nothing to import")
    stamp = now or _utc_now()
    m = manifest.set_index("id", drop=False)
    if "labeled_at" not in m.columns:
        m["labeled_at"] = pd.Series(pd.NA, index=m.index, dtype="string")
    ids = matched["id"].astype(str).tolist()
    old = [None if pd.isna(x) else str(x) for x in m.loc[ids, "label"].tolist()]
    new = [str(x) for x in matched["label"].tolist()]
    srcs = matched["source"].astype(str).tolist()
    stamped = [not pd.isna(x) for x in m.loc[ids, "labeled_at"].tolist()]
    write: list[tuple[str, str]] = []
    stamp_ids: list[str] = []
    n_same = n_changed = 0
    for i, o, n, s, st in zip(ids, old, new, srcs, stamped, strict=True):
        if o == n:
            n_same += 1
            if not st:  # a label from discovery enters the loop now
                stamp_ids.append(i)
        elif o is not None and not overwrite:
            problems.loc[len(problems)] = _problem(
                s, i, i, "relabel", f"manifest has {o!r}, file has {n!r} (--overwrite to replace)"
            )
        else:
            n_changed += o is not None
            write.append((i, n))
            stamp_ids.append(i)
    if write:
        m.loc[[w[0] for w in write], "label"] = [w[1] for w in write]
    m.loc[stamp_ids, "labeled_at"] = stamp
    if stamp_ids:
        ws.write_manifest(m.reset_index(drop=True))
    return ImportSummary(
        n_entries=len(labels.table),
        n_written=len(write),
        n_unchanged=n_same,
        n_changed=n_changed,
        n_unlabeled=labels.n_unlabeled,
        problems=problems,
        format=labels.format,
    )


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")

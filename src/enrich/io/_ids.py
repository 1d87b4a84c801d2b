"""Patient, clip and label ids from file names, and labels joined from a side table.

Many datasets carry the patient and clip in the file name (``patient_12_L3.mp4``,
``case_0042/slice_017.png``) and their labels in a separate table keyed by clip or patient
(COVID-BLUES' ``severity.csv``). :func:`apply_id_pattern` fills the manifest's
``patient_id``/``clip_id``/``label`` from a regular expression searched in each file's path;
:func:`join_labels` sets ``label`` from a CSV keyed by one manifest column. Both run on a
:class:`~enrich.io.Discovery` after :func:`~enrich.io.discover` and return a new one; values
given in a CSV manifest source still win over both.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from enrich.errors import EnrichError

if TYPE_CHECKING:
    from enrich.io._discover import Discovery

__all__ = [
    "ID_GROUPS",
    "annotate",
    "apply_id_pattern",
    "compile_id_pattern",
    "join_labels",
    "parse_label_columns",
]

#: The named groups an ``--id-pattern`` may use.
ID_GROUPS = ("patient_id", "clip_id", "label")
_MISSING = ("error", "skip")
_KEYS = ("id", "patient_id", "clip_id", "source_path")


def compile_id_pattern(pattern: str) -> re.Pattern[str]:
    """Compile `pattern`; it must have at least one of :data:`ID_GROUPS` and no other names.

    Examples
    --------
    >>> rx = compile_id_pattern(r"(?P<clip_id>patient_(?P<patient_id>\\d+)_\\w+)\\.mp4$")
    >>> sorted(rx.groupindex)
    ['clip_id', 'patient_id']
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        msg = f"--id-pattern {pattern!r} is not a valid regular expression: {exc}"
        raise EnrichError(msg) from None
    names = set(rx.groupindex)
    unknown = sorted(names - set(ID_GROUPS))
    if unknown:
        raise EnrichError(
            f"--id-pattern {pattern!r}: unknown group name(s) {', '.join(unknown)}; "
            f"expected (?P<name>...) groups among {', '.join(ID_GROUPS)}"
        )
    if not names:
        raise EnrichError(
            f"--id-pattern {pattern!r} has no named group; expected at least one of "
            f"(?P<patient_id>...), (?P<clip_id>...), (?P<label>...)"
        )
    return rx


def _csv_given(sources: Sequence[str | os.PathLike[str]]) -> dict[str, set[str]]:
    """For files listed in CSV manifest sources: the id columns the CSV gave a value for.

    Keys are absolute posix paths of files, or of folders with a trailing ``/`` (a folder row
    gives its values to every file under it).
    """
    import pandas as pd

    given: dict[str, set[str]] = {}
    for src in sources:
        path = Path(src)
        if path.suffix.lower() != ".csv" or not path.is_file():
            continue
        table = pd.read_csv(path, dtype=str, keep_default_na=False)  # discover read it already
        root = path.absolute().parent
        cols = [c for c in ID_GROUPS if c in table.columns]
        for row in table.to_dict("records"):
            raw = str(row.get("path", "")).strip()
            if not raw:
                continue
            p = Path(raw)
            p = p if p.is_absolute() else root / p
            key = p.as_posix() + ("/" if p.is_dir() else "")
            given.setdefault(key, set()).update(c for c in cols if str(row[c]).strip())
    return given


def _given_for(source_path: str, given: dict[str, set[str]]) -> set[str]:
    out = set(given.get(source_path, ()))
    for key, cols in given.items():
        if key.endswith("/") and source_path.startswith(key):
            out |= cols
    return out


def apply_id_pattern(
    discovery: Discovery,
    pattern: str | re.Pattern[str],
    *,
    missing: str = "error",
    sources: Sequence[str | os.PathLike[str]] = (),
) -> Discovery:
    """Fill ``patient_id``, ``clip_id`` and ``label`` from each image's file path.

    Parameters
    ----------
    discovery : Discovery
        From :func:`enrich.io.discover`.
    pattern : str or compiled pattern
        Searched (``re.search``) in each image's absolute ``source_path`` (posix, ``/``
        separators). Its named groups ``patient_id``, ``clip_id`` and ``label`` set those
        columns; a group that did not take part in the match leaves the column as it was.
    missing : {"error", "skip"}
        A path the pattern does not match: stop with an error naming it, or leave its images
        out and list the file in ``skipped`` with the reason.
    sources : sequence of paths
        The sources given to :func:`discover`: values a CSV manifest gave for a file win
        over the pattern's.

    Returns
    -------
    Discovery
        A new discovery; the input is not changed.

    Examples
    --------
    >>> import pandas as pd
    >>> from enrich.io._discover import Discovery
    >>> m = pd.DataFrame({"id": ["a/patient_3_L1.mp4#0"], "source_path": ["/d/patient_3_L1.mp4"],
    ...                   "frame": [0], "patient_id": [None], "clip_id": [None],
    ...                   "label": [None], "split": [None]})
    >>> d = Discovery(m, pd.DataFrame(columns=["source_path", "reason"]))
    >>> out = apply_id_pattern(d, r"(?P<clip_id>patient_(?P<patient_id>\\d+)_\\w+)\\.mp4$")
    >>> out.manifest[["patient_id", "clip_id"]].values.tolist()
    [['3', 'patient_3_L1']]
    """
    import pandas as pd

    if missing not in _MISSING:
        raise EnrichError(
            f"--id-pattern-missing {missing!r}: expected one of {', '.join(_MISSING)}"
        )
    rx = pattern if isinstance(pattern, re.Pattern) else compile_id_pattern(pattern)
    manifest = discovery.manifest.copy()
    given = _csv_given(sources)
    groups = [g for g in ID_GROUPS if g in rx.groupindex]
    matches: dict[str, re.Match[str] | None] = {
        sp: rx.search(sp) for sp in pd.unique(manifest["source_path"])
    }
    unmatched = [sp for sp, m in matches.items() if m is None]
    if unmatched and missing == "error":
        raise EnrichError(
            f"--id-pattern {rx.pattern!r} does not match {unmatched[0]}"
            + (f" (and {len(unmatched) - 1} more file(s))" if len(unmatched) > 1 else "")
            + "; fix the pattern, or pass --id-pattern-missing skip to leave such files out"
        )
    for g in groups:
        values = []
        for sp, old in zip(manifest["source_path"], manifest[g], strict=True):
            m = matches[sp]
            new = None if m is None else m.group(g)
            keep = new is None or new == "" or (given and g in _given_for(sp, given))
            values.append(old if keep else new)
        manifest[g] = pd.Series(values, index=manifest.index, dtype=object)
    skipped = discovery.skipped
    if unmatched:
        bad = set(unmatched)
        manifest = manifest.loc[~manifest["source_path"].isin(bad)].reset_index(drop=True)
        extra = pd.DataFrame(
            {"source_path": unmatched, "reason": f"--id-pattern {rx.pattern!r} does not match"}
        )
        skipped = pd.concat([skipped, extra], ignore_index=True) if len(skipped) else extra
    return dataclasses.replace(discovery, manifest=manifest, skipped=skipped)


def parse_label_columns(spec: str | None) -> dict[str, str]:
    """``"Video name=clip_id,B-lines=label"`` → ``{"Video name": "clip_id", "B-lines": "label"}``.

    Each ``SIDE=NAME`` renames a column of the side table; column names may hold spaces but
    not ``,`` or ``=``.
    """
    if spec is None or not spec.strip():
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        side, sep, name = part.partition("=")
        side, name = side.strip(), name.strip()
        if not sep or not side or not name:
            raise EnrichError(
                f"--labels-columns {spec!r}: {part.strip()!r} is not COLUMN=NAME; expected e.g. "
                "'video_file=clip_id,B-lines=label'"
            )
        if side in out:
            raise EnrichError(f"--labels-columns {spec!r}: column {side!r} is named twice")
        out[side] = name
    return out


def _normalise_key(value: str, strip_suffixes: bool) -> str:
    value = value.strip()
    if strip_suffixes:
        for suffix in (".mp4", ".avi", ".mov", ".mkv", ".dcm", ".png", ".jpg", ".nii.gz"):
            if value.lower().endswith(suffix):
                return value[: -len(suffix)]
    return value


def join_labels(
    discovery: Discovery,
    labels: str | os.PathLike[str],
    *,
    key: str = "clip_id",
    columns: dict[str, str] | None = None,
    missing: str = "error",
    sources: Sequence[str | os.PathLike[str]] = (),
) -> Discovery:
    """Set each image's ``label`` from a side table keyed by one manifest column.

    Parameters
    ----------
    discovery : Discovery
        From :func:`enrich.io.discover` (and :func:`apply_id_pattern`).
    labels : path
        A CSV file; after renaming by `columns` it must have a column named `key` and a
        column ``label``. Empty label cells count as missing.
    key : {"clip_id", "patient_id", "id", "source_path"}
        The manifest column to join on. Per-clip labels reach every frame of the clip;
        per-patient labels every image of the patient.
    columns : dict, optional
        Side-table column → name (see :func:`parse_label_columns`).
    missing : {"error", "skip"}
        An image whose key is not in the table (or has no key, or an empty label): stop with
        an error naming it, or leave it out and list its file in ``skipped``.
    sources : sequence of paths
        The sources given to :func:`discover`: a label a CSV manifest gave wins.

    Returns
    -------
    Discovery
        A new discovery with ``label`` set.
    """
    import pandas as pd

    if key not in _KEYS:
        raise EnrichError(f"--labels-key {key!r}: expected one of {', '.join(_KEYS)}")
    if missing not in _MISSING:
        raise EnrichError(f"--labels-missing {missing!r}: expected one of {', '.join(_MISSING)}")
    path = Path(labels)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise EnrichError(f"--labels {path}: no such file") from None
    except Exception as exc:
        raise EnrichError(f"--labels {path}: cannot read it as CSV: {exc}") from exc
    columns = dict(columns or {})
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise EnrichError(
            f"--labels {path} has no column {absent[0]!r} (columns: {', '.join(table.columns)})"
        )
    table = table.rename(columns=columns)
    for need in (key, "label"):
        if need not in table.columns or list(table.columns).count(need) != 1:
            raise EnrichError(
                f"--labels {path}: expected exactly one column {need!r} (columns: "
                f"{', '.join(table.columns)}); name it with --labels-columns 'COLUMN={need}'"
            )
    strip = key in ("clip_id", "id")
    lookup: dict[str, str] = {}
    for k_raw, lab_raw in zip(table[key], table["label"], strict=True):
        k, lab = _normalise_key(k_raw, strip), lab_raw.strip()
        if not k or not lab:
            continue
        if k in lookup and lookup[k] != lab:
            raise EnrichError(
                f"--labels {path}: {key} {k!r} has two labels, {lookup[k]!r} and {lab!r}"
            )
        lookup[k] = lab
    if not lookup:
        raise EnrichError(f"--labels {path}: no row has both a {key} and a label")

    manifest = discovery.manifest.copy()
    given = _csv_given(sources)
    labels_out: list[str | None] = []
    bad_rows: list[int] = []
    for i, (sp, k, old) in enumerate(
        zip(manifest["source_path"], manifest[key], manifest["label"], strict=True)
    ):
        if given and "label" in _given_for(sp, given):
            labels_out.append(old)
            continue
        found = None if k is None else lookup.get(_normalise_key(str(k), strip))
        if found is None:
            bad_rows.append(i)
        labels_out.append(found)
    manifest["label"] = pd.Series(labels_out, index=manifest.index, dtype=object)
    skipped = discovery.skipped
    if bad_rows:
        first = manifest.iloc[bad_rows[0]]
        n_bad = len(bad_rows)
        if missing == "error":
            raise EnrichError(
                f"--labels {path}: no label for {key} {first[key]!r} ({first['source_path']})"
                + (f" and {n_bad - 1} more image(s)" if n_bad > 1 else "")
                + "; add it to the table, or pass --labels-missing skip to leave such images out"
            )
        dropped = manifest.iloc[bad_rows]
        manifest = manifest.drop(index=manifest.index[bad_rows]).reset_index(drop=True)
        extra = (
            dropped.groupby("source_path", sort=False)
            .size()
            .reset_index(name="n")
            .assign(reason=lambda d: [f"no label in {path.name} ({n} image(s))" for n in d["n"]])
        )[["source_path", "reason"]]
        skipped = pd.concat([skipped, extra], ignore_index=True) if len(skipped) else extra
    return dataclasses.replace(discovery, manifest=manifest, skipped=skipped)


def annotate(
    discovery: Discovery,
    *,
    sources: Sequence[str | os.PathLike[str]] = (),
    id_pattern: str | None = None,
    id_pattern_missing: str = "error",
    labels: str | os.PathLike[str] | None = None,
    labels_key: str = "clip_id",
    labels_columns: str | dict[str, str] | None = None,
    labels_missing: str = "error",
) -> Discovery:
    """:func:`apply_id_pattern` then :func:`join_labels`, each when asked for (``enrich embed``)."""
    if id_pattern is not None:
        discovery = apply_id_pattern(
            discovery, id_pattern, missing=id_pattern_missing, sources=sources
        )
    if labels is not None:
        cols = (
            parse_label_columns(labels_columns)
            if labels_columns is None or isinstance(labels_columns, str)
            else dict(labels_columns)
        )
        discovery = join_labels(
            discovery, labels, key=labels_key, columns=cols, missing=labels_missing, sources=sources
        )
    if len(discovery.manifest) == 0:
        raise EnrichError(
            "no image is left after --id-pattern/--labels: "
            + "; ".join(discovery.skipped["reason"].astype(str).unique()[:2].tolist())
        )
    return discovery

"""Batches: the next K images given everything labeled so far, recorded so the loop can be
audited and re-run.

A batch is one JSON file ``WS/runs/batches/batch-0003.json`` (number, strategy, seed, time,
the request that made it, ids in labeling order, their max similarity at pick, patient and
clip coverage) with a checksum over its content, written atomically. A batch is *open* while
some of its images are not labeled; the images of open batches are handed out, so the next
batch treats them as already chosen (they are excluded, and the new batch is not redundant
with them). Asking again with the same labels and options returns the same batch
(idempotent); a file edited by hand, a missing number or an unknown id is an error.

Examples
--------
>>> import tempfile, numpy as np, pandas as pd
>>> from enrich.embeddings import Embeddings
>>> from enrich.workspace import Workspace
>>> ws = Workspace.create(tempfile.mkdtemp())
>>> ids = np.array([f"{i}.png" for i in range(20)])
>>> ws.write_manifest(pd.DataFrame({"id": ids, "source_path": ids}))
>>> ws.write_embeddings(Embeddings(ids, np.random.default_rng(0).normal(size=(20, 4))))
>>> b = next_batch(ws, labeled=["0.png", "1.png"], budget=3)
>>> b.number, len(b.ids), next_batch(ws, labeled=["0.png", "1.png"], budget=3).reused
(1, 3, True)
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich._atomic import write_json
from enrich.errors import EnrichError, first_few

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from enrich.select.base import RankResult
    from enrich.workspace import Workspace

    Ranker = Callable[..., RankResult]

__all__ = [
    "Batch",
    "batches_dir",
    "exported_names",
    "labeled_in_manifest",
    "load_batches",
    "next_batch",
    "workspace_uid",
]

FORMAT = "enrich-batch"
VERSION = 1
_NAME = re.compile(r"^batch-(\d{4,})\.json$")


def batches_dir(ws: Workspace) -> Path:
    """``WS/runs/batches/``."""
    return ws.runs_dir / "batches"


def workspace_uid(ws: Workspace, *, create: bool = True) -> str | None:
    """A random id for this workspace, kept in ``runs/batches/workspace-uid``, written into
    exports so labels from another workspace's export are recognised."""
    p = batches_dir(ws) / "workspace-uid"
    if p.is_file():
        return p.read_text(encoding="utf-8").strip() or None
    if not create:
        return None
    from enrich._atomic import write_text

    uid = uuid.uuid4().hex[:12]
    write_text(p, uid + "\n")
    return uid


def exported_names(ws: Workspace) -> dict[str, str]:
    """File names ``enrich export`` gave images (extracted frames, staged copies) -> ids."""
    p = batches_dir(ws) / "exported-names.csv"
    if not p.is_file():
        return {}
    import pandas as pd

    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    return dict(zip(df["name"], df["id"], strict=True))


def record_exported_names(ws: Workspace, names: dict[str, str]) -> None:
    """Add ``name -> id`` pairs to ``exported-names.csv`` (atomic rewrite)."""
    import pandas as pd

    from enrich.cli._common import write_csv

    merged = {**exported_names(ws), **names}
    write_csv(
        pd.DataFrame({"name": list(merged), "id": list(merged.values())}),
        batches_dir(ws) / "exported-names.csv",
    )


def labeled_in_manifest(manifest: pd.DataFrame) -> list[str]:
    """Ids labeled through the loop (``enrich labels import`` sets ``labeled_at``)."""
    if "labeled_at" not in manifest.columns:
        return []
    return manifest["id"][manifest["labeled_at"].notna()].astype(str).tolist()


@dataclass(frozen=True)
class Batch:
    """One recorded batch.

    Attributes
    ----------
    number : int
    ids : list of str
        In labeling order.
    record : dict
        The JSON record (strategy, seed, time, request, coverage, ...).
    path : Path
    reused : bool
        True when the same request had already made this batch.
    """

    number: int
    ids: list[str]
    record: dict[str, Any]
    path: Path
    reused: bool = False
    max_similarity: list[float | None] = field(default_factory=list)


def _checksum(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def load_batches(ws: Workspace, *, known_ids: set[str] | None = None) -> list[Batch]:
    """Every recorded batch, in number order, each checked (format, checksum, numbering,
    ids known to the workspace). Hand edits are an :class:`EnrichError`."""
    folder = batches_dir(ws)
    if not folder.is_dir():
        return []
    out: list[Batch] = []
    for p in sorted(folder.glob("batch-*.json")):
        m = _NAME.match(p.name)
        if m is None:
            raise EnrichError(f"{p}: unexpected file in {folder}; expected batch-NNNN.json")
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EnrichError(f"{p}: unreadable batch record ({exc})") from None
        if not isinstance(rec, dict) or rec.get("format") != FORMAT:
            raise EnrichError(f"{p}: not an enrich batch record")
        if rec.get("checksum") != _checksum(rec):
            raise EnrichError(
                f"{p}: was edited by hand (its checksum does not match its content); restore "
                "it from a backup or move the batches folder away to start the history again"
            )
        if rec.get("batch") != int(m.group(1)):
            raise EnrichError(f"{p}: records batch {rec.get('batch')}, its name says {m.group(1)}")
        ids = [str(i) for i in rec.get("ids", [])]
        if known_ids is not None:
            unknown = [i for i in ids if i not in known_ids]
            if unknown:
                raise EnrichError(
                    f"{p}: {len(unknown)} id(s) are no longer in the workspace "
                    f"({first_few(unknown)})"
                )
        out.append(
            Batch(int(m.group(1)), ids, rec, p, max_similarity=rec.get("max_similarity") or [])
        )
    numbers = [b.number for b in out]
    if numbers != list(range(1, len(out) + 1)):
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        raise EnrichError(f"{folder}: batch(es) {first_few(missing)} are missing; history broken")
    return out


def _request_key(labeled: list[str], options: dict[str, Any], closed: list[int]) -> str:
    h = hashlib.sha256()
    h.update("\0".join(sorted(labeled)).encode())
    h.update(json.dumps(options, sort_keys=True).encode())
    h.update(json.dumps(sorted(closed)).encode())
    return "sha256:" + h.hexdigest()[:24]


def next_batch(
    ws: Workspace,
    *,
    labeled: list[str] | None = None,
    budget: int,
    strategy: str = "enrich",
    seed: int = 0,
    max_per_patient: int | None = None,
    max_per_clip: int | None = None,
    until_similarity: float | None = None,
    close: list[int] | None = None,
    now: str | None = None,
    ranker: Ranker | None = None,
    embeddings: Any = None,
) -> Batch:
    """Pick, record and return the next batch.

    Parameters
    ----------
    ws : Workspace
        With embeddings (``enrich embed``); images added later are ranked too.
    labeled : list of str, optional
        Ids labeled so far (resolved by the caller). Images with a ``labeled_at`` in the
        manifest (``enrich labels import``) count as labeled too.
    budget : int
        Images in the batch, ``1 <= budget <=`` images neither labeled nor handed out.
    strategy : str
        A name of :data:`enrich.select.SELECTORS`.
    seed : int
        Seeds the strategy (and the first image when nothing is labeled yet).
    max_per_patient, max_per_clip : int, optional
        At most this many images of one patient (clip) in the batch: the strategy's order is
        followed and an image over a cap is passed over.
    until_similarity : float, optional
        Stop the batch early at the first pick whose max similarity to everything labeled
        or handed out is above this (every image left then has such a neighbour).
    close : list of int, optional
        Earlier batches to close now: their unlabeled images can be handed out again.
    ranker : callable, optional
        ``ranker(X, initial=..., budget=..., seed=...) -> RankResult`` in place of the
        in-process ENRICH selector, e.g. :func:`enrich.distributed.rank.rank` bound to a Dask
        client. It must give the in-process order: it is not recorded, so the batch record
        (and a repeated request) is the same whichever engine ranked.
    embeddings : StoreInput, optional
        The workspace's Zarr store opened for the `ranker`'s workers
        (:func:`enrich.distributed._rows.open_store_input`): ids, lazy rows and the stored
        fingerprint, in place of loading ``ws.embeddings()``; needs a `ranker`.

    Returns
    -------
    Batch
        ``reused`` is True when the same request had made this batch already.
    """
    import pandas as pd

    from enrich.select import SELECTORS

    if strategy not in SELECTORS:
        raise EnrichError(f"strategy {strategy!r}: expected one of {', '.join(sorted(SELECTORS))}")
    for name, cap in (("max_per_patient", max_per_patient), ("max_per_clip", max_per_clip)):
        if cap is not None and cap < 1:
            raise EnrichError(f"{name}={cap}: expected a whole number >= 1")
    if until_similarity is not None and not -1.0 <= until_similarity <= 1.0:
        raise EnrichError(f"until_similarity={until_similarity}: expected a cosine in [-1, 1]")
    if until_similarity is not None and strategy != "enrich":
        raise EnrichError("until_similarity needs --strategy enrich (its picks carry similarity)")
    if ranker is not None and strategy != "enrich":
        raise EnrichError(f"--engine dask runs --strategy enrich, not {strategy!r}")
    if embeddings is not None and ranker is None:
        raise EnrichError("embeddings opened for Dask workers need a ranker that runs there")
    manifest = ws.manifest()
    emb = ws.embeddings() if embeddings is None else embeddings
    known = set(emb.ids.tolist())
    labeled_set = set(labeled or []) | set(labeled_in_manifest(manifest))
    unknown = sorted(labeled_set - known)
    if unknown:
        raise EnrichError(
            f"{len(unknown)} labeled id(s) are not in {ws.path}: {first_few(unknown)}"
        )
    history = load_batches(ws, known_ids=known)
    close = sorted(set(close or []))
    bad = [c for c in close if not 1 <= c <= len(history)]
    if bad:
        raise EnrichError(f"--close {first_few(bad)}: no such batch (there are {len(history)})")
    options = {
        "budget": budget,
        "strategy": strategy,
        "seed": seed,
        "max_per_patient": max_per_patient,
        "max_per_clip": max_per_clip,
        "until_similarity": until_similarity,
    }
    key = _request_key(sorted(labeled_set), options, close)
    for b in reversed(history):
        if b.record.get("request") == key:
            return Batch(
                b.number, b.ids, b.record, b.path, reused=True, max_similarity=b.max_similarity
            )

    closed_before = {c for b in history for c in b.record.get("closed", [])} | set(close)
    open_batches = [
        b for b in history if b.number not in closed_before and not set(b.ids) <= labeled_set
    ]
    handed_out = {i for b in open_batches for i in b.ids} - labeled_set
    chosen = [i for i in emb.ids.tolist() if i in labeled_set or i in handed_out]
    available = len(emb.ids) - len(chosen)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise EnrichError(f"--budget {budget}: expected a whole number >= 1")
    if budget > available:
        raise EnrichError(
            f"--budget {budget} is more than the {available} image(s) left: {len(emb.ids)} in "
            f"the workspace, {len(labeled_set)} labeled, {len(handed_out)} handed out in open "
            f"batch(es) {first_few([b.number for b in open_batches]) or '-'}"
        )
    meta = manifest.set_index("id")
    patients = meta["patient_id"] if "patient_id" in meta.columns else None
    clips = meta["clip_id"] if "clip_id" in meta.columns else None
    ids, sims = _pick(
        emb,
        chosen,
        budget,
        strategy,
        seed,
        patients,
        clips,
        max_per_patient,
        max_per_clip,
        until_similarity,
        available,
        ranker,
    )
    if not ids:
        raise EnrichError(
            f"no image left below --until-similarity {until_similarity}: every remaining image "
            "has a labeled or handed-out neighbour above it; labeling more adds little"
        )
    cover = _coverage(ids, meta, labeled_set | handed_out)
    from datetime import datetime, timezone

    from enrich import __version__
    from enrich.embeddings import fingerprint

    number = len(history) + 1
    record: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "batch": number,
        "strategy": strategy,
        "seed": seed,
        "created_at": now or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "enrich_version": __version__,
        "request": key,
        "options": options,
        "n_images": len(emb.ids),
        "n_labeled": len(labeled_set),
        "n_handed_out_open": len(handed_out),
        "open_batches": [b.number for b in open_batches],
        "closed": close,
        "embeddings_fingerprint": fingerprint(emb.vectors, emb.ids)
        if embeddings is None
        else embeddings.fingerprint,
        "stopped_at_similarity": until_similarity if len(ids) < budget else None,
        "coverage": cover,
        "ids": ids,
        "max_similarity": sims,
    }
    record["checksum"] = _checksum(record)
    path = batches_dir(ws) / f"batch-{number:04d}.json"
    if path.exists():  # a concurrent run got there first; never overwrite history
        raise EnrichError(f"{path}: already exists; another `enrich next` ran at the same time")
    write_json(path, record)
    _ = pd  # pandas is needed by the manifest above
    return Batch(number, ids, record, path, max_similarity=sims)


def _pick(
    emb: Any,
    chosen: list[str],
    budget: int,
    strategy: str,
    seed: int,
    patients: pd.Series | None,
    clips: pd.Series | None,
    max_per_patient: int | None,
    max_per_clip: int | None,
    until: float | None,
    available: int,
    ranker: Ranker | None = None,
) -> tuple[list[str], list[float | None]]:
    """The strategy's next picks, the caps applied along its order."""
    from enrich.select import SELECTORS

    initial: Any = emb.index_of(chosen) if chosen else None
    n_first = 0 if chosen else 1  # nothing labeled: the seeded random first image is picked
    capped = max_per_patient is not None or max_per_clip is not None
    ask = budget if not capped else min(available, 4 * budget)
    while True:
        if ranker is None:
            sel = SELECTORS[strategy](budget=max(ask - n_first, 0), seed=seed)
            sel.fit(emb.vectors, initial=initial)
            res = sel.result_
        else:
            res = ranker(emb.vectors, initial=initial, budget=max(ask - n_first, 0), seed=seed)
        order = res.order[res.n_initial - n_first :]
        sims = np.asarray(res.max_similarity, dtype=float)[res.n_initial - n_first :]
        ids: list[str] = []
        out_sims: list[float | None] = []
        per_patient: dict[str, int] = {}
        per_clip: dict[str, int] = {}
        stopped = False
        for k, s in zip(order.tolist(), sims.tolist(), strict=True):
            i = str(emb.ids[k])
            if until is not None and s == s and s > until:
                stopped = True
                break
            p = _group(patients, i)
            c = _group(clips, i)
            if (
                max_per_patient is not None
                and p is not None
                and per_patient.get(p, 0) >= max_per_patient
            ):
                continue
            if max_per_clip is not None and c is not None and per_clip.get(c, 0) >= max_per_clip:
                continue
            if p is not None:
                per_patient[p] = per_patient.get(p, 0) + 1
            if c is not None:
                per_clip[c] = per_clip.get(c, 0) + 1
            ids.append(i)
            out_sims.append(None if s != s else round(float(s), 7))
            if len(ids) == budget:
                break
        if len(ids) == budget or stopped or ask >= available:
            if len(ids) < budget and capped and not stopped:
                raise EnrichError(
                    f"--budget {budget}: only {len(ids)} image(s) fit the caps "
                    f"(--max-per-patient {max_per_patient}, --max-per-clip {max_per_clip})"
                )
            return ids, out_sims
        ask = min(available, 4 * ask)


def _group(col: pd.Series | None, i: str) -> str | None:
    if col is None:
        return None
    import pandas as pd

    v = col.get(i)
    return None if v is None or pd.isna(v) or str(v) == "" else str(v)


def _coverage(ids: list[str], meta: pd.DataFrame, before: set[str]) -> dict[str, Any]:
    """Patients and clips the batch covers, and how many are new to the labeled set."""
    out: dict[str, Any] = {"n_images": len(ids)}
    for col, name in (("patient_id", "patients"), ("clip_id", "clips")):
        if col not in meta.columns:
            continue
        vals = meta[col].reindex(ids).dropna().astype(str)
        if not len(vals):
            continue
        seen = set(meta[col].reindex(sorted(before)).dropna().astype(str)) if before else set()
        out[name] = int(vals.nunique())
        out[f"new_{name}"] = len(set(vals) - seen)
        out[f"total_{name}"] = int(meta[col].dropna().nunique())
    return out

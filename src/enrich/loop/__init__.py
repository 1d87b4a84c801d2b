"""The labeling loop: the next batch from what is labeled (:mod:`~enrich.loop.batches`),
exports that keep the order in Label Studio, CVAT and MONAI Label
(:mod:`~enrich.loop.export`), and labels read back (:mod:`~enrich.loop.labels`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from enrich.errors import EnrichError, first_few
from enrich.loop.batches import (
    Batch,
    batches_dir,
    exported_names,
    labeled_in_manifest,
    load_batches,
    next_batch,
    workspace_uid,
)
from enrich.loop.labels import (
    IdMatcher,
    ImportSummary,
    LabelTable,
    describe_problems,
    import_labels,
    match_labels,
    read_labels,
)

if TYPE_CHECKING:
    import pandas as pd

    from enrich.workspace import Workspace

__all__ = [
    "Batch",
    "IdMatcher",
    "ImportSummary",
    "LabelTable",
    "batch_table",
    "batches_dir",
    "import_labels",
    "labeled_in_manifest",
    "load_batches",
    "match_labels",
    "next_batch",
    "read_labels",
    "resolve_labeled",
    "workspace_uid",
]


def resolve_labeled(ws: Workspace, path: str | os.PathLike[str]) -> list[str]:
    """The workspace ids a labels file names. Unknown ids, ambiguous names and conflicting
    labels are one :class:`EnrichError` (so no batch is made from a wrong file)."""
    labels = read_labels(path)
    matched, problems = match_labels(
        labels,
        ws.manifest(),
        workspace_uid=workspace_uid(ws, create=False),
        exported=exported_names(ws),
    )
    if len(problems):
        first = problems.iloc[0]
        raise EnrichError(
            f"{path}: {describe_problems(problems)} (first: {first['source']}: {first['key']}: "
            f"{first['detail']}; all: {first_few(problems['key'].astype(str).tolist())}); "
            "fix the file, no batch recorded"
        )
    if labels.format != "csv" and not len(matched):
        raise EnrichError(f"{path}: holds no annotated task or image; nothing is labeled yet")
    return matched["id"].astype(str).tolist()


def batch_table(ws: Workspace, batch: Batch) -> pd.DataFrame:
    """``rank, id, batch, max_similarity_at_pick, path, frame, patient_id, clip_id`` of a
    batch (rank 0 is labeled first), from the workspace manifest."""
    import pandas as pd

    manifest = ws.manifest().set_index("id")
    table = pd.DataFrame(
        {
            "rank": range(len(batch.ids)),
            "id": batch.ids,
            "batch": batch.number,
            "max_similarity_at_pick": pd.array(
                batch.max_similarity or [None] * len(batch.ids), dtype="Float64"
            ),
        }
    )
    cols = [c for c in ("source_path", "frame", "patient_id", "clip_id") if c in manifest.columns]
    extra = manifest[cols].reindex(table["id"]).reset_index(drop=True)
    return pd.concat([table, extra.rename(columns={"source_path": "path"})], axis=1)

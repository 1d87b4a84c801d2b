"""ENRICH inside MONAI Label: an active-learning strategy and a scoring method.

``enrich export ORDER --format monailabel --out DIR`` writes ``DIR/datastore/`` (the images,
named ``<rank>_<name>`` so MONAI Label's ids sort in the labeling order) and
``DIR/datastore/enrich.json`` (the order, MONAI id -> enrich ids, the workspace). In a MONAI
Label app::

    from enrich.integrations.monailabel import EnrichScoring, EnrichStrategy

    def init_strategies(self):
        return {"enrich": EnrichStrategy()}

    def init_scoring_methods(self):
        return {"enrich": EnrichScoring()}

:class:`EnrichStrategy` returns the unlabeled image with the lowest max cosine similarity to
the labeled images and to those served recently (the exact next ENRICH pick given what is
labeled), skipping images served within ``reset`` seconds as MONAI Label's epistemic
strategy does. With nothing labeled or served it returns the lowest ENRICH rank.
:class:`EnrichScoring` stores each image's rank as ``enrich_rank`` in the datastore's image
info. Needs ``pip install 'enrich-imaging[monailabel]'``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from enrich.errors import EnrichError, MissingExtraError

try:
    from monailabel.interfaces.datastore import Datastore
    from monailabel.interfaces.tasks.scoring import ScoringMethod
    from monailabel.interfaces.tasks.strategy import Strategy
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("monailabel", "monailabel") from exc

__all__ = ["EnrichScoring", "EnrichStrategy", "load_order_record"]

logger = logging.getLogger(__name__)
SECS_IN_DAY = 24 * 60 * 60


def _datastore_path(datastore: Datastore) -> Path:
    path = getattr(datastore, "_datastore_path", None)
    if path is None:
        raise EnrichError(
            f"{type(datastore).__name__}: cannot tell where its enrich.json is; pass "
            "order_file= to EnrichStrategy/EnrichScoring"
        )
    return Path(path)


def load_order_record(path: str | Path) -> dict[str, Any]:
    """Read ``enrich.json`` (written by ``enrich export --format monailabel``)."""
    p = Path(path)
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EnrichError(f"{p}: cannot read the enrich order ({exc})") from None
    if not isinstance(rec, dict) or rec.get("format") != "enrich-monailabel":
        raise EnrichError(f"{p}: not an enrich MONAI Label order (run `enrich export`)")
    return rec


class _OrderMixin:
    order_file: str | None

    def _record(self, datastore: Datastore) -> dict[str, Any]:
        path = (
            Path(self.order_file) if self.order_file else _datastore_path(datastore) / "enrich.json"
        )
        return load_order_record(path)


class EnrichStrategy(_OrderMixin, Strategy):
    """Next image: least similar to everything labeled or recently served.

    Parameters
    ----------
    order_file : str, optional
        ``enrich.json``; default: the one in the datastore folder.
    reset : int
        Seconds after which a served image that is still unlabeled counts as not served.
    """

    def __init__(self, order_file: str | None = None, reset: int = SECS_IN_DAY) -> None:
        super().__init__("ENRICH: least redundant unlabeled image first")
        self.order_file = order_file
        self.reset = reset
        self._vectors: dict[str, np.ndarray] | None = None

    def _embeddings(self, rec: dict[str, Any]) -> dict[str, np.ndarray]:
        if self._vectors is None:
            from enrich.similarity import normalize_rows
            from enrich.workspace import Workspace

            if not rec.get("workspace"):
                raise EnrichError("enrich.json names no workspace; export from a workspace")
            emb = Workspace.open(rec["workspace"]).embeddings()
            monai_ids = list(rec["order"])
            first = [rec["ids"][m][0] for m in monai_ids]  # a volume: its best-ranked frame
            X = normalize_rows(emb.vectors[emb.index_of(first)])
            self._vectors = dict(zip(monai_ids, X, strict=True))
        return self._vectors

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        label_tag = request.get("label_tag")
        labels = request.get("labels")
        unlabeled = datastore.get_unlabeled_images(label_tag, labels)
        if not unlabeled:
            return None
        rec = self._record(datastore)
        rank = {m: r for r, m in enumerate(rec["order"])}
        strategy = request.get("strategy", "enrich")
        now = int(time.time())
        served = {
            i
            for i in unlabeled
            if now - datastore.get_image_info(i).get("strategy", {}).get(strategy, {}).get("ts", 0)
            < self.reset
        }
        ranked = [i for i in unlabeled if i in rank]
        candidates = [i for i in ranked if i not in served] or ranked
        if not candidates:
            logger.info("ENRICH: no unlabeled image of the datastore is in enrich.json")
            return None
        chosen = [i for i in datastore.get_labeled_images(label_tag, labels) if i in rank] + [
            i for i in served if i in rank
        ]
        candidates.sort(key=rank.__getitem__)
        if not chosen:
            image, score = candidates[0], float("nan")
        else:
            vec = self._embeddings(rec)
            C = np.stack([vec[i] for i in candidates])  # (n_candidates, d)
            S = np.stack([vec[i] for i in chosen])  # (n_chosen, d)
            best = (C @ S.T).max(axis=1)
            k = int(np.argmin(best))  # ties -> the lower ENRICH rank (candidates are sorted)
            image, score = candidates[k], float(best[k])
        logger.info(f"ENRICH: selected {image} (rank {rank[image]}, max similarity {score:.4f})")
        return {"id": image, "enrich_rank": rank[image], "enrich_max_similarity": score}


class EnrichScoring(_OrderMixin, ScoringMethod):
    """Store each image's ENRICH rank as ``enrich_rank`` in the datastore's image info."""

    def __init__(self, order_file: str | None = None) -> None:
        super().__init__("ENRICH rank of each image (0 is labeled first)")
        self.order_file = order_file

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        rec = self._record(datastore)
        known = set(datastore.list_images())
        scored = 0
        for r, m in enumerate(rec["order"]):
            if m in known:
                datastore.update_image_info(m, {"enrich_rank": r, "enrich_ids": rec["ids"][m]})
                scored += 1
        return {"scored": scored, "not_in_order": len(known) - scored}

"""The MONAI Label strategy, run on the real monailabel LocalDatastore (extra `monailabel`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "monailabel.datastore.local",
    reason="monailabel is not installed (pip install 'enrich-imaging[monailabel]')",
)

from monailabel.datastore.local import LocalDatastore

from enrich.cli import main
from enrich.integrations.monailabel import EnrichScoring, EnrichStrategy
from enrich.loop import next_batch
from enrich.similarity import normalize_rows
from test_loop import make_ws


def test_strategy_serves_the_enrich_order_from_a_local_datastore(tmp_path: Path) -> None:
    ws = make_ws(tmp_path)
    batch = next_batch(ws, budget=8)
    assert (
        main(
            [
                "export",
                "latest",
                "-w",
                str(ws.path),
                "-f",
                "monailabel",
                "--copy",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    store = tmp_path / "m" / "datastore"
    rec = json.loads((store / "enrich.json").read_text())
    ds = LocalDatastore(str(store), extensions=("*.png",))
    assert sorted(ds.list_images()) == rec["order"]  # MONAI ids sort in the labeling order

    assert EnrichScoring()({}, ds) == {"scored": 8, "not_in_order": 0}
    assert [ds.get_image_info(m)["enrich_rank"] for m in rec["order"]] == list(range(8))

    strategy = EnrichStrategy()
    request = {"strategy": "enrich"}
    first = strategy(request, ds)
    assert first is not None and first["id"] == rec["order"][0]

    # what MONAI Label's /activelearning endpoint records for a served image
    ds.update_image_info(first["id"], {"strategy": {"enrich": {"ts": int(time.time())}}})
    # label another image (a real label file in the datastore)
    label_file = tmp_path / "label.png"
    label_file.write_bytes((store / ds.get_image_info(rec["order"][5])["name"]).read_bytes())
    ds.save_label(rec["order"][5], str(label_file), "final", {})
    assert rec["order"][5] in ds.get_labeled_images()

    second = strategy(request, ds)
    assert second is not None
    # slow reference: the unlabeled, unserved image least similar to served + labeled
    emb = ws.embeddings()
    X = normalize_rows(emb.vectors)
    vec = {m: X[emb.index_of([rec["ids"][m][0]])[0]] for m in rec["order"]}
    chosen = [rec["order"][0], rec["order"][5]]
    rest = [m for m in rec["order"] if m not in chosen]
    best = [max(float(vec[m] @ vec[c]) for c in chosen) for m in rest]
    assert second["id"] == rest[int(np.argmin(best))]
    assert second["enrich_max_similarity"] == pytest.approx(min(best), abs=1e-5)
    assert batch.ids[rec["order"].index(second["id"])] == rec["ids"][second["id"]][0]

    # everything served recently: the least-redundant unlabeled one is still returned
    for m in rest:
        ds.update_image_info(m, {"strategy": {"enrich": {"ts": int(time.time())}}})
    assert strategy(request, ds) is not None

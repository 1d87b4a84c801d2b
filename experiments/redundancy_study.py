"""Study 1: embed each dataset, then ``enrich redundancy`` over all of them (the paper's Fig. 1).

For each embedder of the study (``betavae``, the paper's; ``pixels``, a check), writes
``experiments/work/runs/redundancy/<embedder>/`` (the CLI's ``redundancy.csv``,
``summary.json``, ``cdf.png``) and exports to ``docs/results/redundancy/``:
``summary_<embedder>.json`` and ``max_similarity.csv.gz`` (embedder, dataset, max_similarity;
enough to redraw the CDFs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from run import RESULTS, ROOT, WORK, embed

__all__ = ["run_redundancy"]


def run_redundancy(study: dict[str, Any]) -> None:
    """Embed every dataset with every embedder (reusing workspaces), then measure redundancy."""
    import pandas as pd

    dst = RESULTS / "redundancy"
    dst.mkdir(parents=True, exist_ok=True)
    tables = []
    for embedder in study.get("embedders", ["betavae"]):
        walls: dict[str, float] = {}
        spaces = {}
        for ds in study["datasets"]:
            ws = f"{ds['workspace']}_{embedder}"
            spaces[ds["name"]] = ws
            t0 = time.perf_counter()
            embed(
                {**study.get("embed", {}), **ds, "workspace": ws, "embedder": embedder}, quiet=True
            )
            walls[ds["name"]] = round(time.perf_counter() - t0, 1)
        out = WORK / "runs" / "redundancy" / embedder
        cmd = [sys.executable, "-m", "enrich", "redundancy", "--out", str(out)]
        for name, ws in spaces.items():
            cmd += ["--workspace", str(WORK / ws), "--name", name]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        walls["redundancy"] = round(time.perf_counter() - t0, 1)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        for name, s in summary["datasets"].items():
            s["input"] = f"experiments/work/{spaces[name]}"
            emb_meta = WORK / spaces[name] / "embeddings.json"
            if emb_meta.exists():
                s["embeddings"] = json.loads(emb_meta.read_text(encoding="utf-8"))
        summary["wall_s_this_invocation"] = walls
        (dst / f"summary_{embedder}.json").write_text(
            json.dumps(summary, indent=2) + "\n", encoding="utf-8"
        )
        table = pd.read_csv(out / "redundancy.csv", usecols=["dataset", "max_similarity"])
        table.insert(0, "embedder", embedder)
        tables.append(table)
    pd.concat(tables, ignore_index=True).to_csv(
        dst / "max_similarity.csv.gz", index=False, float_format="%.6f"
    )
    print(f"exported {WORK / 'runs' / 'redundancy'} -> {dst}", file=sys.stderr)

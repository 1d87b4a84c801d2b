"""Study 1: embed each dataset, then ``enrich redundancy`` over all of them (the paper's Fig. 1).

Writes ``experiments/work/runs/redundancy/`` (the CLI's ``redundancy.csv``, ``summary.json``,
``cdf.png``) and exports to ``docs/results/redundancy/``: ``summary.json`` and
``max_similarity.csv.gz`` (dataset, max_similarity; enough to redraw the CDF).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from typing import Any

from run import RESULTS, ROOT, WORK, embed

__all__ = ["run_redundancy"]


def run_redundancy(study: dict[str, Any]) -> None:
    """Embed every dataset of the study (reusing workspaces), then measure redundancy."""
    import pandas as pd

    walls: dict[str, float] = {}
    for ds in study["datasets"]:
        t0 = time.perf_counter()
        embed({**study.get("embed", {}), **ds}, quiet=True)
        walls[ds["name"]] = round(time.perf_counter() - t0, 1)
    out = WORK / "runs" / "redundancy"
    cmd = [sys.executable, "-m", "enrich", "redundancy", "--out", str(out)]
    for ds in study["datasets"]:
        cmd += ["--workspace", str(WORK / ds["workspace"]), "--name", ds["name"]]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    walls["redundancy"] = round(time.perf_counter() - t0, 1)
    dst = RESULTS / "redundancy"
    dst.mkdir(parents=True, exist_ok=True)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for name, s in summary["datasets"].items():
        ws = WORK / next(d["workspace"] for d in study["datasets"] if d["name"] == name)
        s["input"] = f"experiments/work/{ws.name}"
        emb_meta = ws / "embeddings.json"
        if emb_meta.exists():
            s["embeddings"] = json.loads(emb_meta.read_text(encoding="utf-8"))
    summary["wall_s_this_invocation"] = walls
    (dst / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    table = pd.read_csv(out / "redundancy.csv", usecols=["dataset", "max_similarity"])
    table.to_csv(dst / "max_similarity.csv.gz", index=False, float_format="%.6f")
    shutil.copyfile(out / "cdf.png", dst / "cdf_cli.png")
    print(f"exported {out} -> {dst}", file=sys.stderr)

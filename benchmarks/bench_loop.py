"""Timings of the labeling loop on a synthetic workspace: `enrich next` (labels file read,
matched, batch picked and recorded), a Label Studio export and `enrich labels import`.

    PYTHONPATH=src python benchmarks/bench_loop.py [--n 100000] [--labeled 5000] [--budget 500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _data import clustered


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--labeled", type=int, default=5_000)
    ap.add_argument("--budget", type=int, default=500)
    args = ap.parse_args()

    from enrich.cli import main as cli
    from enrich.embeddings import Embeddings
    from enrich.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    ws = Workspace.create(tmp / "ws")
    ids = np.array(
        [f"patient{i % 2000:04d}/clip{i % 9000:04d}/frame{i:07d}.png" for i in range(args.n)]
    )
    ws.write_manifest(
        pd.DataFrame(
            {
                "id": ids,
                "source_path": [str(tmp / "data" / i) for i in ids],
                "patient_id": [i.split("/")[0] for i in ids],
            }
        )
    )
    ws.write_embeddings(Embeddings(ids, clustered(args.n, 32, seed=0)))
    rng = np.random.default_rng(0)
    done = rng.choice(args.n, args.labeled, replace=False)
    labels = tmp / "labels.csv"
    pd.DataFrame({"path": [str(tmp / "data" / i) for i in ids[done]], "label": "x"}).to_csv(
        labels, index=False
    )
    rows = []

    def timed(name: str, argv: list[str]) -> None:
        t0 = time.perf_counter()
        code = cli(argv)
        rows.append({"step": name, "seconds": round(time.perf_counter() - t0, 2), "exit": code})

    timed(
        "next (paths labels file)",
        [
            "next",
            "-w",
            str(ws.path),
            "--labeled",
            str(labels),
            "--budget",
            str(args.budget),
            "--out",
            str(tmp / "b"),
        ],
    )
    timed(
        "next again (idempotent)",
        [
            "next",
            "-w",
            str(ws.path),
            "--labeled",
            str(labels),
            "--budget",
            str(args.budget),
            "--out",
            str(tmp / "b"),
        ],
    )
    root = tmp / "data"
    for path in pd.read_csv(tmp / "b" / "batch.csv")["path"]:  # the batch's files must exist
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"png")
    timed(
        "export labelstudio",
        [
            "export",
            str(tmp / "b" / "batch.csv"),
            "-f",
            "labelstudio",
            "--root",
            str(root),
            "--out",
            str(tmp / "ls"),
        ],
    )
    tasks = json.loads((tmp / "ls" / "tasks.json").read_text())
    export = [
        {
            "id": k,
            "data": {"image": t["data"]["image"]},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": ["a"]}}]}],
        }
        for k, t in enumerate(tasks)
    ]
    (tmp / "export.json").write_text(json.dumps(export))
    timed(
        "labels import (URLs only)",
        ["labels", "import", str(tmp / "export.json"), "-w", str(ws.path)],
    )
    print(f"N={args.n:,} labeled={args.labeled:,} budget={args.budget}")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()

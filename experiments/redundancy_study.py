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


#: Similarity thresholds of the clip summary, and the grid of its binned CDF.
CLIP_THRESHOLDS = (0.8, 0.9, 0.95, 0.99)
CDF_GRID = tuple(round(-1.0 + 0.01 * k, 2) for k in range(201))


def nearest_by_group(X: Any, clip: Any, patient: Any, *, block: int = 1024) -> dict[str, Any]:
    """Each row's highest cosine similarity within its clip, to other clips of its patient,
    and to other patients (exact, blocked GEMM; ``-inf`` where a group has no other row).

    Returns a dict of float32 arrays of shape (n,): ``same_clip``, ``same_patient_other_clip``,
    ``other_patient``.
    """
    import numpy as np

    X = np.asarray(X, dtype=np.float32)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    clip = np.asarray(clip)
    patient = np.asarray(patient)
    n = len(X)
    out = {k: np.full(n, -np.inf, np.float32) for k in
           ("same_clip", "same_patient_other_clip", "other_patient")}  # fmt: skip
    for i0 in range(0, n, block):
        i1 = min(i0 + block, n)
        s = X[i0:i1] @ X.T  # (b, n)
        s[np.arange(i1 - i0), np.arange(i0, i1)] = -np.inf  # not itself
        same_c = clip[i0:i1, None] == clip[None, :]
        same_p = patient[i0:i1, None] == patient[None, :]
        out["same_clip"][i0:i1] = np.where(same_c, s, -np.inf).max(axis=1)
        out["same_patient_other_clip"][i0:i1] = np.where(same_p & ~same_c, s, -np.inf).max(axis=1)
        out["other_patient"][i0:i1] = np.where(~same_p, s, -np.inf).max(axis=1)
    return out


def clip_summary(near: dict[str, Any]) -> dict[str, Any]:
    """Aggregates only: fractions above thresholds, quantiles, where the nearest neighbour is,
    and binned CDFs on :data:`CDF_GRID` (no per-frame values)."""
    import numpy as np

    stack = np.stack([near[k] for k in ("same_clip", "same_patient_other_clip", "other_patient")])
    overall = stack.max(axis=0)
    where = stack.argmax(axis=0)  # ties go to the same clip, then the same patient
    summary: dict[str, Any] = {
        "n_images": len(overall),
        "nearest_neighbour_in": {
            k: float((where == i).mean())
            for i, k in enumerate(("same_clip", "same_patient_other_clip", "other_patient"))
        },
    }
    for k, v in (("any", overall), *near.items()):
        finite = v[np.isfinite(v)].astype(np.float64)
        summary[k] = {
            "n": len(finite),
            "mean": float(finite.mean()),
            "quantiles": {
                f"{q:g}": float(np.quantile(finite, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
            },
            "fraction_above": {f"{t:g}": float((finite > t).mean()) for t in CLIP_THRESHOLDS},
            "cdf": [float((finite <= g).mean()) for g in CDF_GRID],
        }
    summary["cdf_grid"] = list(CDF_GRID)
    return summary


def plot_clip_cdfs(summaries: dict[str, dict[str, Any]], title: str) -> Any:
    """One panel per embedder: CDF of the max similarity, any / same clip / other clips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(5 * len(summaries), 3.8), squeeze=False)
    names = {
        "any": "nearest of all",
        "same_clip": "nearest in the same clip",
        "same_patient_other_clip": "nearest in the patient's other clips",
        "other_patient": "nearest in other patients",
    }
    for ax, (embedder, s) in zip(axes[0], summaries.items(), strict=True):
        for key, label in names.items():
            ax.plot(s["cdf_grid"], s[key]["cdf"], label=label)
        ax.set_xlim(0, 1)
        ax.set_xlabel("max cosine similarity")
        ax.set_ylabel("fraction of frames")
        ax.set_title(f"{title} ({embedder})", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def run_clip_redundancy(study: dict[str, Any], embedders: list[str] | None = None) -> None:
    """Redundancy of frames from clips, split by where the nearest neighbour is (issue 11)."""

    from enrich.workspace import Workspace

    dst = RESULTS / "redundancy"
    dst.mkdir(parents=True, exist_ok=True)
    for ds in study.get("clip_datasets", []):
        summaries = {}
        for embedder in embedders or ds.get("embedders") or study.get("embedders", ["betavae"]):
            ws_name = f"{ds['workspace']}_{embedder}"
            t0 = time.perf_counter()
            spec = {k: v for k, v in ds.items() if k not in ("name", "key", "embedders")}
            embed({**study.get("embed", {}), **spec, "workspace": ws_name, "embedder": embedder},
                  quiet=True)  # fmt: skip
            t_embed = time.perf_counter() - t0
            ws = Workspace.open(WORK / ws_name)
            man = ws.manifest()
            emb = ws.embeddings()
            ids, X = emb.ids, emb.vectors
            if list(ids) != man["id"].tolist():
                raise SystemExit(f"{ws.path}: embeddings and manifest disagree; re-embed")
            t0 = time.perf_counter()
            near = nearest_by_group(X, man["clip_id"].to_numpy(), man["patient_id"].to_numpy())
            s = clip_summary(near)
            s["n_clips"] = int(man["clip_id"].nunique())
            s["n_patients"] = int(man["patient_id"].nunique())
            s["embedder"] = embedder
            s["input"] = f"experiments/work/{ws_name}"
            s["wall_s"] = {"embed_this_invocation": round(t_embed, 1),
                           "similarity": round(time.perf_counter() - t0, 1)}  # fmt: skip
            summaries[embedder] = s
            (dst / f"clips_{ds['key']}_{embedder}.json").write_text(
                json.dumps(s, indent=1) + "\n", encoding="utf-8"
            )
            any_ = s["nearest_neighbour_in"]
            print(
                f"{ds['key']} {embedder}: nearest neighbour in the same clip for "
                f"{any_['same_clip']:.1%}, >0.9 overall {s['any']['fraction_above']['0.9']:.1%}, "
                f"to other patients {s['other_patient']['fraction_above']['0.9']:.1%}",
                file=sys.stderr,
            )
        fig = plot_clip_cdfs(summaries, ds["name"])
        fig.savefig(RESULTS / f"fig1_{ds['key']}_clips.png", dpi=120)
    print(f"exported clip redundancy -> {dst}", file=sys.stderr)

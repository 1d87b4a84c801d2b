"""Run one study of docs/results.md, or rebuild its figures and tables from committed results.

Usage (from the repository root)::

    .venv/bin/python experiments/run.py redundancy      # Fig. 1: embed 4 datasets, max similarity
    .venv/bin/python experiments/run.py redundancy_clips  # COVID-BLUES: same-clip vs other clips
    .venv/bin/python experiments/run.py pneumonia       # Fig. 3-5 on PneumoniaMNIST
    .venv/bin/python experiments/run.py pneumonia_pixels  # embedding ablation (after pneumonia)
    .venv/bin/python experiments/run.py pneumonia_betavae2  # ENRICH, fixed β-VAE (after pneumonia)
    .venv/bin/python experiments/run.py pneumonia_seed1   # the pneumonia study again, seed 1
    .venv/bin/python experiments/run.py hc18            # segmentation (U-Net, Jaccard)
    .venv/bin/python experiments/run.py hc18_pixels     # HC18 ENRICH on pixels (after hc18)
    .venv/bin/python experiments/run.py cifar           # CIFAR-10 airplane vs truck
    .venv/bin/python experiments/run.py cifar_pixels    # CIFAR ENRICH on pixels (after cifar)
    .venv/bin/python experiments/run.py hc18_seed1      # replicates with seed 1
    .venv/bin/python experiments/run.py cifar_seed1
    .venv/bin/python experiments/run.py covid_blues_pixels  # issue 11: every strategy, 3x3 models
    .venv/bin/python experiments/run.py covid_blues_pixels_power  # enrich/enrich_dense/random, 3x10
    .venv/bin/python experiments/run.py covid_blues     # the same on the beta-VAE (and _power)
    .venv/bin/python experiments/run.py pneumonia_coldstart # 47/94/141 images, 5%, 10% (+_power)
    .venv/bin/python experiments/run.py figures         # figures + tables from docs/results/*
    .venv/bin/python experiments/run.py all             # everything above, in order

Each study is one YAML file beside this script: a ``data`` section (what to embed, into which
workspace under ``experiments/work/``) and a ``protocol`` section (an ``enrich benchmark``
config, fixed before the run). A study run embeds (reusing a matching workspace), runs or
resumes the benchmark in ``experiments/work/runs/<study>/``, then exports ``results.csv`` and
``meta.json`` (config, every seed, data fingerprint, versions) to ``docs/results/<study>/``
and rebuilds the figures. Interrupt and re-run the same command to resume.

``--workers K`` trains K models in parallel; ``--threads T`` sets torch threads per worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "STUDIES", "load_study", "main"]

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "experiments"
WORK = HERE / "work"
RESULTS = ROOT / "docs" / "results"
STUDIES = (
    "redundancy",
    "pneumonia",
    "pneumonia_pixels",
    "pneumonia_betavae2",
    "pneumonia_seed1",
    "hc18",
    "hc18_pixels",
    "hc18_betavae2",
    "hc18_seed1",
    "cifar",
    "cifar_pixels",
    "cifar_betavae2",
    "cifar_seed1",
    "covid_blues_pixels",
    "covid_blues_pixels_power",
    "covid_blues",
    "covid_blues_power",
    "pneumonia_coldstart",
    "pneumonia_coldstart_power",
)


def load_study(name: str) -> dict[str, Any]:
    """The study's YAML as a dict (``study``, ``title``, ``data``, ``protocol``, ...)."""
    import yaml

    path = HERE / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"{path}: no such study; expected one of {', '.join(STUDIES)}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("study") != name:
        raise SystemExit(f"{path}: expected a mapping with study: {name}")
    return data


def _source(spec: str) -> str:
    """A data source: a path relative to the repo root, or ``pydicom-data:FILE``."""
    if spec.startswith("pydicom-data:"):
        from pydicom.data import get_testdata_file

        found = get_testdata_file(spec.split(":", 1)[1])
        if found is None:
            raise SystemExit(f"{spec}: not found; pip install pydicom-data")
        return str(found)
    path = Path(spec)
    path = path if path.is_absolute() else ROOT / path
    if spec.startswith("../") and not path.exists():  # shared data beside the checkout
        raise SystemExit(
            f"{spec}: not found (resolved to {path.resolve()}); this study reads data kept "
            "outside the repository, beside it (see the study's YAML for where it comes from)"
        )
    return str(path)


def embed(data: dict[str, Any], *, quiet: bool = False) -> Path:
    """Embed ``data['source']`` into ``experiments/work/<workspace>`` (a no-op when done)."""
    ws = WORK / data["workspace"]
    cmd = [
        sys.executable,
        "-m",
        "enrich",
        "embed",
        _source(data["source"]),
        "--workspace",
        str(ws),
        "--embedder",
        data.get("embedder", "betavae"),
        "--seed",
        str(data.get("seed", 0)),
    ]
    for key in ("crop", "intensity"):
        if key in data:
            cmd += [f"--{key}", str(data[key])]
    if "id_pattern" in data:  # patient/clip ids from file names (enrich embed --id-pattern)
        cmd += ["--id-pattern", str(data["id_pattern"])]
    if "labels" in data:  # labels joined from a side table: {file, key, columns}
        lab = data["labels"]
        cmd += ["--labels", _source(lab["file"]), "--labels-key", lab.get("key", "clip_id")]
        if "columns" in lab:
            cmd += ["--labels-columns", ",".join(f"{k}={v}" for k, v in lab["columns"].items())]
    for flag, value in (data.get("options") or {}).items():  # other `enrich embed` options
        cmd += [f"--{flag}", str(value)]
    if quiet:
        cmd.append("--quiet")
    t0 = time.perf_counter()
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"embedded {data['workspace']} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return ws


def run_study(name: str, *, workers: int, threads: int | None) -> None:
    """Embed, run (or resume) the benchmark, export its tables, rebuild the figures."""
    from enrich.evaluate.protocol import run_benchmark

    study = load_study(name)
    ws = embed(study["data"], quiet=True)
    out = WORK / "runs" / name
    t0 = time.perf_counter()
    run = run_benchmark(ws, study["protocol"], out, workers=workers, threads=threads)
    print(
        f"{name}: {run.n_ok} ok, {run.n_failed} failed, {run.n_trained} trained now, "
        f"{time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    export(name)


def export(name: str) -> None:
    """Copy a run's ``results.csv`` and ``meta.json`` to ``docs/results/<name>/``.

    Also writes ``coverage.csv`` (Table 2: images, patients and clips per class in each subset,
    averaged over initializations) from the run's ``subsets.parquet`` and ``split.parquet``.
    """
    src = WORK / "runs" / name
    dst = RESULTS / name
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("results.csv", "meta.json"):
        if (src / f).exists():
            shutil.copyfile(src / f, dst / f)
    if (src / "subsets.parquet").exists() and (src / "split.parquet").exists():
        import pandas as pd

        from enrich.evaluate.stats import coverage

        split = pd.read_parquet(src / "split.parquet")
        train = split.loc[split["split"] == "train"]
        cov = coverage(
            pd.read_parquet(src / "subsets.parquet"), train, train_ids=train["id"].tolist()
        )
        cov.to_csv(dst / "coverage.csv", index=False, float_format="%.6g")
        div = subset_diversity(name)
        if div is not None:
            div.to_csv(dst / "diversity.csv", index=False, float_format="%.6g")
    print(f"exported {src} -> {dst}", file=sys.stderr)


#: Subsets larger than this get no diversity (n² similarities each).
MAX_DIVERSITY_IMAGES = 5000


def subset_diversity(name: str) -> Any:
    """Leinster-Cobbold diversity (q = 1, effective number of distinct images) of every
    selected subset of a run, on the embeddings the strategies saw; ``None`` without them.

    Columns ``strategy, init, size, images, diversity``. Only this aggregate is committed
    (for COVID-BLUES the embeddings themselves derive from licensed pixels and stay in
    ``experiments/work``).
    """
    import pandas as pd

    from enrich.evaluate.diversity import subset_diversity as diversity_of_subsets
    from enrich.workspace import Workspace

    study = load_study(name)
    ws_path = WORK / study["data"]["workspace"]
    subsets_path = WORK / "runs" / name / "subsets.parquet"
    if not ws_path.exists() or not subsets_path.exists():
        return None
    return diversity_of_subsets(
        pd.read_parquet(subsets_path),
        Workspace.open(ws_path).embeddings(),
        max_images=MAX_DIVERSITY_IMAGES,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("study", choices=(*STUDIES, "redundancy_clips", "figures", "all", "export"))
    parser.add_argument(
        "--embedders", nargs="*", default=None, help="for redundancy_clips: a subset of embedders"
    )
    parser.add_argument("names", nargs="*", help="for export: the studies to export")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if args.study == "export":
        for n in args.names:
            export(n)
        return 0
    if args.study == "redundancy_clips":  # issue 11: COVID-BLUES, same-clip vs other-clip
        from redundancy_study import run_clip_redundancy  # type: ignore[import-not-found]

        run_clip_redundancy(load_study("redundancy"), args.embedders)
        return 0
    todo = STUDIES if args.study == "all" else (args.study,)
    for name in todo:
        if name == "figures":
            break
        if name == "redundancy":
            from redundancy_study import run_redundancy  # type: ignore[import-not-found]

            run_redundancy(load_study("redundancy"))
            from redundancy_study import run_clip_redundancy  # type: ignore[import-not-found]

            run_clip_redundancy(load_study("redundancy"))
        else:
            run_study(name, workers=args.workers, threads=args.threads)
    from figures import build_all  # type: ignore[import-not-found]

    build_all()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())

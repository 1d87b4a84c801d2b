"""``make demo``: the whole job on real data shipped with the project, default settings only.

1. embed three real datasets, each with its own β-VAE (the paper's defaults):
   PneumoniaMNIST chest X-rays, the 120-frame apical 4-chamber echo clip from
   ``pydicom-data``, and 2,000 CIFAR-10 airplane/truck images (the non-medical contrast);
2. redundancy of the three, overlaid on one CDF (the paper's Fig. 1);
3. the ENRICH labeling order for the X-rays;
4. the quick ENRICH-vs-random proof on the X-rays, ending in the HTML report;
5. a one-screen summary.

Every step is the CLI command a user would type; each is printed before it runs, with the
time it is expected to take. When the output is not a terminal (a log file, CI), a line
saying the demo is still working is printed at least every 20 seconds.

The demo does not train its β-VAEs by default: ``data/demo_models/`` holds the models that
the same commands trained on the same images (``--model-from``), and each is used only when
its recorded data fingerprint, options and preprocessing match this run's; otherwise, or
with ``--retrain``, the step trains (checkpointed every epoch: interrupt and rerun to resume).

    python -m enrich.demo --out demo-output [--threads N] [--retrain]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "data" / "demo_models"
#: Seconds between "still working" lines when the output is not a terminal.
HEARTBEAT_EVERY = 20.0

# Seconds per step, (with the shipped β-VAE, training it), measured with `--threads 1` under
# `nice -n 10` on a 2-core machine shared with other jobs (load 10-13; README, "Two commands").
# An idle machine is several times faster; they are printed as the plan's estimates.
_EXPECTED: dict[str, tuple[float, float]] = {
    "xray": (50, 3240),
    "echo": (20, 1310),
    "cifar": (50, 1850),
    "redundancy": (15, 15),
    "rank": (15, 15),
    "benchmark": (1260, 1260),
}


def _data(*parts: str) -> Path:
    path = ROOT.joinpath("data", *parts)
    if not path.exists():
        raise SystemExit(f"demo data missing: {path} (run the demo from a clone of the project)")
    return path


def _echo_clip() -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("color3d_jpeg_baseline.dcm")
    if path is None:
        raise SystemExit(
            "pydicom-data's color3d_jpeg_baseline.dcm is missing: pip install pydicom-data"
        )
    return Path(str(path))


def _estimate(key: str, *, trains: bool) -> float:
    with_model, training = _EXPECTED[key]
    return training if trains else with_model


@contextmanager
def _heartbeat(title: str, expected: float) -> Iterator[None]:
    """Print "still working" every HEARTBEAT_EVERY seconds while a step runs (logs only)."""
    from enrich._progress import format_seconds

    if sys.stdout.isatty() or HEARTBEAT_EVERY <= 0:
        yield
        return
    stop = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            elapsed = time.perf_counter() - start
            print(
                f"   ... {title}: still working, {format_seconds(elapsed)} so far "
                f"(expected about {format_seconds(expected)})",
                flush=True,
            )

    thread = threading.Thread(target=beat, name="demo heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _step(title: str, argv: list[str], expected: float) -> None:
    from enrich._progress import format_seconds
    from enrich.cli import main as cli

    print(
        f"\n== {title} (expected about {format_seconds(expected)})\n$ enrich {shlex.join(argv)}",
        flush=True,
    )
    t = time.perf_counter()
    with _heartbeat(title, expected):
        code = cli(argv)
    if code != 0:
        raise SystemExit(f"demo step failed ({title}), exit code {code}")
    print(f"   ({format_seconds(time.perf_counter() - t)})", flush=True)


def _has_model(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def main(argv: list[str] | None = None) -> int:
    from enrich._progress import format_seconds
    from enrich._threads import free_cores, parse_threads, resolve_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    p.add_argument("--skip-benchmark", action="store_true", help="stop after ranking")
    p.add_argument(
        "--threads",
        type=parse_threads,
        default="auto",
        metavar="N",
        help="CPU threads (default auto: the cores free now)",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train the β-VAEs from scratch instead of using data/demo_models/",
    )
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    threads = resolve_threads(args.threads)
    try:
        allowed, load = len(os.sched_getaffinity(0)), os.getloadavg()[0]
        where = f"{allowed} core(s) allowed, load {load:.1f}, {free_cores()} free"
    except (AttributeError, OSError):
        where = f"{os.cpu_count()} core(s)"
    print(f"enrich demo: {threads} torch thread(s) ({where}); outputs in {out}", flush=True)

    datasets = {
        "chest X-ray (PneumoniaMNIST)": ("xray", _data("pneumoniamnist", "pneumoniamnist.npz")),
        "echo clip (A4C, 120 frames)": ("echo", _echo_clip()),
        "CIFAR-10 airplane/truck": (
            "cifar",
            _data("cifar10_airplane_truck_2k", "cifar10_airplane_truck_2k.npz"),
        ),
    }
    run_benchmark = not args.skip_benchmark and (
        importlib.util.find_spec("enrich.cli.benchmark") is not None
    )
    # The estimate assumes a present model is used; a fingerprint mismatch trains (and says so).
    trains = {
        ws: args.retrain or not (_has_model(MODELS / ws) or _has_model(out / ws / "model"))
        for ws, _ in datasets.values()
    }
    plan = {f"embed {name}": ("embed", ws) for name, (ws, _) in datasets.items()}
    plan["redundancy"] = ("redundancy", "redundancy")
    plan["rank"] = ("rank", "rank")
    if run_benchmark:
        plan["benchmark"] = ("benchmark", "benchmark")
    expected = {
        title: _estimate(key, trains=trains.get(key, False)) for title, (_, key) in plan.items()
    }
    print(
        f"plan: {len(plan)} steps, about {format_seconds(sum(expected.values()))} in all "
        "at most (measured on 2 cores busy with other jobs; 4 min at a lighter load):",
        flush=True,
    )
    for title, seconds in expected.items():
        trained = " (trains the β-VAE)" if trains.get(plan[title][1], False) else ""
        print(f"  - {title}: about {format_seconds(seconds)}{trained}", flush=True)

    for name, (ws, source) in datasets.items():
        argv = ["embed", str(source), "--workspace", str(out / ws), "--threads", str(threads)]
        if args.retrain:
            argv.append("--retrain")
        elif _has_model(MODELS / ws):
            argv += ["--model-from", str(MODELS / ws)]
        _step(f"embed {name}", argv, expected[f"embed {name}"])

    red_dir = out / "redundancy"
    red_args = ["redundancy"]
    for name, (ws, _) in datasets.items():
        red_args += ["--workspace", str(out / ws), "--name", name]
    _step(
        "redundancy, medical vs non-medical (the paper's Fig. 1)",
        [*red_args, "--out", str(red_dir)],
        expected["redundancy"],
    )

    order = out / "xray" / "runs" / "rank" / "order.csv"
    _step(
        "ENRICH labeling order for the X-rays",
        [
            "rank",
            "--workspace",
            str(out / "xray"),
            "--initial",
            "0.02",
            "--seed",
            "0",
            "--out",
            str(order),
        ],
        expected["rank"],
    )

    run_dir = out / "xray" / "runs" / "quick"
    if run_benchmark:
        _step(
            "the quick proof: ENRICH vs random, trained models, statistics, report",
            [
                "benchmark",
                "--workspace",
                str(out / "xray"),
                "--config",
                "quick",
                "--threads",
                str(threads),
                "--out",
                str(run_dir),
            ],
            expected["benchmark"],
        )

    _summary(red_dir, order, run_dir if run_benchmark else None, time.perf_counter() - t0)
    return 0


#: What the committed studies found (docs/results.md), shown at the end of the demo so that a
#: newcomer sees it first. tests/test_demo.py checks it against docs/results/ (the named
#: strategy must lead random there, pooled over the budgets, at p < 0.05).
STUDY_POINTER = {
    "study": "covid_blues_pixels_power",
    "strategy": "repdiv",
    "text": (
        "What our studies found (docs/results.md, section 7): on frames from real lung-ultrasound\n"
        "clips (COVID-BLUES, 30 models per point), the RepDiv order beat random (+0.07 AUC at\n"
        "45 frames; its models matched the full set from 1% of the frames); ENRICH, the default\n"
        "here, did not. On one-image-per-patient X-rays no order saved labels that matter.\n"
        "Which order wins on your data:\n"
        "  enrich benchmark --workspace WS --config quick --out WS/runs/which \\\n"
        "      --set 'strategies=[enrich,repdiv,facility,random]'\n"
        "and to label in RepDiv's order: enrich rank --workspace WS --strategy repdiv"
    ),
}


def _summary(red_dir: Path, order: Path, run_dir: Path | None, seconds: float) -> None:
    import pandas as pd

    line = "=" * 78
    print(f"\n{line}\nenrich demo: summary ({seconds / 60:.1f} min)\n{line}")
    summary = json.loads((red_dir / "summary.json").read_text())["datasets"]
    print("Redundancy: share of images whose most similar other image is ...")
    print(f"  {'dataset':<32} {'N':>6} {'> 0.9':>7} {'> 0.8':>7} {'< 0.4':>7} {'median':>7}")
    for name, s in summary.items():
        print(
            f"  {name:<32} {s['n_images']:>6,} {s['fraction_above']['0.9']:>7.1%} "
            f"{s['fraction_above']['0.8']:>7.1%} {s['fraction_below']['0.4']:>7.1%} "
            f"{s['quantiles']['0.5']:>7.3f}"
        )
    t = pd.read_csv(order)
    picks = t[~t["initial"]]
    print(f"\nENRICH order: {len(t):,} X-rays ranked; label from the top of {order}")
    if len(picks):
        q = picks["max_similarity_at_pick"].quantile([0.0, 0.5, 1.0]).tolist()
        print(
            f"  max similarity at pick rises from {q[0]:.3f} (first pick) through {q[1]:.3f} "
            f"(halfway) to {q[2]:.3f} (last): later images add less and less"
        )
    if run_dir is not None:
        _benchmark_summary(run_dir)
    print(f"\nOutputs:\n  CDF plot      {red_dir / 'cdf.png'}\n  order         {order}")
    if run_dir is not None:
        print(f"  report        {run_dir / 'report.html'}  (open it in a browser)")
    print(f"\n{STUDY_POINTER['text']}")
    print(line)


def _benchmark_summary(run_dir: Path) -> None:
    from enrich.evaluate import stats

    table = stats.read_results(run_dir / "results.csv")
    desc = stats.describe(table)
    by_key: dict[tuple[str, int], dict[str, Any]] = {
        (str(r["strategy"]), int(r["size"])): {str(k): v for k, v in r.items()}
        for r in desc.to_dict("records")
    }
    comp = stats.compare_to_baseline(table)
    metric = stats.choose_metric(table).upper()
    print(
        f"\nENRICH vs random on the X-rays: test {metric}, mean ± SD over the models, "
        "two-sided Mann-Whitney U"
    )
    print(f"  {'images':>7} {'share':>6}   {'ENRICH':>15}   {'random':>15}   {'p':>8}")
    for row in comp[comp["strategy"] == "enrich"].to_dict("records"):
        size = int(row["size"])
        e, r = by_key[("enrich", size)], by_key[("random", size)]
        print(
            f"  {size:>7,} {e['fraction']:>6.0%}   {e['mean']:>7.3f} ± {e['std']:<5.3f}   "
            f"{r['mean']:>7.3f} ± {r['std']:<5.3f}   {row['p']:>8.3g} {row['stars']}"
        )
    full = [r for (name, _), r in by_key.items() if name == "full"]
    if full:
        f = full[0]
        print(
            f"  all {int(f['size']):,} training images (reference): "
            f"{f['mean']:.3f} ± {f['std']:.3f}"
        )
    failed = stats.failures(table)
    if len(failed):
        print(f"  ({len(failed)} model(s) failed; see the report)")


if __name__ == "__main__":
    sys.exit(main())

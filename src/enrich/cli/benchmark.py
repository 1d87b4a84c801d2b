"""``enrich benchmark``: prove it: ENRICH vs random subsets, trained models, statistics.

Runs the paper's protocol on a workspace (manifest with labels or masks, and embeddings),
appends one row per trained model to ``OUT/results.csv``, and writes the HTML report at the
end. Rerunning the same command resumes an interrupted run.
"""

from __future__ import annotations

import argparse
from typing import Any

from enrich._threads import parse_threads

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace",
        "-w",
        required=True,
        metavar="WS",
        help="workspace folder (from `enrich embed`), with labels or masks",
    )
    parser.add_argument(
        "--config",
        "-c",
        default="quick",
        metavar="YAML",
        help="protocol config: a YAML file, or `quick` (minutes on a CPU) or "
        "`paper` (3 initializations × 10 models, the paper's sizes); "
        "default: quick",
    )
    parser.add_argument(
        "--out",
        "-o",
        default=None,
        metavar="DIR",
        help="run folder (default: WS/runs/benchmark-<config name>); "
        "an existing run of the same config is resumed",
    )
    parser.add_argument(
        "--workers",
        "-j",
        type=int,
        default=1,
        metavar="K",
        help="train K models in parallel processes (default 1)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where models train (default: a GPU when available)",
    )
    parser.add_argument(
        "--threads",
        type=parse_threads,
        default="auto",
        metavar="N",
        help="CPU threads per worker (default auto: the cores free now, from the affinity "
        "mask and the load average, shared among the workers)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 "
        "--set 'sizes=[0.1,0.2]' (repeatable; values are YAML)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="when resuming, train the models recorded as failed again",
    )
    parser.add_argument("--no-report", action="store_true", help="do not write report.html")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _config_with_overrides(spec: str, overrides: list[str]) -> Any:
    import yaml

    from enrich.errors import EnrichError
    from enrich.evaluate.config import load_config

    cfg = load_config(spec)
    if not overrides:
        return cfg
    data = cfg.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise EnrichError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise EnrichError(f"--set {item!r}: the value is not valid YAML") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise EnrichError(f"--set {item!r}: {part!r} is not a config section")
            node = node[part]
        node[parts[-1]] = value
    return load_config(data)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from enrich.evaluate.protocol import run_benchmark
    from enrich.workspace import Workspace

    ws = Workspace.open(args.workspace)
    cfg = _config_with_overrides(args.config, args.overrides)
    if args.out is None:
        name = Path(args.config).stem if args.config not in ("quick", "paper") else args.config
        out = ws.runs_dir / f"benchmark-{name}"
    else:
        out = Path(args.out)
    from enrich._threads import free_cores

    if args.workers < 1:
        from enrich.errors import EnrichError

        raise EnrichError(f"--workers {args.workers}: expected an integer >= 1")
    if args.threads == "auto":
        threads = max(1, free_cores() // args.workers)
    else:
        threads = int(args.threads)
    result = run_benchmark(
        ws.path,
        cfg,
        out,
        workers=args.workers,
        device=args.device,
        threads=threads,
        progress=not args.quiet,
        report=not args.no_report,
        retry_failed=args.retry_failed,
    )
    import sys

    status = f"{result.n_ok} models ok, {result.n_failed} failed"
    print(
        f"benchmark: {status}; {result.n_trained} trained now in {result.seconds:.0f} s",
        file=sys.stderr,
    )
    print(f"results: {out / 'results.csv'}")
    if result.report is not None:
        print(f"report: {result.report}")
    return 0

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
        default="auto",
        metavar="K",
        help="train K models in parallel processes, each with train.threads (1) torch "
        "threads; results are the same for any K (default auto: one per CPU core, at most "
        "8, for runs of 32 models or more; 1 on a GPU)",
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
        default=None,
        metavar="N",
        help="torch threads per model (default: the config's train.threads, 1). Part of the "
        "run's identity: results depend on it, never on --workers. 'auto' is the cores free "
        "now divided among the workers (faster on an idle machine, not reproducible elsewhere)",
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


def _workers(value: str) -> int | str:
    """``--workers``: an integer >= 1, or ``auto`` (see ``protocol.auto_workers``)."""
    from enrich.errors import EnrichError

    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise EnrichError(f"--workers {value}: expected an integer >= 1 or auto")
    return k


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from enrich._outputs import check_output_dir, check_outputs
    from enrich.evaluate.protocol import run_benchmark
    from enrich.workspace import Workspace

    ws = Workspace.open(args.workspace)
    cfg = _config_with_overrides(args.config, args.overrides)
    if args.out is None:
        name = Path(args.config).stem if args.config not in ("quick", "paper") else args.config
        out = ws.runs_dir / f"benchmark-{name}"
    else:
        out = check_output_dir(args.out)
    names = ("results.csv", "meta.json", "split.parquet", "subsets.parquet", "report.html")
    check_outputs({name: out / name for name in names}, flag="--out")
    workers = _workers(args.workers)
    threads: int | None = None
    if args.threads == "auto":
        from enrich._threads import free_cores

        threads = max(1, free_cores() // (workers if isinstance(workers, int) else 1))
    elif args.threads is not None:
        threads = int(args.threads)
    import sys

    from enrich.evaluate.protocol import Terminated, sigterm_raises

    try:
        with sigterm_raises():  # timeout, SLURM: stop the workers and say how to resume
            result = run_benchmark(
                ws.path,
                cfg,
                out,
                workers=workers,
                device=args.device,
                threads=threads,
                progress=not args.quiet,
                report=not args.no_report,
                retry_failed=args.retry_failed,
            )
    except Terminated:
        from enrich.cli import _error_line

        _error_line(
            f"terminated (SIGTERM); every finished model is saved in {out / 'results.csv'}: "
            "rerun the same command to resume"
        )
        return 143  # 128 + SIGTERM, as the shell reports a process killed by it

    status = f"{result.n_ok} models ok, {result.n_failed} failed"
    print(
        f"benchmark: {status}; {result.n_trained} trained now in {result.seconds:.0f} s",
        file=sys.stderr,
    )
    print(f"results: {out / 'results.csv'}")
    if result.report is not None:
        print(f"report: {result.report}")
    if result.n_failed:
        first = _first_error(out / "results.csv")
        if result.n_ok == 0:
            from enrich.cli import _error_line

            _error_line(
                f"all {result.n_failed} models failed (first error: {first}); see "
                f"{out / 'results.csv'}"
            )
            return 1
        print(
            f"warning: {result.n_failed} of {result.n_ok + result.n_failed} models failed "
            f"(first error: {first}); rerun with --retry-failed to train them again",
            file=sys.stderr,
        )
    from enrich.errors import EnrichError
    from enrich.evaluate.verdict import write_verdict

    try:
        verdict = write_verdict(out)
    except (EnrichError, ValueError) as exc:  # the models are saved; only the summary failed
        print(f"warning: no verdict: {' '.join(str(exc).split())}", file=sys.stderr)
        verdict = None
    if verdict is not None:
        print(f"verdict: {verdict.headline} ({out / 'verdict.json'})")
    return 0


def _first_error(path: Any) -> str:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                if rec.get("status") == "failed":
                    return str(rec.get("error") or "no message")
    except OSError:
        pass
    return "unknown"

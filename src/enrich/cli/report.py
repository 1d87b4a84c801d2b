"""``enrich report runs/NAME [--out FILE]``: write the HTML report of a benchmark run.

Prints the report's path on stdout. The report is one self-contained HTML file (figures
embedded) that opens from disk with no network.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a benchmark run folder (runs/NAME)")
    parser.add_argument(
        "--out", metavar="FILE", default=None, help="where to write (default: RUN/report.html)"
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="which metric to report (default: the run's only one; auc, then jaccard)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="strategy the others are compared with (default: random)",
    )
    parser.add_argument(
        "--alpha", type=float, default=0.05, help="significance level (default: 0.05)"
    )
    parser.add_argument(
        "--rule",
        choices=("sustained", "first"),
        default="sustained",
        help="smallest full-equivalent subset: 'sustained' (default; it and every larger "
        "size match the full set) or 'first' (the first size that matches)",
    )
    parser.add_argument(
        "--no-images", action="store_true", help="leave out the image grids (no image reads)"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from enrich._outputs import check_outputs
    from enrich.errors import EnrichError
    from enrich.report.html import write_report

    if not 0.0 < args.alpha < 1.0:
        raise EnrichError(f"--alpha {args.alpha}: expected a number between 0 and 1")
    run_dir = Path(args.run_dir)
    target = Path(args.out) if args.out is not None else run_dir / "report.html"
    if target.is_dir():  # a folder (or a link to one): the report goes inside
        target = target / "report.html"
    check_outputs(
        {"the report": target},
        inputs=[
            run_dir / n for n in ("results.csv", "meta.json", "subsets.parquet", "split.parquet")
        ],
    )
    if args.baseline is not None:
        from enrich.evaluate.stats import FULL, read_results

        names = sorted(set(read_results(run_dir)["strategy"].astype(str)) - {FULL})
        if args.baseline not in names:
            raise EnrichError(
                f"--baseline {args.baseline!r}: not a strategy of this run; expected one of "
                f"{', '.join(names)}"
            )
    path = write_report(
        args.run_dir,
        out=target,
        metric=args.metric,
        baseline=args.baseline or "random",
        alpha=args.alpha,
        rule=args.rule,
        images=not args.no_images,
    )
    print(path)
    return 0

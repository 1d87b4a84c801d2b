"""``enrich labels import``: labels back from Label Studio, CVAT or a CSV into the manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Read labels back into the workspace manifest."
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = sub.add_parser(
        "import",
        help="write the labels of a Label Studio JSON export, a CVAT for images 1.1 XML export "
        "or a CSV (id or path, label) into the manifest",
    )
    imp.add_argument("file", metavar="FILE", help="the export or CSV")
    imp.add_argument("--workspace", "-w", required=True, metavar="DIR")
    imp.add_argument(
        "--format",
        choices=("csv", "labelstudio", "cvat"),
        help="default: from the suffix (.json Label Studio, .xml CVAT, else CSV)",
    )
    imp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace labels already in the manifest (default: report them as problems)",
    )
    imp.add_argument(
        "--problems",
        metavar="CSV",
        help="where to write the problems (default: WS/runs/labels/problems-<time>.csv)",
    )


def run(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from enrich.cli._common import write_csv
    from enrich.loop import import_labels
    from enrich.workspace import Workspace

    ws = Workspace.open(args.workspace)
    summary = import_labels(ws, args.file, format=args.format, overwrite=args.overwrite)
    line = f"{args.file}: {summary.line()}"
    if len(summary.problems):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = Path(args.problems or ws.runs_dir / "labels" / f"problems-{stamp}.csv")
        write_csv(summary.problems, out)
        print(f"{line} -> {out}")
        return 1
    print(line)
    return 0

"""The ``enrich`` command line.

Each subcommand lives in its own module under ``enrich.cli`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``enrich --help`` stays instant (no numpy, torch or matplotlib at start-up).

Errors a user can cause are :class:`enrich.errors.EnrichError` (or ``MissingExtraError``):
they print as one red line on stderr and exit 2 (bad input) or 1; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

# name -> (module, one-line help). Modules are imported lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "embed": ("enrich.cli.embed", "read images, preprocess them and embed them into a workspace"),
    "rank": ("enrich.cli.rank", "the ENRICH labeling order (least redundant first)"),
    "redundancy": ("enrich.cli.redundancy", "how redundant a dataset is: max similarity per image"),
    "benchmark": (
        "enrich.cli.benchmark",
        "prove it: ENRICH vs random subsets, trained models, stats",
    ),
    "report": ("enrich.cli.report", "write the HTML report of a benchmark run"),
    "next": ("enrich.cli.next", "the next batch to label, given what is labeled so far"),
    "export": ("enrich.cli.export", "an order or batch for Label Studio, CVAT or MONAI Label"),
    "labels": ("enrich.cli.labels", "read labels back: `enrich labels import FILE`"),
    "convert": ("enrich.cli.convert", "embeddings between .npz and a chunked Zarr store"),
}


def _available() -> dict[str, tuple[str, str]]:
    import importlib.util

    return {k: v for k, v in COMMANDS.items() if importlib.util.find_spec(v[0]) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enrich",
        description="Which images to label first: ENRICH ranks images so the least redundant "
        "come first, and proves how much labeling that saves (Chinn et al., JAMIA 2023).",
    )
    from enrich import __version__

    parser.add_argument("--version", action="version", version=f"enrich {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in _available().items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used by tests, in-process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # First pass: find the command without importing every module.
    known, rest = parser.parse_known_args(argv)
    if known.command is None:
        parser.print_help(sys.stderr if argv else sys.stdout)
        return 0 if not argv else 2
    module_name, help_text = COMMANDS[known.command]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"enrich {known.command}", description=help_text)
    sub.add_argument("--debug", action="store_true", default=known.debug, help="show tracebacks")
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    args.debug = args.debug or known.debug
    return _run(module, args)


def _run(module: object, args: argparse.Namespace) -> int:
    from enrich.errors import EnrichError, MissingExtraError

    try:
        return int(module.run(args) or 0)  # type: ignore[attr-defined]
    except (EnrichError, MissingExtraError) as exc:
        if args.debug:
            raise
        _error_line(str(exc))
        return 2
    except KeyboardInterrupt:
        _error_line("interrupted; outputs already written are complete, nothing is half-written")
        return 130
    except (OSError, MemoryError) as exc:
        if args.debug:
            raise
        _error_line(f"{type(exc).__name__}: {exc}")
        return 1


def _error_line(message: str) -> None:
    one_line = " ".join(message.split())
    if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        one_line = f"\x1b[31merror:\x1b[0m {one_line}"
    else:
        one_line = f"error: {one_line}"
    print(one_line, file=sys.stderr)

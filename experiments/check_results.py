"""Check that docs/results.md shows exactly the numbers of the committed results tables.

Every generated block of the doc (``<!-- table:NAME -->`` ... ``<!-- /table:NAME -->``) is
recomputed from ``docs/results/`` (``figures.tables()``) and compared with the doc's text.

Usage::

    .venv/bin/python experiments/check_results.py          # exit 1 and a diff on mismatch
    .venv/bin/python experiments/check_results.py --fix    # rewrite the blocks in the doc
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import DOC, doc_blocks, fill_doc, tables

__all__ = ["main", "mismatches"]


def mismatches(doc_text: str | None = None) -> list[str]:
    """One message (with a unified diff) per block whose text differs from the tables.

    Also reports blocks the tables produce that the doc lacks, and blocks in the doc that
    no committed table backs (other than ones marked "(not run yet)").
    """
    text = DOC.read_text(encoding="utf-8") if doc_text is None else doc_text
    have = doc_blocks(text)
    want = tables()
    out = []
    for name, body in want.items():
        if name not in have:
            out.append(f"docs/results.md has no block <!-- table:{name} --> for a committed table")
        elif have[name] != body:
            diff = "".join(
                difflib.unified_diff(
                    have[name].splitlines(keepends=True),
                    body.splitlines(keepends=True),
                    fromfile=f"doc:{name}",
                    tofile=f"tables:{name}",
                )
            )
            out.append(f"block {name} differs from the committed tables:\n{diff}")
    for name, body in have.items():
        if name not in want and body.strip() != "(not run yet)":
            out.append(f"block {name} shows numbers but no committed table backs it")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fix", action="store_true", help="rewrite the doc's blocks")
    args = parser.parse_args(argv)
    if args.fix:
        DOC.write_text(fill_doc(DOC.read_text(encoding="utf-8"), tables()), encoding="utf-8")
    bad = mismatches()
    for msg in bad:
        print(msg, file=sys.stderr)
    if not bad:
        print(f"{DOC}: every table block matches docs/results/")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run ``enrich embed`` over every DICOM test file of pydicom and pydicom-data; tally the outcome.

    python benchmarks/dicom_corpus.py [--workspace DIR] [--include-sop CODES]

Uses the ``pixels`` embedder (the reading is what is measured). Prints how many files were
examined, how many images and files were embedded, what pydicom warned about, and the
skipped files grouped by reason (numbers and names replaced by placeholders).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def corpus() -> list[Path]:
    """pydicom's bundled data folder and pydicom-data's ``data_store/data``."""
    import pydicom.data

    roots = [Path(pydicom.data.__file__).parent]
    try:
        import data_store  # the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        print("pydicom-data is not installed: only pydicom's own files", file=sys.stderr)
    return roots


def kind(reason: str) -> str:
    """A reason without its file-specific details, for counting."""
    reason = re.sub(r" \(pydicom warned: .*\)$", " (pydicom warned)", reason)
    reason = re.sub(r" \(images? #.*\)$", "", reason)
    reason = re.sub(r"\(.*?Error: .*\)", "(...)", reason)
    reason = re.sub(r"\d+", "N", reason)
    return reason[:150]


def main(argv: list[str] | None = None) -> int:
    from enrich.cli import main as enrich_main
    from enrich.io import SUFFIXES
    from enrich.io.dicom import is_dicom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=None, help="default: a temporary folder")
    parser.add_argument("--include-sop", default=None)
    args = parser.parse_args(argv)
    roots = corpus()
    files = [
        p
        for r in roots
        for p in r.rglob("*")
        if p.is_file() and not p.name.startswith(".") and "__pycache__" not in p.parts
    ]
    candidates = [p for p in files if p.suffix.lower() in (".dcm", ".dicom") or is_dicom(p)]
    ws = Path(args.workspace or tempfile.mkdtemp(prefix="dicom-corpus-")) / "ws"
    cmd = ["embed", *map(str, roots), "-w", str(ws), "--embedder", "pixels", "--quiet"]
    if args.include_sop:
        cmd += ["--include-sop", args.include_sop]
    t0 = time.perf_counter()
    rc = enrich_main(cmd)
    seconds = time.perf_counter() - t0
    if rc != 0:
        return rc
    import pandas as pd

    manifest = pd.read_parquet(ws / "manifest.parquet")
    skipped = pd.read_csv(ws / "skipped.csv", dtype=str, keep_default_na=False)
    info = json.loads((ws / "embeddings.json").read_text())
    warned = info.get("reader_warnings", {})
    print(
        f"\nfiles under the two folders: {len(files)} "
        f"({len(candidates)} DICOM by suffix or content)"
    )
    print(f"  (other files, e.g. .json/.py/.txt, are not images: {len(files) - len(candidates)};")
    print(f"   suffixes read by other readers: {', '.join(SUFFIXES)})")
    print(f"embedded: {len(manifest)} images from {manifest.source_path.nunique()} files "
          f"in {seconds:.1f} s")  # fmt: skip
    by = manifest.groupby(["modality", "sop_class"], dropna=False).source_path.nunique()
    for (mod, sop), n in by.items():
        print(f"  {n:4d} files  {mod!s:7s} {sop}")
    print(f"skipped: {skipped.source_path.nunique()} files")
    for reason, n in Counter(kind(r) for r in skipped.reason).most_common():
        print(f"  {n:4d}  {reason}")
    print(f"pydicom warnings (collected, not printed): {len(warned)} files")
    for path, msgs in warned.items():
        print(f"  {Path(path).name}: {msgs[0][:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``enrich convert``: embeddings between ``.npz``/``.npy`` and a chunked Zarr store."""

from __future__ import annotations

import argparse
from pathlib import Path

from enrich.errors import EnrichError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Convert embeddings losslessly between .npz (or .npy) and a Zarr store (a folder "
        "ending in .zarr: ids beside float32 vectors, chunked by rows, readable lazily by Dask "
        "workers). Every command reads both."
    )
    parser.add_argument("source", metavar="IN", help=".npz, .npy or .zarr store")
    parser.add_argument("target", metavar="OUT", help=".zarr store or .npz file to write")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        metavar="N",
        help="rows per Zarr chunk (default 65536)",
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from enrich.distributed.store import DEFAULT_CHUNK_ROWS, save_zarr
    from enrich.embeddings import Embeddings, fingerprint, load_embeddings, save_embeddings

    src, dst = Path(args.source), Path(args.target)
    if src.resolve() == dst.resolve():
        raise EnrichError(f"{src}: IN and OUT are the same path")
    to_zarr = dst.suffix == ".zarr"
    if not to_zarr and dst.suffix != ".npz":
        raise EnrichError(f"OUT {dst}: expected a name ending in .zarr (a store) or .npz")
    if args.chunk_rows is not None and not to_zarr:
        raise EnrichError("--chunk-rows is for a .zarr OUT")
    emb = load_embeddings(src)
    if emb.vectors.dtype != np.float32:
        # every command computes in float32; say so rather than convert silently
        print(f"note: {src} holds {emb.vectors.dtype} vectors; stored as float32")
    emb = Embeddings(emb.ids, np.asarray(emb.vectors, dtype=np.float32))
    if to_zarr:
        rows = DEFAULT_CHUNK_ROWS if args.chunk_rows is None else args.chunk_rows
        save_zarr(dst, emb, chunk_rows=rows)
    else:
        save_embeddings(dst, emb)
    back = load_embeddings(dst)
    before, after = fingerprint(emb.vectors, emb.ids), fingerprint(back.vectors, back.ids)
    if before != after:  # pragma: no cover - a broken writer
        raise EnrichError(f"{dst}: read back differs from {src} ({after} != {before})")
    print(f"wrote {dst}: {len(emb):,} x {emb.dim} float32, fingerprint {after} (same as {src})")
    return 0

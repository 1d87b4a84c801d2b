"""``enrich redundancy``: how redundant is each dataset (the paper's Fig. 1)."""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrich.cli._common import add_input_arguments, load_input, progress_bar
from enrich.distributed import add_engine_arguments, engine_from_args
from enrich.errors import EnrichError

if TYPE_CHECKING:
    from enrich.redundancy import RedundancyResult

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Each image's highest similarity to any other image, its nearest image, near-duplicate "
        "groups, and the CDF plot. Give several datasets to overlay them."
    )
    add_input_arguments(parser, multiple=True)
    parser.add_argument("--name", action="append", help="dataset name, one per input, in order")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.95,
        help="similarity at or above which images are near-duplicates (default 0.95)",
    )
    parser.add_argument(
        "--groups",
        choices=("representative", "components"),
        default="representative",
        help="near-duplicate groups: 'representative' (default; each member >= --threshold to "
        "its group's representative, the lowest image of the group) or 'components' (connected "
        "components of similarity >= --threshold, which chain)",
    )
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    approx = parser.add_argument_group(
        "approximate (faiss; for millions of images; needs enrich-imaging[faiss])"
    )
    approx.add_argument(
        "--approximate",
        choices=("ivf", "hnsw"),
        help="search each image's nearest image in a faiss index instead of comparing all "
        "pairs; values are exact for the pair found, the pair may not be the best one, and "
        "the measured recall goes into summary.json",
    )
    approx.add_argument("--nlist", type=int, help="IVF cells (default 4*sqrt(N))")
    approx.add_argument(
        "--nprobe", type=int, default=32, help="IVF cells searched per image (default 32)"
    )
    approx.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node (default 32)")
    approx.add_argument("--ef-search", type=int, default=128, help="HNSW search list (default 128)")
    approx.add_argument(
        "--recall-sample",
        type=int,
        default=1000,
        help="images whose exact maximum is computed to measure the recall (default 1000)",
    )
    approx.add_argument(
        "--seed", type=int, default=0, help="k-means and recall sample seed (default 0)"
    )
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    sources = [("embeddings", e) for e in args.embeddings or []] + [
        ("workspace", w) for w in args.workspace or []
    ]
    if not sources:
        raise EnrichError("give at least one --embeddings FILE or --workspace DIR")
    if args.name and len(args.name) != len(sources):
        raise EnrichError(f"{len(args.name)} --name for {len(sources)} inputs; give one per input")
    from enrich._lock import folder_lock
    from enrich._outputs import check_output_dir, check_outputs

    out = check_output_dir(args.out)
    check_outputs(
        {name: out / name for name in ("redundancy.csv", "summary.json", "cdf.png")},
        inputs=args.embeddings or [],
    )
    with folder_lock(out):  # one writer per folder: the three files come from one run
        return _run(args, out, sources)


def _run(args: argparse.Namespace, out: Path, sources: list[tuple[str, str]]) -> int:
    import numpy as np
    import pandas as pd

    from enrich import __version__
    from enrich._atomic import atomic_path, write_json
    from enrich.cli._common import write_csv
    from enrich.embeddings import check_vectors, fingerprint
    from enrich.redundancy import plot_cdf, redundancy

    scheduler = engine_from_args(args)
    options = None
    if args.approximate is not None:
        from enrich.approximate import ApproxOptions

        options = ApproxOptions(
            method=args.approximate,
            nlist=args.nlist,
            nprobe=args.nprobe,
            m=args.hnsw_m,
            ef_search=args.ef_search,
            recall_sample=args.recall_sample,
            seed=args.seed,
        )
        options.check()
    else:
        given = [f"--{k.replace('_', '-')}" for k in ("nlist",) if getattr(args, k) is not None]
        if given:
            raise EnrichError(f"{', '.join(given)} needs --approximate ivf")

    # Load and validate everything first: a bad second file must not leave half the outputs.
    # On Dask, a Zarr store is not loaded: its ids are read here, and the workers read and
    # validate their own rows.
    loaded = []
    for k, (kind, path) in enumerate(sources):
        store = _store_rows(kind, path) if scheduler is not None else None
        if store is not None:
            rows, ids, fp, default_name = store
            name = args.name[k] if args.name else default_name
            loaded.append((name, ids, rows, path, fp))
            continue
        emb, _, default_name = load_input(
            path if kind == "embeddings" else None, path if kind == "workspace" else None
        )
        name = args.name[k] if args.name else default_name
        X = check_vectors(emb.vectors, ids=emb.ids, name=f"embeddings {name}")
        loaded.append((name, emb.ids, X, path, fingerprint(emb.vectors, emb.ids)))
    names = [n for n, *_ in loaded]
    if len(set(names)) != len(names):
        raise EnrichError(f"dataset names repeat: {names}; give distinct --name values")

    tables, summaries, curves = [], {}, {}
    with contextlib.ExitStack() as stack:
        compute: Callable[..., RedundancyResult] = redundancy
        if scheduler is not None:  # --engine dask: the same tiles, on Dask workers
            from enrich.distributed._client import connect

            client = stack.enter_context(connect(scheduler))
            if options is None:
                from enrich.distributed.redundancy import redundancy as on_dask
            else:
                from enrich.distributed.approximate import redundancy as on_dask
            compute = functools.partial(on_dask, client=client)
        if options is not None:
            if scheduler is None:
                from enrich.approximate import redundancy as approximate

                compute = approximate
            compute = functools.partial(compute, options=options)
        results = []
        for name, ids, X, _, _ in loaded:
            if options is None:
                n_tiles = -(-len(ids) // 1024)
                total, unit = n_tiles * (n_tiles + 1) // 2, "tile"
            else:
                total, unit = len(ids), "image"
            with progress_bar(total, f"redundancy {name}", unit) as tick:
                results.append(
                    compute(
                        X, group_threshold=args.threshold, group_method=args.groups, progress=tick
                    )
                )
    for (name, ids, _, path, fp), res in zip(loaded, results, strict=True):
        groups = res.groups()
        group_id = np.full(len(ids), -1, dtype=np.int64)
        for g, members in enumerate(groups):
            group_id[members] = g
        table = pd.DataFrame(
            {
                "id": ids,
                "max_similarity": res.max_similarity,
                "nearest_id": ids[res.nearest],
                "duplicate_group": group_id,  # -1: in no group
                "group_method": res.group_method,
            }
        )
        if len(loaded) > 1:
            table.insert(0, "dataset", name)
        tables.append(table)
        summaries[name] = {
            **res.summary(),
            "input": str(path),
            "input_fingerprint": fp,
        }
        if "approximate" in res.info:
            summaries[name]["approximate"] = res.info["approximate"]
        if scheduler is not None:
            engine = {k: v for k, v in res.info.items() if k != "approximate"}
            summaries[name]["engine"] = {**engine, "scheduler": str(scheduler)}
        curves[name] = res.max_similarity

    out.mkdir(parents=True, exist_ok=True)
    write_csv(pd.concat(tables, ignore_index=True), out / "redundancy.csv", float_format="%.7g")
    write_json(out / "summary.json", {"enrich_version": __version__, "datasets": summaries})
    fig = plot_cdf(curves)
    with atomic_path(out / "cdf.png") as tmp:
        fig.savefig(tmp, dpi=150)
    for name, s in summaries.items():
        fa = s["fraction_above"]
        print(
            f"{name}: N={s['n_images']:,}, median max similarity {s['quantiles']['0.5']:.3f}; "
            f"{fa['0.9']:.0%} of images > 0.9, {fa['0.8']:.0%} > 0.8; "
            f"{s['near_duplicates']['n_groups']:,} near-duplicate groups at >= {args.threshold} "
            f"({args.groups})"
        )
        if "approximate" in s:
            from enrich.approximate import describe

            print(f"{name}: {describe(s)}")
    print(f"wrote {out / 'redundancy.csv'}, {out / 'summary.json'}, {out / 'cdf.png'}")
    return 0


def _store_rows(kind: str, path: str) -> tuple[Any, Any, str, str] | None:
    """A Zarr store input, for the Dask workers to read: (rows, ids, fingerprint, name), or
    None to load it (:func:`enrich.distributed._rows.open_store_input`)."""
    from enrich.distributed._rows import open_store_input

    store = open_store_input(kind, path)
    if store is None:
        return None
    return store.rows, store.ids, store.fingerprint, store.name

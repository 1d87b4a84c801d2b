"""``enrich rank``: the labeling order, least redundant first."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from enrich.cli._common import add_input_arguments, load_input, progress_bar, read_id_lines
from enrich.distributed import add_engine_arguments, engine_from_args
from enrich.errors import EnrichError, first_few

__all__ = ["add_arguments", "parse_initial", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Rank images so the least redundant come first (ENRICH). Label them in this order; "
        "any prefix of the list is a good set to label."
    )
    add_input_arguments(parser)
    seed = parser.add_mutually_exclusive_group()
    seed.add_argument(
        "--initial",
        metavar="F|K",
        help="random seed set: a fraction in (0, 1) such as 0.02, or a count such as 500 "
        "(default: one random image)",
    )
    seed.add_argument(
        "--labeled", metavar="FILE", help="ids (or workspace paths) already labeled, one per line"
    )
    parser.add_argument("--budget", type=int, metavar="K", help="images to pick (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random seed set")
    # the registry's names are data: listing them loads no strategy module (and no numba)
    from enrich.select import SELECTORS

    parser.add_argument(
        "--strategy", choices=sorted(SELECTORS), default="enrich", help="default: enrich"
    )
    parser.add_argument(
        "--until-similarity",
        type=float,
        metavar="T",
        help="stop the order where every image left has a ranked neighbour with cosine "
        "similarity above T (e.g. 0.95); order.json records where T = 0.9 and 0.95 are reached",
    )
    parser.add_argument(
        "--out",
        "-o",
        metavar="CSV",
        help="order.csv to write (default with --workspace: WS/runs/rank/order.csv)",
    )
    add_engine_arguments(parser)
    parser.add_argument(
        "--mode",
        choices=("exact", "sharded", "composable"),
        default="exact",
        help="with --engine dask: exact (the in-process order, run on one worker; default), "
        "sharded (the same exact order, the rows kept on the workers in shards: for "
        "embeddings larger than one worker's memory) or composable (approximate: greedy per "
        "shard, then on the union of shard picks; needs --budget; reports its covering radius)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="shards for --mode sharded or composable (default: workers)",
    )
    # strategies and their parameters come from the registry's data (importing the
    # `enrich.select` package loads no strategy module, so --help needs no numba)
    from enrich.select import STRATEGIES

    parser.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a parameter of the strategy, repeatable (e.g. --param k=30); see below",
    )
    parser.epilog = _strategies_help(STRATEGIES)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _strategies_help(strategies: dict) -> str:
    lines = ["strategies (--strategy NAME, parameters as --param KEY=VALUE):"]
    for spec in strategies.values():
        lines.append(f"  {spec.name}: {spec.summary}")
        for p in spec.params:
            lines.append(f"      {p.name}={p.default}  {p.help}")
    return "\n".join(lines)


def parse_initial(text: str | None) -> float | int | None:
    """'0.02' -> 0.02 (fraction), '500' -> 500 (count), None -> None.

    >>> parse_initial("0.02"), parse_initial("500")
    (0.02, 500)
    """
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise EnrichError(
            f"--initial {text!r}: expected a fraction in (0, 1) or a whole count"
        ) from None


def run(args: argparse.Namespace) -> int:
    from enrich._lock import locked
    from enrich._outputs import check_outputs, check_seed

    check_seed(args.seed, name="--seed")
    if args.out is None:
        if args.workspace is None:
            raise EnrichError("--out is required with --embeddings (e.g. --out order.csv)")
        args.out = str(Path(args.workspace) / "runs" / "rank" / "order.csv")
    out = Path(args.out)
    if out.is_dir():
        raise EnrichError(f"--out {out} is a folder; expected a .csv file path")
    sidecar = out.with_suffix(".json")
    check_outputs(
        {"the order": out, "its JSON sidecar": sidecar}, inputs=[args.embeddings, args.labeled]
    )
    # One rank at a time per output: order.csv and order.json always come from the same run.
    with locked(out.parent / f".{out.stem}.enrich.lock", what=f"--out {out}"):
        return _run(args, out, sidecar)


def _store_input(args: argparse.Namespace) -> Any:
    """The Zarr store input, opened for the workers (ids only), or None to load the input."""
    from enrich.distributed._rows import open_store_input

    if (args.embeddings is None) == (args.workspace is None):
        return None  # load_input says what is wrong
    if args.embeddings is not None:
        return open_store_input("embeddings", args.embeddings)
    return open_store_input("workspace", args.workspace)


def _run(args: argparse.Namespace, out: Path, sidecar: Path) -> int:
    import numpy as np
    import pandas as pd

    from enrich import __version__
    from enrich._atomic import write_json
    from enrich.cli._common import write_csv
    from enrich.embeddings import check_vectors, fingerprint
    from enrich.select import SELECTORS, STRATEGIES
    from enrich.select.registry import parse_params

    params = parse_params(args.strategy, args.param)
    scheduler = engine_from_args(args)
    if scheduler is None and args.mode != "exact":
        raise EnrichError(f"--mode {args.mode} needs --engine dask")
    if scheduler is None and args.shards is not None:
        raise EnrichError("--shards needs --engine dask")
    if args.shards is not None and args.shards < 1:
        raise EnrichError(f"--shards {args.shards}: expected a whole number >= 1")
    if scheduler is not None and args.strategy != "enrich":
        raise EnrichError(f"--engine dask runs --strategy enrich, not {args.strategy!r}")
    # On Dask, a Zarr store is not loaded: its ids are read here, and the workers read and
    # check the rows.
    store = _store_input(args) if scheduler is not None else None
    if store is not None:
        from enrich.workspace import Workspace

        emb: Any = store
        manifest = None if args.workspace is None else Workspace(args.workspace).manifest()
        X: Any = store.rows
        input_fingerprint = store.fingerprint
    else:
        emb, manifest, name = load_input(args.embeddings, args.workspace)
        X = check_vectors(emb.vectors, ids=emb.ids, name=f"embeddings {name}")
        input_fingerprint = fingerprint(emb.vectors, emb.ids)
    n_images = int(X.shape[0])
    until = args.until_similarity
    if until is not None and (args.strategy != "enrich" or not -1.0 <= until <= 1.0):
        raise EnrichError(
            f"--until-similarity {until}: expected a cosine in [-1, 1] with --strategy enrich"
        )

    if args.labeled is not None:
        lines = read_id_lines(args.labeled)
        wanted = [value for _, value in lines]
        if manifest is not None:
            from enrich.workspace import Workspace

            wanted = list(Workspace(args.workspace).resolve_ids(wanted))
        else:
            known = set(emb.ids.tolist())
            unknown = [f"{v} (line {n})" for n, v in lines if v not in known]
            if unknown:
                raise EnrichError(
                    f"{args.labeled}: {len(unknown)} id(s) not in the embeddings: "
                    f"{first_few(unknown)}"
                )
        initial: object = emb.index_of(wanted)
        initial_desc: object = {"labeled_file": str(args.labeled), "n": len(wanted)}
    else:
        initial = parse_initial(args.initial)
        initial_desc = args.initial
    selector = SELECTORS[args.strategy](budget=args.budget, seed=args.seed, **params)
    t0 = time.perf_counter()
    expected = n_images if args.budget is None else args.budget
    with progress_bar(expected, f"ranking ({args.strategy})", unit="img") as update:
        if scheduler is None:
            selector.fit(X, initial=initial, progress=update)  # type: ignore[arg-type]
        else:
            from enrich.distributed._client import connect
            from enrich.distributed.rank import rank as rank_on_dask

            with connect(scheduler) as client:
                dask_result = rank_on_dask(
                    X,
                    client,
                    mode=args.mode,
                    initial=initial,  # type: ignore[arg-type]
                    budget=args.budget,
                    seed=args.seed,
                    n_shards=args.shards,
                    progress=update,
                )
            selector._set_result(dask_result)
    seconds = time.perf_counter() - t0
    result = selector.result_

    table = pd.DataFrame(
        {
            "rank": np.arange(len(result.order)),
            "id": emb.ids[result.order],
            "max_similarity_at_pick": result.max_similarity,
            "initial": result.initial,
        }
    )
    from enrich.loop.stopping import images_to_reach, stopping_summary

    stopping = stopping_summary(result.max_similarity)
    if until is not None:
        cut = images_to_reach(result.max_similarity, thresholds=(until,))[f"{until:g}"]
        if cut is not None:
            table = table.iloc[:cut]
        stopping["until_similarity"] = until
        stopping["stopped_at"] = cut
    if manifest is not None:
        cols = [c for c in ("source_path", "patient_id", "clip_id") if c in manifest.columns]
        extra = manifest.set_index("id")[cols].reindex(table["id"]).reset_index(drop=True)
        table = pd.concat([table, extra.rename(columns={"source_path": "path"})], axis=1)
    write_csv(table, out, float_format="%.7g")
    write_json(
        sidecar,
        {
            "enrich_version": __version__,
            "strategy": args.strategy,
            "method": "exact greedy max-min cosine (ENRICH)"
            if args.strategy == "enrich"
            else STRATEGIES[args.strategy].summary,
            "params": {
                p.name: params.get(p.name, p.default) for p in STRATEGIES[args.strategy].params
            },
            **(
                {}
                if scheduler is None
                else {
                    "method": "exact greedy max-min cosine (ENRICH), on Dask"
                    + (" (sharded)" if args.mode == "sharded" else "")
                    if args.mode in ("exact", "sharded")
                    else "APPROXIMATE: composable-coreset greedy max-min (ENRICH per shard, then "
                    "on the union of shard picks; Malkomes et al. 2015)",
                    "scheduler": str(scheduler),
                }
            ),
            "seed": args.seed,
            "initial": initial_desc,
            "n_initial": int(result.n_initial),
            "budget": args.budget,
            "n_images": n_images,
            "n_dims": int(X.shape[1]),
            "n_ranked": len(table),
            "stopping": stopping,
            "input": str(args.embeddings or args.workspace),
            "input_fingerprint": input_fingerprint,
            "seconds": round(seconds, 3),
            "engine": result.info,
        },
    )
    if np.isfinite(result.max_similarity).sum() >= 3:
        from enrich._atomic import atomic_path
        from enrich.loop.stopping import plot_stopping_curve

        with atomic_path(out.with_name(f"{out.stem}-stopping.png")) as tmp:
            plot_stopping_curve(result.max_similarity).savefig(tmp, dpi=110)
    reach = ", ".join(
        f"T={t}: {n:,}" for t, n in stopping["images_to_reach_similarity"].items() if n is not None
    )
    if reach:
        print(f"every image left has a ranked neighbour above T after: {reach} images")
    print(
        f"ranked {len(table):,} of {n_images:,} images "
        f"({result.n_initial:,} initial) in {seconds:.1f}s -> {out} (+ {sidecar.name})"
    )
    return 0

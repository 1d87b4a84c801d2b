"""``enrich rank``: the labeling order, least redundant first."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from enrich.cli._common import add_input_arguments, load_input, progress_bar, read_id_list
from enrich.errors import EnrichError

__all__ = ["STRATEGY_CHOICES", "add_arguments", "parse_initial", "run"]

#: The names in enrich.select.SELECTORS, spelled out: importing that registry to list them
#: loads numba (about 5 s), and `enrich rank --help` should be instant. A test keeps the two
#: in step, and run() checks the name against the registry.
STRATEGY_CHOICES = ("enrich", "random")


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
    parser.add_argument(
        "--strategy", choices=STRATEGY_CHOICES, default="enrich", help="default: enrich"
    )
    parser.add_argument(
        "--out",
        "-o",
        metavar="CSV",
        help="order.csv to write (default with --workspace: WS/runs/rank/order.csv)",
    )


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
    import numpy as np
    import pandas as pd

    from enrich import __version__
    from enrich._atomic import write_json
    from enrich.cli._common import write_csv
    from enrich.embeddings import check_vectors, fingerprint
    from enrich.select import SELECTORS

    if args.strategy not in SELECTORS:  # the choices above and the registry disagree
        raise EnrichError(f"--strategy {args.strategy!r}: expected one of {sorted(SELECTORS)}")
    emb, manifest, name = load_input(args.embeddings, args.workspace)
    if args.out is None:
        if args.workspace is None:
            raise EnrichError("--out is required with --embeddings (e.g. --out order.csv)")
        args.out = str(Path(args.workspace) / "runs" / "rank" / "order.csv")
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise EnrichError(f"--out {out} is a folder; expected a .csv file path")
    X = check_vectors(emb.vectors, ids=emb.ids, name=f"embeddings {name}")

    if args.labeled is not None:
        wanted = read_id_list(args.labeled)
        if manifest is not None:
            from enrich.workspace import Workspace

            wanted = list(Workspace(args.workspace).resolve_ids(wanted))
        initial: object = emb.index_of(wanted)
        initial_desc: object = {"labeled_file": str(args.labeled), "n": len(wanted)}
    else:
        initial = parse_initial(args.initial)
        initial_desc = args.initial
    selector = SELECTORS[args.strategy](budget=args.budget, seed=args.seed)
    t0 = time.perf_counter()
    expected = len(X) if args.budget is None else args.budget
    with progress_bar(expected, f"ranking ({args.strategy})", unit="img") as update:
        selector.fit(X, initial=initial, progress=update)  # type: ignore[arg-type]
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
    if manifest is not None:
        cols = [c for c in ("source_path", "patient_id", "clip_id") if c in manifest.columns]
        extra = manifest.set_index("id")[cols].reindex(table["id"]).reset_index(drop=True)
        table = pd.concat([table, extra.rename(columns={"source_path": "path"})], axis=1)
    write_csv(table, out, float_format="%.7g")
    sidecar = out.with_suffix(".json")
    write_json(
        sidecar,
        {
            "enrich_version": __version__,
            "strategy": args.strategy,
            "method": "exact greedy max-min cosine (ENRICH)"
            if args.strategy == "enrich"
            else args.strategy,
            "seed": args.seed,
            "initial": initial_desc,
            "n_initial": int(result.n_initial),
            "budget": args.budget,
            "n_images": len(X),
            "n_dims": int(X.shape[1]),
            "n_ranked": len(result.order),
            "input": str(args.embeddings or args.workspace),
            "input_fingerprint": fingerprint(emb.vectors, emb.ids),
            "seconds": round(seconds, 3),
            "engine": result.info,
        },
    )
    print(
        f"ranked {len(result.order):,} of {len(X):,} images "
        f"({result.n_initial:,} initial) in {seconds:.1f}s -> {out} (+ {sidecar.name})"
    )
    return 0

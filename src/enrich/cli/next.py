"""``enrich next``: the next batch to label, given everything labeled so far."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from enrich.errors import EnrichError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The next K images to label: the labeled images (and those handed out in batches not "
        "yet labeled) are the seed set; the batch is recorded in WS/runs/batches/ and "
        "written to --out as batch.csv. Re-running with the same labels returns the same batch."
    )
    parser.add_argument("--workspace", "-w", required=True, metavar="DIR", help="the workspace")
    parser.add_argument(
        "--labeled",
        metavar="FILE",
        help="what is labeled so far: a CSV of ids or paths (optional 'label' column), a Label "
        "Studio JSON export or a CVAT for images XML export (default: the labels imported "
        "with `enrich labels import`)",
    )
    parser.add_argument(
        "--budget", type=int, required=True, metavar="K", help="images in the batch"
    )
    from enrich.select import SELECTORS

    parser.add_argument(
        "--strategy", choices=sorted(SELECTORS), default="enrich", help="default: enrich"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the strategy (default 0)")
    parser.add_argument("--max-per-patient", type=int, metavar="N", help="at most N per patient")
    parser.add_argument("--max-per-clip", type=int, metavar="N", help="at most N per clip")
    parser.add_argument(
        "--until-similarity",
        type=float,
        metavar="T",
        help="stop the batch once every image left has a labeled or handed-out neighbour "
        "with cosine similarity above T (e.g. 0.95)",
    )
    parser.add_argument(
        "--close",
        type=int,
        action="append",
        metavar="B",
        help="close earlier batch B: its unlabeled images may be handed out again (repeatable)",
    )
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for batch.csv")
    from enrich.distributed import add_engine_arguments

    add_engine_arguments(parser)
    parser.add_argument(
        "--mode",
        choices=("exact", "sharded"),
        default="exact",
        help="with --engine dask: exact (the in-process ranking, run on one worker; default) "
        "or sharded (the rows kept on the workers in shards); the batch is the same either way",
    )


def run(args: argparse.Namespace) -> int:
    from enrich.loop import batch_table, next_batch, resolve_labeled
    from enrich.workspace import Workspace

    ws = Workspace.open(args.workspace)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EnrichError(f"--out {out} is a file; expected a folder")
    labeled = resolve_labeled(ws, args.labeled) if args.labeled else []
    from enrich.distributed import engine_from_args

    scheduler = engine_from_args(args)
    if scheduler is None and args.mode != "exact":
        raise EnrichError(f"--mode {args.mode} needs --engine dask")
    if scheduler is not None and args.strategy != "enrich":
        raise EnrichError(f"--engine dask runs --strategy enrich, not {args.strategy!r}")
    store = None
    if scheduler is not None:
        # a workspace holding only embeddings.zarr is not loaded: its ids are read here, and
        # the workers read and check the rows
        from enrich.distributed._rows import open_store_input

        store = open_store_input("workspace", args.workspace)
    with contextlib.ExitStack() as stack:
        ranker = None
        if scheduler is not None:
            clients: list[Any] = []

            def ranker(X: Any, **kwargs: Any) -> Any:
                # connect on first use: a repeated request, or one refused by its checks,
                # starts no cluster
                from enrich.distributed._client import connect
                from enrich.distributed.rank import rank as rank_on_dask

                if not clients:
                    clients.append(stack.enter_context(connect(scheduler)))
                return rank_on_dask(X, clients[0], mode=args.mode, **kwargs)

        batch = next_batch(
            ws,
            labeled=labeled,
            budget=args.budget,
            strategy=args.strategy,
            seed=args.seed,
            max_per_patient=args.max_per_patient,
            max_per_clip=args.max_per_clip,
            until_similarity=args.until_similarity,
            close=args.close,
            ranker=ranker,
            embeddings=store,
        )
    from enrich._atomic import write_json
    from enrich.cli._common import write_csv

    write_csv(batch_table(ws, batch), out / "batch.csv", float_format="%.7g")
    # the copy beside batch.csv says where the workspace is (for `enrich export batch.csv`)
    write_json(out / "batch.json", {**batch.record, "workspace": str(ws.path.resolve())})
    rec = batch.record
    cover = rec.get("coverage", {})
    parts = [f"{len(batch.ids)} images"]
    for name in ("patients", "clips"):
        if name in cover:
            parts.append(
                f"{cover[name]} {name} ({cover[f'new_{name}']} new; "
                f"{cover[f'total_{name}']} in the workspace)"
            )
    what = "already made for these labels" if batch.reused else "new"
    print(f"batch {batch.number} ({what}): {', '.join(parts)} -> {out / 'batch.csv'}")
    if rec.get("stopped_at_similarity") is not None:
        print(
            f"stopped early: every image left has a neighbour above "
            f"{rec['stopped_at_similarity']} among the labeled and handed-out images"
        )
    return 0

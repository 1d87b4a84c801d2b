"""ENRICH picks on Dask: exact (in-process, and on one worker) vs the composable coreset.

For generated clustered embeddings, picks a fraction of the images (10% by default) three
ways and prints, for each, the wall time and the covering radius of the chosen set (the
k-center objective: how far the farthest image is from its nearest chosen image, as a
distance between unit vectors, sqrt(2 - 2 cos); smaller is better), and the composable
coreset's radius as a ratio of the exact one.

    python benchmarks/bench_dask.py                     # 100k x 128, 10%, 2 workers
    python benchmarks/bench_dask.py --n 1000000         # 1M (several minutes on 2 cores)
    python benchmarks/bench_dask.py --n 20000 --csv out.csv

The exact order's radius comes free from the greedy (the max similarity of its next pick);
the coreset's is measured by one O(N·k·d) pass on the workers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _data import clustered  # noqa: E402


def main() -> None:
    from distributed import Client, LocalCluster

    from enrich.distributed.rank import rank as rank_on_dask
    from enrich.select import rank

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--fraction", type=float, default=0.1, help="share of images to pick")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shards", type=int, help="coreset shards (default: workers)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", help="also write the table here")
    args = ap.parse_args()

    t = time.perf_counter()
    X = clustered(args.n, args.dim, seed=args.seed)
    print(f"data: {args.n:,} x {args.dim} clustered, {time.perf_counter() - t:.1f}s", flush=True)
    k = max(1, round(args.fraction * args.n))
    rows = []

    t = time.perf_counter()
    # k + 1 picks: the last one's max similarity is the covering similarity of the first k
    exact = rank(X, initial=1, budget=k + 1, seed=args.seed)
    sec = time.perf_counter() - t
    exact_sim = float(exact.max_similarity[-1])
    exact_order = exact.order[:-1]
    rows.append(("exact, in-process", sec, exact_sim, len(exact_order)))
    print(f"exact in-process: {sec:.1f}s", flush=True)

    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        t = time.perf_counter()
        on_worker = rank_on_dask(X, client, initial=1, budget=k, seed=args.seed)
        sec = time.perf_counter() - t
        same = np.array_equal(on_worker.order, exact_order)
        rows.append(("exact, on one Dask worker", sec, exact_sim, len(on_worker.order)))
        print(f"exact on a worker: {sec:.1f}s (same order as in-process: {same})", flush=True)

        t = time.perf_counter()
        core = rank_on_dask(
            X,
            client,
            mode="composable",
            initial=1,
            budget=k,
            seed=args.seed,
            n_shards=args.shards,
        )
        sec = time.perf_counter() - t
        info = core.info or {}
        rows.append(
            (
                f"composable coreset ({info['n_shards']} shards, "
                f"{info['coreset_size']:,} in union)",
                sec,
                float(info["covering_similarity"]),
                len(core.order),
            )
        )

    def radius(sim: float) -> float:
        return float(np.sqrt(max(0.0, 2.0 - 2.0 * sim)))

    print(f"\n{args.n:,} x {args.dim}, {k:,} picks ({args.fraction:.0%}), {args.workers} workers")
    print(f"{'method':58s} {'seconds':>8s} {'cover sim':>10s} {'radius':>8s} {'ratio':>6s}")
    r0 = radius(exact_sim)
    table = []
    for name, sec, sim, n_chosen in rows:
        r = radius(sim)
        ratio = r / r0 if r0 > 0 else float("nan")
        print(f"{name:58s} {sec:8.1f} {sim:10.4f} {r:8.4f} {ratio:6.2f}")
        table.append(
            {
                "n": args.n,
                "dim": args.dim,
                "picks": k,
                "workers": args.workers,
                "method": name,
                "seconds": sec,
                "covering_similarity": sim,
                "covering_radius": r,
                "radius_ratio_to_exact": ratio,
                "n_chosen": n_chosen,
            }
        )
    if args.csv:
        import pandas as pd

        pd.DataFrame(table).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()

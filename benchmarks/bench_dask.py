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

The ``sharded`` section times the exact order three ways (in-process, ``--mode exact`` on one
worker, ``--mode sharded`` with the rows kept on the workers), checks that all three orders
are identical, and reports the sharded mode's rounds and every process's peak memory (RSS
sampled every 20 ms on the driver and, through ``client.run``, on each worker):

    python benchmarks/bench_dask.py sharded                 # 100k x 128, 10%, 2 workers
    python benchmarks/bench_dask.py sharded --n 1000000
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


class _PeakRSS:
    """Peak resident memory of this process, sampled by a thread (resettable)."""

    def __init__(self, every: float = 0.02) -> None:
        import threading

        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def reset(self) -> int:
        """The peak since the last reset (bytes); starts a new one."""
        peak = max(self.peak, self.proc.memory_info().rss)
        self.peak = self.proc.memory_info().rss
        return peak


def _worker_peak_start(dask_worker=None) -> int:  # runs on a worker via client.run
    if not hasattr(dask_worker, "_enrich_peak"):
        dask_worker._enrich_peak = _PeakRSS()
    return dask_worker._enrich_peak.reset()


def sharded_main(argv: list[str]) -> None:
    from distributed import Client, LocalCluster

    from enrich.distributed.rank import rank as rank_on_dask
    from enrich.select import rank

    ap = argparse.ArgumentParser(description="exact ENRICH: in-process vs exact vs sharded")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--fraction", type=float, default=0.1, help="share of images to pick")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=4096, help="per shard per round")
    ap.add_argument("--skip-exact", action="store_true", help="skip --mode exact on a worker")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", help="also write the table here")
    args = ap.parse_args(argv)

    driver = _PeakRSS()
    t = time.perf_counter()
    X = clustered(args.n, args.dim, seed=args.seed)
    k = max(1, round(args.fraction * args.n))
    print(f"data: {args.n:,} x {args.dim} clustered ({X.nbytes / 2**20:,.0f} MiB), "
          f"{time.perf_counter() - t:.1f}s; {k:,} picks", flush=True)  # fmt: skip
    rank(X[:5000], initial=1, budget=50, seed=0)  # numba loads its kernels once, untimed
    driver.reset()
    rows = []
    t = time.perf_counter()
    want = rank(X, initial=1, budget=k, seed=args.seed)
    sec = time.perf_counter() - t
    rows.append({"method": "in-process", "seconds": sec, "driver_peak_mib": driver.reset() / 2**20})
    print(f"in-process: {sec:.1f}s", flush=True)

    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
            memory_limit=0,  # measure, do not spill or pause
        ) as cluster,
        Client(cluster) as client,
    ):
        modes = ["sharded"] if args.skip_exact else ["exact", "sharded"]
        # warm-up: numba compiles (or loads its cache) in each worker once, not in the timing
        # (10,000 rows per shard: the pruned kernels too)
        rank_on_dask(X[:20000], client, mode="sharded", initial=1, budget=500, seed=0)
        idle = client.run(_worker_peak_start)
        print("workers before ranking (MiB): "
              + " / ".join(f"{p / 2**20:,.0f}" for p in idle.values()), flush=True)  # fmt: skip
        for mode in modes:
            client.run(_worker_peak_start)
            driver.reset()
            t = time.perf_counter()
            got = rank_on_dask(
                X, client, mode=mode, initial=1, budget=k, seed=args.seed,
                candidates=args.candidates,
            )  # fmt: skip
            sec = time.perf_counter() - t
            peaks = client.run(_worker_peak_start)
            info = got.info or {}
            same = np.array_equal(got.order, want.order) and np.array_equal(
                got.max_similarity, want.max_similarity, equal_nan=True
            )
            row = {
                "method": f"dask --mode {mode}",
                "seconds": sec,
                "driver_peak_mib": driver.reset() / 2**20,
                "worker_peak_mib": " / ".join(f"{p / 2**20:,.0f}" for p in peaks.values()),
                "same_order": same,
            }
            keep = ("rounds", "n_shards", "candidates_per_shard", "driver_seconds")
            keep += ("round_seconds", "batches_pruned", "batches_dense", "shard_bytes")
            row.update({key: info[key] for key in keep if key in info})
            rows.append(row)
            print(f"{mode}: {sec:.1f}s, same order as in-process: {same}, {row}", flush=True)

    print(f"\n{args.n:,} x {args.dim}, {k:,} picks ({args.fraction:.0%}), {args.workers} workers")
    print(f"{'method':22s} {'seconds':>8s} {'rounds':>7s} {'driver MiB':>11s} {'worker MiB':>14s}")
    for r in rows:
        print(
            f"{r['method']:22s} {r['seconds']:8.1f} {r.get('rounds', '-')!s:>7s} "
            f"{r['driver_peak_mib']:11,.0f} {r.get('worker_peak_mib', '-'):>14s}"
        )
    if args.csv:
        import pandas as pd

        table = pd.DataFrame(rows).assign(n=args.n, dim=args.dim, picks=k, workers=args.workers)
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


def main() -> None:
    if sys.argv[1:2] == ["sharded"]:
        sharded_main(sys.argv[2:])
        return
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

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

The ``cli`` section measures the driver's peak RSS of ``enrich rank --engine dask`` run as a
user runs it (its own process, ``-e STORE.zarr``, against a 2-worker cluster), with the rows
read by the workers from the store, and, given ``--before-src``, the earlier code that loaded
them in the driver; it checks that every run writes the same ``order.csv``:

    python benchmarks/bench_dask.py cli --n 1000000 --before-src /tmp/before/src

Also ``redundancy``, ``coreset`` (composable coreset vs exact at 1M, with per-worker peak
memory) and ``embed`` (`enrich embed` on real files, in-process vs 1 and 2 Dask workers): see
their docs below (``python benchmarks/bench_dask.py SECTION --help``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def _local_client(workers: int, *, measure: bool = False) -> Iterator[Any]:
    """A client on a LocalCluster of `workers` single-threaded processes; `measure` turns
    off Dask's memory limit (no spilling or pausing while memory is measured)."""
    from distributed import Client, LocalCluster

    extra = {"memory_limit": 0} if measure else {}
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
            **extra,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _worker_peak_start(dask_worker=None) -> int:  # runs on a worker via client.run
    if not hasattr(dask_worker, "_enrich_peak"):
        dask_worker._enrich_peak = _PeakRSS()
    return dask_worker._enrich_peak.reset()


def sharded_main(argv: list[str]) -> None:

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

    with _local_client(args.workers, measure=True) as client:
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


_CLI_RUN = """
import sys, time
from enrich.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
sec = time.perf_counter() - t
# VmHWM: the peak RSS of this process's own memory (ru_maxrss would also count the parent's
# peak, carried over by fork + exec)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(f"@@ rc={rc} seconds={sec:.2f} peak_kib={status[0]}", flush=True)
"""


def cli_main(argv: list[str]) -> None:
    """The driver's peak memory of ``enrich rank --engine dask`` on a Zarr store, as a user
    runs it (a separate process, against a running 2-worker cluster): the rows loaded in the
    driver and sent to the workers (the code before, given as --before-src) vs read by the
    workers themselves (this checkout)."""
    import os
    import subprocess

    ap = argparse.ArgumentParser(description="driver peak RSS of the rank CLI on a Zarr store")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--budget", type=int, default=10_000, help="picks (the driver's cost)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--modes", default="sharded,exact", help="modes run from this checkout")
    ap.add_argument(
        "--before-src",
        help="src/ of an earlier checkout, also run, e.g. from "
        "`git archive b0a5f57 src | tar -x -C /tmp/before` (/tmp/before/src)",
    )
    ap.add_argument("--before-modes", default="sharded,exact", help="modes run from it")
    ap.add_argument("--dir", default="/tmp/enrich-bench-cli", help="store and outputs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    store = work / f"clustered-{args.n}x{args.dim}.zarr"
    if not (store / "zarr.json").is_file():
        sec = clustered_store(store, args.n, args.dim, chunk_rows=args.chunk_rows, seed=args.seed)
        print(f"wrote {store} ({args.n * args.dim * 4 / 2**20:,.0f} MiB) in {sec:.1f}s", flush=True)
    here = str(HERE.parent / "src")
    runs = [(f"this checkout, --mode {m}", here, m) for m in args.modes.split(",") if m]
    if args.before_src:
        before = [m for m in args.before_modes.split(",") if m]
        runs[:0] = [(f"before (driver loads), --mode {m}", args.before_src, m) for m in before]
    rows = []
    with _local_client(args.workers, measure=True) as client:
        address = client.scheduler.address
        for label, src, mode in runs:
            out = work / f"order-{len(rows)}.csv"
            cmd = [sys.executable, "-c", _CLI_RUN, "rank", "-e", str(store), "-o", str(out)]
            cmd += ["--initial", "1", "--budget", str(args.budget), "--seed", str(args.seed)]
            cmd += ["--scheduler", address, "--mode", mode]
            env = {**os.environ, "PYTHONPATH": src}
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            tail = [line for line in done.stdout.splitlines() if line.startswith("@@ ")]
            if done.returncode or not tail:
                sys.exit(f"{label}: failed\n{done.stdout}\n{done.stderr[-3000:]}")
            fields = dict(f.split("=") for f in tail[-1][3:].split())
            row = {
                "run": label,
                "driver_peak_mib": int(fields["peak_kib"]) / 1024,
                "seconds": float(fields["seconds"]),
                "order": out.read_bytes(),
            }
            rows.append(row)
            print(f"{label}: driver peak {row['driver_peak_mib']:,.0f} MiB, "
                  f"{row['seconds']:.1f}s", flush=True)  # fmt: skip
    same = all(r["order"] == rows[0]["order"] for r in rows)
    print(f"\n{args.n:,} x {args.dim} Zarr store, {args.budget:,} picks, {args.workers} workers; "
          f"order.csv identical across runs: {same}")  # fmt: skip
    print(f"{'run':40s} {'driver peak MiB':>16s} {'seconds':>8s}")
    for r in rows:
        print(f"{r['run']:40s} {r['driver_peak_mib']:16,.0f} {r['seconds']:8.1f}")


def main() -> None:
    if sys.argv[1:2] == ["sharded"]:
        sharded_main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["cli"]:
        cli_main(sys.argv[2:])
        return

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

    with _local_client(args.workers) as client:
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


# --------------------------------------------------------------------------- redundancy
REDUNDANCY_DOC = """Redundancy at scale on Dask: a clustered store on disk, exact and approximate.

    python benchmarks/bench_dask.py redundancy                       # 1M x 128, 2 workers
    python benchmarks/bench_dask.py redundancy --n 200000 --exact-tasks 0
    python benchmarks/bench_dask.py redundancy --store /big/e.zarr   # keep the store

The embeddings are generated clip by clip (as benchmarks/_data.clustered) and written to a Zarr
store chunk by chunk, so the driver never holds them. On a LocalCluster of --workers
single-threaded workers, reading the store themselves:

- approximate (faiss IVF, the defaults of `enrich redundancy --approximate ivf`): wall time,
  the measured recall of the true maximum, per-worker peak RSS;
- exact: the tiles of the all-pairs product, in G x G squares of the block grid; only
  --exact-tasks of the squares (chosen at random, seeded) are run, timed, and the whole run
  extrapolated from their share of the tiles (--exact-tasks -1: every square).

Peak RSS per worker is sampled every 0.2 s by a thread in each worker (psutil).
"""


def clustered_store(path: Path, n: int, d: int, *, chunk_rows: int, seed: int) -> float:
    """Write the clustered embeddings of benchmarks/_data.clustered (300 clips around 8 view
    centres, frames on a slow random walk) to a store, buffering one chunk at a time."""
    import shutil

    from enrich.distributed.store import FORMAT, VERSION, _zarr

    zarr = _zarr()
    t = time.perf_counter()
    shutil.rmtree(path, ignore_errors=True)
    group = zarr.open_group(str(path), mode="w")
    vec = group.create_array("vectors", shape=(n, d), dtype="float32", chunks=(chunk_rows, d))
    rng = np.random.default_rng(seed)
    views = rng.normal(size=(8, d))
    views /= np.linalg.norm(views, axis=1, keepdims=True)
    sizes = rng.multinomial(n, np.full(300, 1 / 300))
    buf = np.empty((chunk_rows, d), dtype=np.float32)
    filled, row = 0, 0
    for size in sizes:
        start = views[rng.integers(8)] + 0.35 * rng.normal(size=d) / np.sqrt(d) * 4
        pos = start.copy()
        done = 0
        while done < size:
            m = min(size - done, chunk_rows - filled)
            walk = pos + np.cumsum(0.02 * rng.normal(size=(m, d)), axis=0)
            pos = walk[-1]
            frames = walk + 0.05 * rng.normal(size=(m, d))
            buf[filled : filled + m] = frames / np.linalg.norm(frames, axis=1, keepdims=True)
            filled += m
            done += m
            if filled == chunk_rows:
                vec[row : row + filled] = buf
                row, filled = row + filled, 0
    if filled:
        vec[row : row + filled] = buf[:filled]
    ids = group.create_array("ids", shape=(n,), dtype=str, chunks=(chunk_rows,))
    for a in range(0, n, chunk_rows):
        ids[a : min(n, a + chunk_rows)] = np.array(
            [f"img_{i:08d}" for i in range(a, min(n, a + chunk_rows))]
        )
    group.attrs.update(
        {"format": FORMAT, "version": VERSION, "n_images": n, "dim": d, "fingerprint": "bench"}
    )
    return time.perf_counter() - t


def redundancy_main(argv: list[str]) -> None:
    import tempfile

    import psutil

    from enrich.approximate import ApproxOptions
    from enrich.distributed._rows import StoreRows
    from enrich.distributed.approximate import redundancy as approximate
    from enrich.distributed.redundancy import _fold_tiles, _square_tasks

    ap = argparse.ArgumentParser(description=REDUNDANCY_DOC.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--store", type=Path, help="store path (default: a temporary folder)")
    ap.add_argument("--reuse-store", action="store_true", help="use --store as it is")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--recall-sample", type=int, default=1000)
    ap.add_argument("--block", type=int, default=1024, help="exact: tile size")
    ap.add_argument("--groups", type=int, default=32, help="exact: G (G x G squares)")
    ap.add_argument("--exact-tasks", type=int, default=4, help="exact squares run (-1: all)")
    ap.add_argument("--skip-approximate", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", help="also write the table here")
    args = ap.parse_args(argv)

    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_dask_")
        args.store = Path(tmp.name) / "e.zarr"
    n, d = args.n, args.dim
    if not args.reuse_store:
        sec = clustered_store(args.store, n, d, chunk_rows=args.chunk_rows, seed=args.seed)
        print(f"store: {n:,} x {d} clustered -> {args.store} in {sec:.1f}s", flush=True)
    rows = StoreRows.open(str(args.store))
    driver_rss = psutil.Process().memory_info().rss / 2**20
    print(f"driver RSS after opening the store (ids only): {driver_rss:.0f} MiB", flush=True)
    table = []
    with _local_client(args.workers, measure=True) as client:
        if not args.skip_approximate:
            client.run(_worker_peak_start)
            t = time.perf_counter()
            r = approximate(
                rows,
                client,
                options=ApproxOptions(
                    nprobe=args.nprobe, recall_sample=args.recall_sample, seed=args.seed
                ),
            )
            sec = time.perf_counter() - t
            peaks = [v / 2**20 for v in client.run(_worker_peak_start).values()]
            a = r.info["approximate"]
            rec = a["recall"]
            print(
                f"approximate IVF nlist={a['nlist']} nprobe={a['nprobe']}: {sec:.1f}s, recall "
                f"{rec['recall']:.3f} on {rec['sample']:,} (mean shortfall "
                f"{rec['mean_shortfall']:.2g}, max {rec['max_shortfall']:.2g}); index "
                f"{r.info['seconds_index']:.0f}s on one worker, search "
                f"{r.info['seconds_search']:.0f}s; worker peak "
                f"RSS {', '.join(f'{p:.0f}' for p in peaks)} MiB",
                flush=True,
            )
            table.append(
                {
                    "n": n,
                    "dim": d,
                    "workers": args.workers,
                    "method": f"approximate ivf nlist={a['nlist']} nprobe={a['nprobe']}",
                    "seconds": sec,
                    "measured": "all",
                    "recall": rec["recall"],
                    "mean_shortfall": rec["mean_shortfall"],
                    "max_shortfall": rec["max_shortfall"],
                    "worker_peak_rss_mib": max(peaks),
                    "seconds_index": r.info["seconds_index"],
                    "seconds_search": r.info["seconds_search"],
                }
            )
        if args.exact_tasks != 0:
            nb = -(-n // args.block)
            tasks = _square_tasks(nb, args.groups * (args.groups + 1) // 2)
            total_tiles = sum(len(t) for t in tasks)
            rng = np.random.default_rng(args.seed)
            pick = (
                np.arange(len(tasks))
                if args.exact_tasks < 0
                else rng.choice(len(tasks), size=min(args.exact_tasks, len(tasks)), replace=False)
            )
            chosen = [tasks[k] for k in pick]
            tiles = sum(len(t) for t in chosen)
            client.run(_worker_peak_start)
            t = time.perf_counter()
            futures = [
                client.submit(_fold_tiles, rows, tl, 0.95, args.block, False, pure=False)
                for tl in chosen
            ]
            client.gather(futures)
            sec = time.perf_counter() - t
            peaks = [v / 2**20 for v in client.run(_worker_peak_start).values()]
            full = sec * total_tiles / tiles
            print(
                f"exact: {tiles:,} of {total_tiles:,} tiles ({len(chosen)} of {len(tasks)} "
                f"squares) in {sec:.1f}s -> whole run about {full:.0f}s "
                f"({full / 3600:.2f} h) on {args.workers} workers; worker peak RSS "
                f"{', '.join(f'{p:.0f}' for p in peaks)} MiB",
                flush=True,
            )
            table.append(
                {
                    "n": n,
                    "dim": d,
                    "workers": args.workers,
                    "method": f"exact, block {args.block}, {len(tasks)} squares",
                    "seconds": full,
                    "measured": f"{tiles} of {total_tiles} tiles in {sec:.1f}s",
                    "recall": 1.0,
                    "mean_shortfall": 0.0,
                    "max_shortfall": 0.0,
                    "worker_peak_rss_mib": max(peaks),
                }
            )
    if args.csv:
        import pandas as pd

        pd.DataFrame(table).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if tmp is not None:
        tmp.cleanup()


# --------------------------------------------------------------------------- coreset
CORESET_DOC = """Composable coreset vs exact ENRICH at scale: radius ratio, time, peak memory.

    python benchmarks/bench_dask.py coreset                  # 1M x 128, 10%, 2 workers
    python benchmarks/bench_dask.py coreset --n 300000 --csv out.csv

The exact order is made in-process (k + 1 picks: the last pick's max similarity is the
covering similarity of the first k); the composable coreset (`mode="composable"`: greedy on
each worker's shard, then greedy on the union of the shards' picks) on a LocalCluster of
--workers single-threaded workers, with its covering radius measured by the shipped O(N·k·d)
pass on the workers (timed apart). Peak RSS is sampled every 20 ms in the driver and in each
worker (as the ``sharded`` section).
"""


def coreset_main(argv: list[str]) -> None:
    import os

    import enrich.distributed.rank as dask_rank
    from enrich.select import rank

    ap = argparse.ArgumentParser(description=CORESET_DOC.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--fraction", type=float, default=0.1, help="share of images to pick")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", help="also write the table here")
    args = ap.parse_args(argv)

    def radius(sim: float) -> float:
        return float(np.sqrt(max(0.0, 2.0 - 2.0 * sim)))

    driver = _PeakRSS()
    t = time.perf_counter()
    X = clustered(args.n, args.dim, seed=args.seed)
    k = max(1, round(args.fraction * args.n))
    print(f"data: {args.n:,} x {args.dim} clustered ({X.nbytes / 2**20:,.0f} MiB), "
          f"{time.perf_counter() - t:.1f}s; {k:,} picks; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)  # fmt: skip
    rank(X[:5000], initial=1, budget=50, seed=0)  # numba loads its kernels once, untimed
    driver.reset()
    t = time.perf_counter()
    exact = rank(X, initial=1, budget=k + 1, seed=args.seed)
    sec = time.perf_counter() - t
    exact_sim = float(exact.max_similarity[-1])
    rows = [
        {
            "method": "exact, in-process",
            "seconds": sec,
            "covering_similarity": exact_sim,
            "covering_radius": radius(exact_sim),
            "driver_peak_mib": driver.reset() / 2**20,
        }
    ]
    print(f"exact in-process: {sec:.1f}s, radius {radius(exact_sim):.4f}", flush=True)

    # the covering pass is part of the composable mode (it reports its radius): timed apart
    cover_seconds: list[float] = []
    shipped_covering = dask_rank.covering

    def timed_covering(*a: object, **kw: object) -> dict:
        t0 = time.perf_counter()
        out = shipped_covering(*a, **kw)  # type: ignore[arg-type]
        cover_seconds.append(time.perf_counter() - t0)
        return out

    with _local_client(args.workers, measure=True) as client:
        # warm-up: numba compiles (or loads its cache) in each worker, not in the timing
        dask_rank.rank(X[:20000], client, mode="composable", initial=1, budget=500, seed=0)
        idle = client.run(_worker_peak_start)
        print("workers before ranking (MiB): "
              + " / ".join(f"{p / 2**20:,.0f}" for p in idle.values()), flush=True)  # fmt: skip
        client.run(_worker_peak_start)
        driver.reset()
        dask_rank.covering = timed_covering  # type: ignore[assignment]
        try:
            t = time.perf_counter()
            core = dask_rank.rank(X, client, mode="composable", initial=1, budget=k, seed=args.seed)
            sec = time.perf_counter() - t
        finally:
            dask_rank.covering = shipped_covering
        peaks = client.run(_worker_peak_start)
    info = core.info or {}
    sim = float(info["covering_similarity"])
    rows.append(
        {
            "method": f"composable coreset ({info['n_shards']} shards, "
            f"{info['coreset_size']:,} in the union)",
            "seconds": sec,
            "seconds_covering_pass": cover_seconds[-1],
            "covering_similarity": sim,
            "covering_radius": radius(sim),
            "driver_peak_mib": driver.reset() / 2**20,
            "worker_peak_mib": " / ".join(f"{p / 2**20:,.0f}" for p in peaks.values()),
        }
    )
    r0 = rows[0]["covering_radius"]
    print(f"\n{args.n:,} x {args.dim}, {k:,} picks ({args.fraction:.0%}), {args.workers} workers; "
          f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")  # fmt: skip
    print(f"{'method':48s} {'seconds':>8s} {'of which radius':>15s} {'radius':>7s} "
          f"{'ratio':>6s} {'driver MiB':>10s} {'worker MiB':>14s}")  # fmt: skip
    for r in rows:
        r["radius_ratio_to_exact"] = r["covering_radius"] / r0 if r0 > 0 else float("nan")
        cov = r.get("seconds_covering_pass")
        print(
            f"{r['method']:48s} {r['seconds']:8.1f} {'-' if cov is None else f'{cov:.1f}':>15s} "
            f"{r['covering_radius']:7.4f} {r['radius_ratio_to_exact']:6.2f} "
            f"{r['driver_peak_mib']:10,.0f} {r.get('worker_peak_mib', '-'):>14s}"
        )
    if args.csv:
        import pandas as pd

        table = pd.DataFrame(rows).assign(n=args.n, dim=args.dim, picks=k, workers=args.workers)
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


# --------------------------------------------------------------------------- embed
EMBED_DOC = """Embedding throughput on real files: in-process vs Dask with 1 and 2 workers.

    python benchmarks/bench_dask.py embed                    # X-ray PNGs and the echo clip
    python benchmarks/bench_dask.py embed --datasets xray --repeats 2 --csv out.csv

Runs `enrich embed` as a user would (one process per run, a fresh workspace each time) with
the in-process engine and `--engine dask --scheduler local:N`, on

- xray: every PneumoniaMNIST image of data/pneumoniamnist/pneumoniamnist.npz (5,856, all
  splits) written out first as a folder of PNG files (one sub-folder per split), so the
  workers read and decode real image files;
- echo: pydicom-data's color3d_jpeg_baseline.dcm, a real multi-frame JPEG DICOM cine clip
  (120 frames).

Nothing is trained: each run reuses a shipped model (data/demo_models/). The echo clip is the
data its model was trained on, so ``--model-from`` passes its data-fingerprint check; the PNG
folder's image ids (file names) differ from the npz rows the X-ray model was trained on, so
its check would fail and train: the model is put in the fresh workspace's model/ instead (the
workspace's own model is reused when its embedder, options and preprocessing match). After
every run the benchmark checks that the workspace's model carries the shipped model's
training record (epochs, losses, seconds) and data fingerprint, so no run trained.

Reported per run: wall time of the whole command (start-up, LocalCluster start, reading,
preprocessing, embedding, writing), images/s over it, the same for embed() alone as
embeddings.json records it (without Python's and the CLI's start-up; with the LocalCluster's
start, which happens inside it), and the peak RSS of the driver process
and of each worker process (the command's child processes started by multiprocessing's
spawn), sampled every 50 ms with psutil, with each process's lifetime and CPU seconds (user +
system, at its last sighting); and the load average (1 min) before and after.
"""


def _png_folder(npz: Path, out: Path, copies: int = 1) -> int:
    """Every image of a MedMNIST npz as out/<copy>/<split>/<split>_<row>.png (`copies` times
    over, in separate folders); returns the count of files."""
    from PIL import Image

    data = np.load(npz)
    n = 0
    for c in range(copies):
        for split in ("train", "val", "test"):
            key = f"{split}_images"
            if key not in data.files:
                continue
            folder = out / f"copy{c}" / split
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(data[key]):
                Image.fromarray(np.asarray(img, dtype=np.uint8)).save(
                    folder / f"{split}_{i:05d}.png"
                )
                n += 1
    return n


def _run_sampled(cmd: list[str], env: dict[str, str], every: float = 0.05) -> dict:
    """Run `cmd`; the wall time and the peak RSS of it and of each spawned child process."""
    import subprocess

    import psutil

    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peak: dict[int, float] = {}
    kind: dict[int, str] = {}
    seen: dict[int, list[float]] = {}  # first and last sighting
    busy: dict[int, float] = {}
    while proc.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in family:
            try:
                rss = p.memory_info().rss
                cpu = p.cpu_times()
                if p.pid not in kind:
                    line = " ".join(p.cmdline())
                    kind[p.pid] = (
                        "driver" if p.pid == proc.pid else
                        "worker" if "spawn_main" in line else "other"
                    )  # fmt: skip
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            peak[p.pid] = max(peak.get(p.pid, 0.0), rss / 2**20)
            seen.setdefault(p.pid, [time.perf_counter(), 0.0])[1] = time.perf_counter()
            busy[p.pid] = cpu.user + cpu.system  # CPU seconds so far (last sighting)
        time.sleep(every)
    _, err = proc.communicate()
    sec = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return {
        "seconds": sec,
        "driver_peak_mib": peak.get(proc.pid, float("nan")),
        "worker_peak_mib": [v for k, v in peak.items() if kind.get(k) == "worker"],
        "worker_seconds": [seen[k][1] - seen[k][0] for k in peak if kind.get(k) == "worker"],
        "worker_cpu_seconds": [busy[k] for k in peak if kind.get(k) == "worker"],
        "driver_cpu_seconds": busy.get(proc.pid, float("nan")),
        "stderr": err.decode(),
    }


def _same_model(shipped: Path, used: Path) -> bool:
    """Whether the workspace's model is the shipped one (its training record and data
    fingerprint: `--model-from` saves the model again, so the weights file is rewritten)."""
    import json

    a, b = (json.loads((p / "config.json").read_text()) for p in (shipped, used))
    keys = ("fit", "data_fingerprint", "params")
    return all(a.get(k) == b.get(k) for k in keys) and a.get("fit") is not None


def embed_main(argv: list[str]) -> None:
    import json
    import os
    import shutil
    import tempfile

    ap = argparse.ArgumentParser(description=EMBED_DOC.split("\n\n")[0])
    root = HERE.parent
    ap.add_argument("--datasets", default="xray,echo", help="comma-separated: xray, echo")
    ap.add_argument(
        "--engines",
        default="local,dask:1,dask:2",
        help="comma-separated: local, dask:N (a LocalCluster of N workers)",
    )
    ap.add_argument("--npz", type=Path, default=root / "data/pneumoniamnist/pneumoniamnist.npz")
    ap.add_argument("--copies", type=int, default=1, help="xray: write the PNGs K times over")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--tmp", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--csv", help="also write the table here")
    args = ap.parse_args(argv)

    tmp = None
    if args.tmp is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_dask_embed_")
        args.tmp = Path(tmp.name)
    models = root / "data" / "demo_models"
    sources: dict[str, tuple[Path, int, Path, bool]] = {}  # name: (source, n, model, seed ws)
    for name in args.datasets.split(","):
        if name == "xray":
            t = time.perf_counter()
            n = _png_folder(args.npz, args.tmp / "xray_png", args.copies)
            print(f"xray: {n:,} PNG files written in {time.perf_counter() - t:.1f}s", flush=True)
            sources[name] = (args.tmp / "xray_png", n, models / "xray", True)
        elif name == "echo":
            from pydicom import dcmread
            from pydicom.data import get_testdata_file

            path = get_testdata_file("color3d_jpeg_baseline.dcm")
            if path is None:
                raise SystemExit("pydicom-data's color3d_jpeg_baseline.dcm is missing")
            n = int(dcmread(path, stop_before_pixels=True).NumberOfFrames)
            sources[name] = (Path(str(path)), n, models / "echo", False)
        else:
            raise SystemExit(f"unknown dataset {name!r}: expected xray or echo")

    path = [str(root / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))  # this checkout's enrich
    rows = []
    for name, (source, n, model, seed_ws) in sources.items():
        for engine in args.engines.split(","):
            for rep in range(args.repeats):
                ws = args.tmp / f"ws_{name}_{engine.replace(':', '')}_{rep}"
                shutil.rmtree(ws, ignore_errors=True)
                if seed_ws:  # a workspace holding the shipped model (see EMBED_DOC)
                    from enrich.workspace import Workspace

                    shutil.copytree(model, Workspace.create(ws).model_dir)
                cmd = [sys.executable, "-m", "enrich", "embed", str(source), "-w", str(ws),
                       "--model-from", str(model), "--quiet"]  # fmt: skip
                if engine == "local":
                    cmd += ["--engine", "local"]
                elif engine.startswith("dask:"):
                    cmd += ["--engine", "dask", "--scheduler", f"local:{engine[5:]}"]
                else:
                    raise SystemExit(f"unknown engine {engine!r}: expected local or dask:N")
                load0 = os.getloadavg()[0]
                r = _run_sampled(cmd, env)
                load1 = os.getloadavg()[0]
                if not _same_model(model, ws / "model"):
                    raise SystemExit(f"{name} {engine}: a model was trained, not reused")
                workers = r["worker_peak_mib"]
                info = json.loads((ws / "embeddings.json").read_text())
                if info.get("n_new") != n or not info.get("model_reused"):
                    raise SystemExit(f"{name} {engine}: {info.get('n_new')} embedded, not {n}")
                row = {
                    "dataset": name,
                    "images": n,
                    "engine": engine,
                    "repeat": rep,
                    "seconds": r["seconds"],
                    "images_per_second": n / r["seconds"],
                    # embed()'s own time as embeddings.json records it: discovery, the
                    # cluster's start, reading, embedding, writing (not Python's start-up)
                    "embed_seconds": info["seconds"],
                    "embed_images_per_second": n / info["seconds"],
                    "threads": info.get("threads"),
                    "driver_peak_mib": r["driver_peak_mib"],
                    "worker_peak_mib": " / ".join(f"{w:,.0f}" for w in workers) or "-",
                    "worker_alive_seconds": " / ".join(f"{w:.1f}" for w in r["worker_seconds"]),
                    "worker_cpu_seconds": " / ".join(f"{w:.1f}" for w in r["worker_cpu_seconds"]),
                    "driver_cpu_seconds": r["driver_cpu_seconds"],
                    "load_before": load0,
                    "load_after": load1,
                }
                rows.append(row)
                print(f"{name} {engine}: {r['seconds']:.1f}s, {row['images_per_second']:,.0f} "
                      f"img/s (embed() {info['seconds']:.1f}s, "
                      f"{row['embed_images_per_second']:,.0f} img/s), "
                      f"driver {row['driver_peak_mib']:,.0f} MiB, workers "
                      f"{row['worker_peak_mib']} MiB (alive {row['worker_alive_seconds']} s, CPU "
                      f"{row['worker_cpu_seconds']} s; "
                      f"driver CPU {r['driver_cpu_seconds']:.1f} s), "
                      f"load {load0:.1f} -> {load1:.1f}",
                      flush=True)  # fmt: skip
                shutil.rmtree(ws, ignore_errors=True)

    print(f"\n{'dataset':8s} {'images':>7s} {'engine':8s} {'seconds':>8s} {'img/s':>7s} "
          f"{'driver MiB':>10s} {'worker MiB':>14s} {'load':>10s}")  # fmt: skip
    for r in rows:
        print(f"{r['dataset']:8s} {r['images']:7,d} {r['engine']:8s} {r['seconds']:8.1f} "
              f"{r['images_per_second']:7,.0f} {r['driver_peak_mib']:10,.0f} "
              f"{r['worker_peak_mib']:>14s} "
              f"{r['load_before']:4.1f}-{r['load_after']:4.1f}")  # fmt: skip
    if args.csv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    if sys.argv[1:2] == ["redundancy"]:
        redundancy_main(sys.argv[2:])
    elif sys.argv[1:2] == ["coreset"]:
        coreset_main(sys.argv[2:])
    elif sys.argv[1:2] == ["embed"]:
        embed_main(sys.argv[2:])
    else:
        main()

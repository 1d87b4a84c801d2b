"""Time and peak memory of every registered strategy ranking a whole set, beside ENRICH.

Each (strategy, N) runs in its own child process, so its peak RSS is its own; a first,
small child compiles the numba kernels (cached) outside the timed run. Data: the clustered,
video-like embeddings of ``bench_rank.py`` (d = 128), a random 2% initial set, full ranking.

    python benchmarks/bench_strategies.py                 # N = 10k and 100k
    python benchmarks/bench_strategies.py --n 10000       # one size
    python benchmarks/bench_strategies.py --strategies facility probcover

``facility+div`` is facility location with ``diversity=0.3`` (MedCAL-Bench's RepDiv mix); it
ranks only 2,000 images beyond the initial set, because each diversity pick costs a pass
over all N embeddings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _data import clustered  # noqa: E402

CASES = ["enrich", "random", "typiclust", "probcover", "facility", "facility+div", "enrich_dense"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(case: str, n: int) -> dict:
    from enrich.select import SELECTORS

    X = clustered(n, 128, seed=0)
    rss_data = peak_rss_mb()
    initial = np.random.default_rng(1).choice(n, size=max(1, round(0.02 * n)), replace=False)
    name, params, budget = case, {}, None
    if case == "facility+div":
        name, params, budget = "facility", {"diversity": 0.3}, min(2000, n - len(initial))
    t0 = time.perf_counter()
    sel = SELECTORS[name](seed=0, budget=budget, **params).fit(X, initial=initial)
    seconds = time.perf_counter() - t0
    info = sel.result_.info or {}
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_data_mb": rss_data,
        "array_mb": X.nbytes / 2**20,
        "n_ranked": len(sel.order_),
        "info": {k: v for k, v in info.items() if k in ("delta", "stages", "nnz", "k", "path")},
    }


def run_child(case: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--child", case, str(n)]
    env = dict(os.environ)
    subprocess.run([*cmd[:-1], "2000"], env=env, check=True, capture_output=True)  # compile
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--strategies", nargs="+", default=CASES, choices=CASES)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    rows = []
    for n in args.n:
        for case in args.strategies:
            r = run_child(case, n)
            rows.append((case, n, r))
            print(f"  done: {case} N={n:,}: {r['seconds']:.1f} s", file=sys.stderr, flush=True)
    print()
    print("| strategy | N | ranked | time | peak RSS | X size |")
    print("|---|---|---|---|---|---|")
    for case, n, r in rows:
        print(
            f"| {case} | {n:,} | {r['n_ranked']:,} | {r['seconds']:.1f} s | "
            f"{r['peak_rss_mb']:.0f} MB | {r['array_mb']:.0f} MB |"
        )
    print()
    for case, n, r in rows:
        if r["info"]:
            print(f"  {case} N={n:,}: {r['info']}")


if __name__ == "__main__":
    main()

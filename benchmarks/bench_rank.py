"""Speed and memory of `enrich rank` and `enrich redundancy`, beside the straightforward baseline.

Prints a table. Every case runs in its own child process, so its peak RSS is its own. As in
the issue's reference measurements, children run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
unset (numpy's full-speed kernels); pass --keep-env to leave them as they are.

    python benchmarks/bench_rank.py            # the full set (~10 minutes on 2 cores)
    python benchmarks/bench_rank.py --quick    # smaller N, a minute or two

The baseline is the textbook implementation: a running max vector ``s`` and one
``X @ x_new`` over all N rows per pick.
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

from _data import clustered, gaussian  # noqa: E402


def baseline(X: np.ndarray, initial: np.ndarray, k: int) -> np.ndarray:
    """Running max vector, one X @ x_new per pick over all rows (float32)."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    s = np.full(len(X), -np.inf, dtype=np.float32)
    for a in range(0, len(initial), 256):
        np.maximum(s, (Xn @ Xn[initial[a : a + 256]].T).max(axis=1), out=s)
    s[initial] = np.inf
    out = np.empty(k, dtype=np.int64)
    for t in range(k):
        j = int(np.argmin(s))
        out[t] = j
        np.maximum(s, Xn @ Xn[j], out=s)
        s[j] = np.inf
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(case: str, data: str, n: int, frac: float | None) -> dict:
    """Run one case in this process; return its figures."""
    make = clustered if data == "clustered" else gaussian
    X = make(n, 128, seed=0)
    rss_data = peak_rss_mb()
    rng = np.random.default_rng(1)
    initial = rng.choice(n, size=max(1, round(0.02 * n)), replace=False)
    k = n - len(initial) if frac is None else round(frac * n)
    t0 = time.perf_counter()
    info: dict = {}
    if case == "enrich":
        from enrich.select._greedy import GreedyState, greedy_order

        state = GreedyState()
        greedy_order(X, initial, k, state=state)
        info = vars(state)
    elif case == "baseline":
        baseline(X, initial, k)
    elif case == "redundancy":
        from enrich.redundancy import redundancy

        redundancy(X)
    else:
        raise SystemExit(f"unknown case {case}")
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "array_mb": X.nbytes / 2**20,
        "rss_after_data_mb": rss_data,
        "info": info,
    }


def run_child(args: argparse.Namespace, case: str, data: str, n: int, frac: float | None) -> dict:
    env = dict(os.environ)
    if not args.keep_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    cmd = [sys.executable, __file__, "--child", case, data, str(n), str(frac)]
    if case == "enrich":  # compile the numba kernels (cached) outside the timed child
        subprocess.run([*cmd[:-2], "3000", str(frac)], env=env, check=True, capture_output=True)
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def help_seconds() -> float:
    exe = Path(sys.executable).with_name("enrich")
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([str(exe), "--help"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
    return float(best)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller N (minutes, not tens)")
    p.add_argument("--keep-env", action="store_true", help="keep OPENBLAS_* variables")
    p.add_argument("--skip-million", action="store_true")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        case, data, n, frac = args.child
        print(json.dumps(child(case, data, int(n), None if frac == "None" else float(frac))))
        return

    N = 20_000 if args.quick else 100_000
    M = 200_000 if args.quick else 1_000_000
    rows = []

    def pair(title: str, data: str, n: int, frac: float | None) -> None:
        ours = run_child(args, "enrich", data, n, frac)
        base = run_child(args, "baseline", data, n, frac)
        rows.append((title, ours, base))
        print(f"  done: {title}", file=sys.stderr, flush=True)

    print(f"bench_rank: N={N:,}, d=128, initial set 2%", file=sys.stderr)
    pair(f"clustered, full ranking, N={N:,}", "clustered", N, None)
    pair(f"clustered, 10% of N={N:,}", "clustered", N, 0.10)
    pair(f"gaussian, 10% of N={N:,}", "gaussian", N, 0.10)
    pair(f"gaussian, full ranking, N={N // 4:,}", "gaussian", N // 4, None)
    million = None if args.skip_million else run_child(args, "enrich", "clustered", M, 0.10)
    red = run_child(args, "redundancy", "clustered", N, None)

    print()
    print("| case | enrich | baseline | ratio (enrich/baseline) | enrich peak RSS | X size |")
    print("|---|---|---|---|---|---|")
    for title, ours, base in rows:
        print(
            f"| {title} | {ours['seconds']:.2f} s | {base['seconds']:.2f} s | "
            f"{ours['seconds'] / base['seconds']:.3f}x | {ours['peak_rss_mb']:.0f} MB | "
            f"{ours['array_mb']:.0f} MB |"
        )
    if million:
        print(
            f"| clustered, 10% of N={M:,} | {million['seconds']:.1f} s | (not run) | – | "
            f"{million['peak_rss_mb']:.0f} MB | {million['array_mb']:.0f} MB |"
        )
    print()
    print(
        f"redundancy, clustered N={N:,}: {red['seconds']:.2f} s, "
        f"peak RSS {red['peak_rss_mb']:.0f} MB"
        f" (an N x N float32 matrix would be {N * N * 4 / 2**30:.1f} GiB)"
    )
    print(f"enrich --help: {help_seconds():.3f} s")
    print()
    print("engine telemetry (pruned/dense steps):")
    for title, ours, _ in rows:
        print(f"  {title}: {ours['info']}")
    if million:
        print(f"  10% of {M:,}: {million['info']}")


if __name__ == "__main__":
    main()

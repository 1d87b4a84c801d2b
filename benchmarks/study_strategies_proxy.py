"""A quick proxy study of the strategies on real images (PneumoniaMNIST), in minutes on a CPU.

Not the benchmark protocol (no CNNs; use ``enrich benchmark`` for that): embeddings are the
first 50 principal components of the mean-centred 28x28 pixels of the official train split;
each strategy grows a subset from the same random seed set (10 images, one per seed), and an
L2-regularised logistic regression trained on the subset's labels is scored by test AUC
(official test split). It answers two questions fast:

1. which strategies' subsets train a simple classifier better than random subsets of the same
   size (mean AUC over seeds; two-sided Mann-Whitney U vs random, uncorrected);
2. does the density guard remove ENRICH's outlier-first weakness: the share of each
   strategy's picks among the 10% least dense images (mean cosine similarity to the 20
   nearest neighbours), where random picks give about 10%.

    python benchmarks/study_strategies_proxy.py                # 10 seeds, ~5 minutes
    python benchmarks/study_strategies_proxy.py --seeds 3      # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.stats import mannwhitneyu

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
STRATEGIES = ["enrich", "enrich_dense", "typiclust", "probcover", "facility", "repdiv", "random"]


def embed(train: np.ndarray, test: np.ndarray, dims: int = 50) -> tuple[np.ndarray, np.ndarray]:
    A = train.reshape(len(train), -1).astype(np.float64) / 255.0
    B = test.reshape(len(test), -1).astype(np.float64) / 255.0
    mu = A.mean(axis=0)
    _, _, Vt = np.linalg.svd(A - mu, full_matrices=False)
    P = Vt[:dims].T
    return ((A - mu) @ P).astype(np.float32), ((B - mu) @ P).astype(np.float32)


def logistic_auc(
    Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray, lam: float = 1.0
) -> float:
    from enrich.evaluate.metrics import auc

    if len(np.unique(ytr)) < 2:
        return 0.5  # one class seen: no ranking at all
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0) + 1e-6
    A = np.hstack([(Xtr - mu) / sd, np.ones((len(Xtr), 1))])
    y = 2.0 * ytr - 1.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = y * (A @ w)
        value = np.logaddexp(0.0, -z).sum() + 0.5 * lam * (w[:-1] @ w[:-1])
        g = -(A.T @ (y * 0.5 * (1.0 - np.tanh(0.5 * z))))
        g[:-1] += lam * w[:-1]
        return float(value), g

    w = minimize(loss, np.zeros(A.shape[1]), jac=True, method="L-BFGS-B").x
    scores = np.hstack([(Xte - mu) / sd, np.ones((len(Xte), 1))]) @ w
    return float(auc(yte, scores))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80, 160])
    p.add_argument("--initial", type=int, default=10)
    p.add_argument(
        "--strategies",
        nargs="+",
        default=STRATEGIES,
        help="names or variants, e.g. 'probcover(n_clusters=2)'; random is always added",
    )
    args = p.parse_args()
    names = [s for s in args.strategies if s != "random"] + ["random"]

    from enrich.select import SELECTORS
    from enrich.select._knn import knn_cosine, unit_rows
    from enrich.select.enrich_dense import outliers_by_density

    d = np.load(DATA)
    Xtr, Xte = embed(d["train_images"], d["test_images"])
    ytr, yte = d["train_labels"].ravel(), d["test_labels"].ravel()
    n = len(Xtr)
    _, sims = knn_cosine(unit_rows(Xtr), 20)
    sparse_mask, _ = outliers_by_density(sims, 0.1)
    top = max(args.sizes)
    aucs: dict[tuple[str, int], list[float]] = {}
    sparse_share: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for seed in range(args.seeds):
        init = np.random.default_rng(1000 + seed).choice(n, args.initial, replace=False)
        for name in names:
            t0 = time.perf_counter()
            order = SELECTORS[name](seed=seed, budget=top - args.initial).fit(Xtr, initial=init)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            picks = order.order_[args.initial :]
            sparse_share.setdefault(name, []).append(float(sparse_mask[picks[:50]].mean()))
            for size in args.sizes:
                sub = order.order_[:size]
                aucs.setdefault((name, size), []).append(logistic_auc(Xtr[sub], ytr[sub], Xte, yte))
        print(f"  seed {seed} done", file=sys.stderr, flush=True)

    print(
        f"\nPneumoniaMNIST (N={n:,} train, {len(Xte)} test), PCA-50 of pixels, logistic "
        f"regression; {args.seeds} seeds, seed set {args.initial} images"
    )
    print(
        "\n| strategy | " + " | ".join(f"AUC @ {s}" for s in args.sizes) + " | "
        "picks among the 10% least dense (first 50) | selection s/run |"
    )
    print("|---|" + "---|" * (len(args.sizes) + 2))
    for name in names:
        cells = []
        for size in args.sizes:
            v = np.array(aucs[(name, size)])
            if name == "random":
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
                continue
            pval = mannwhitneyu(v, aucs[("random", size)], alternative="two-sided").pvalue
            cells.append(f"{v.mean():.3f} ± {v.std():.3f} (p={pval:.2g})")
        share = 100 * np.mean(sparse_share[name])
        print(
            f"| {name} | " + " | ".join(cells) + f" | {share:.0f}% | "
            f"{seconds[name] / args.seeds:.2f} |"
        )


if __name__ == "__main__":
    main()

"""The ENRICH-vs-random evaluation protocol, as the paper ran it (Chinn et al. 2023, Fig. 2).

1. Split train / test by patient (else clip, else subject), or use the manifest's ``split``.
2. For each initialization *i*: a seeded random initial subset of the training pool, the
   same for every strategy. Each strategy (``enrich``, ``random``, ...) grows it, seeing only
   the embeddings, into one full order; the subset of size *k* is the order's first *k*.
3. For each (strategy, initialization, size): *M* models with different training seeds
   (model *m* of initialization *i* has the same seed in every strategy and size, a paired
   design). Plus *initializations × M* models on the whole pool (strategy ``full``).
4. Each finished model is one row of ``results.csv``, appended and fsync'ed at once;
   re-running the same command skips what is done.

Outputs in the run folder: ``results.csv``, ``subsets.parquet`` (``strategy, init, size,
id, rank``), ``split.parquet`` (``id, split, label, patient_id, clip_id``), ``meta.json``
(config, every seed, versions, data fingerprint, sizes, warnings) and, when the report module
is installed, ``report.html``.

Examples
--------
>>> import numpy as np, tempfile
>>> from enrich.evaluate.data import BenchmarkData
>>> rng = np.random.default_rng(0)
>>> y = np.arange(60) % 2
>>> x = rng.normal(size=(60, 16, 16)) + y[:, None, None]
>>> data = BenchmarkData.from_arrays(x, labels=y, vectors=rng.normal(size=(60, 8)))
>>> cfg = {"initializations": 1, "models": 1, "initial": 10, "sizes": [20],
...        "model": {"input_size": 16, "block_inplanes": [4, 8, 8, 8], "layers": [1, 1, 1, 1]},
...        "train": {"epochs": 1, "patience": None, "batch_size": 16},
...        "split": {"test_fraction": 0.3}}
>>> run = run_benchmark(data, cfg, tempfile.mkdtemp(), progress=False, report=False)
>>> run.n_ok, run.n_failed  # enrich, random and the full reference
(3, 0)
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np

from enrich._atomic import atomic_path, write_json
from enrich.errors import EnrichError, first_few
from enrich.evaluate.config import ProtocolConfig, load_config
from enrich.evaluate.data import BenchmarkData, encode_labels, map_labels
from enrich.evaluate.results import ResultsLog
from enrich.evaluate.splits import split_manifest
from enrich.evaluate.stats import FULL

__all__ = [
    "FULL",
    "BenchmarkRun",
    "Job",
    "Terminated",
    "auto_workers",
    "derive_seed",
    "plan_sizes",
    "remove_stale_caches",
    "run_benchmark",
    "sigterm_raises",
]

RESULTS = "results.csv"
SUBSETS = "subsets.parquet"
SPLIT = "split.parquet"
META = "meta.json"


def derive_seed(seed: int, *path: int) -> int:
    """A 32-bit seed derived from the config seed and a path of integers (stable, recorded).

    >>> derive_seed(0, 3, 1, 2) == derive_seed(0, 3, 1, 2) != derive_seed(0, 3, 1, 3)
    True
    """
    return int(np.random.SeedSequence([seed, *path]).generate_state(1, np.uint32)[0])


def _strategy_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _count(value: float | int, n: int) -> int:
    return int(value) if isinstance(value, int) else max(1, round(float(value) * n))


def plan_sizes(
    sizes: tuple[float | int, ...], initial: float | int, n_pool: int
) -> tuple[int, list[int], list[str]]:
    """Resolve the initial count and subset sizes against the pool.

    Returns
    -------
    n_initial : int
    sizes : list of int
        Sorted, distinct, ``n_initial <= size < n_pool``.
    warnings : list of str
        One line per size skipped (larger than the pool, equal to it (that is the ``full``
        reference), or smaller than the initial subset).

    >>> plan_sizes((0.1, 0.5, 1.0, 500), 0.1, 100)[:2]
    (10, [10, 50])
    """
    n_init = _count(initial, n_pool)
    if n_init >= n_pool:
        raise EnrichError(
            f"initial={initial!r} is {n_init} images but the training pool has only {n_pool}; "
            "the initial subset must be smaller than the pool"
        )
    out: set[int] = set()
    warns: list[str] = []
    for s in sizes:
        k = _count(s, n_pool)
        if k > n_pool:
            warns.append(
                f"size {s!r} = {k} images is larger than the training pool ({n_pool}); skipped"
            )
        elif k == n_pool:
            warns.append(f"size {s!r} is the whole training pool; that is the 'full' reference")
        elif k < n_init:
            warns.append(
                f"size {s!r} = {k} images is smaller than the initial subset ({n_init}); skipped"
            )
        else:
            out.add(k)
    return n_init, sorted(out), warns


@dataclass(frozen=True)
class Job:
    """One model to train: its identity, seed and training rows (positions in the pool)."""

    strategy: str
    init: int
    size: int
    fraction: float
    model: int
    seed: int
    train: np.ndarray = field(repr=False)

    @property
    def key(self) -> tuple[str, int, int, int]:
        return (self.strategy, self.init, self.size, self.model)


@dataclass(frozen=True)
class BenchmarkRun:
    """What a run did.

    Attributes
    ----------
    out : Path
        The run folder.
    n_ok, n_failed : int
        Rows in ``results.csv`` by status (this and earlier invocations).
    n_trained : int
        Models trained by this invocation (the rest were already done).
    report : Path or None
        ``report.html`` when it was written.
    seconds : float
        Wall time of this invocation.
    """

    out: Path
    n_ok: int
    n_failed: int
    n_trained: int
    report: Path | None
    seconds: float


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    from importlib import metadata

    from enrich import __version__

    # This package's own version, not metadata.version("enrich"): the distribution is
    # enrich-imaging, and PyPI's unrelated `enrich` may be what that name finds.
    out = {"python": platform.python_version(), "enrich": __version__}
    for pkg in ("numpy", "scipy", "pandas", "numba", "torch", "monai"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ------------------------------------------------------------------------------ the runner


def run_benchmark(
    data: BenchmarkData | str | os.PathLike[str],
    config: ProtocolConfig | dict[str, Any] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    workers: int | str = 1,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    report: bool = True,
    retry_failed: bool = False,
    log: Callable[[str], None] = _stderr,
) -> BenchmarkRun:
    """Run (or resume) the ENRICH-vs-random protocol and write its tables.

    Parameters
    ----------
    data : BenchmarkData or path
        A workspace folder (manifest + embeddings), or in-memory data.
    config : ProtocolConfig, dict, path, or ``"quick"`` / ``"paper"``
    out : path
        The run folder. When it already holds a run of the same config and data, the run is
        resumed: models already in ``results.csv`` are skipped.
    workers : int or "auto"
        Models trained in parallel processes (spawned); ``"auto"``: :func:`auto_workers`
        (one per core for runs of at least 32 models, else in-process). The results do not
        depend on it: every model has its own seed (from the config seed, its initialization
        and its index, not from the worker that runs it) and trains with ``train.threads``
        torch threads and deterministic algorithms (:func:`enrich.evaluate.tasks.deterministic`).
    device : {"auto", "cpu", "cuda"}
        ``auto`` uses a GPU when torch sees one.
    threads : int, optional
        torch threads per model: overrides the config's ``train.threads`` (default 1), and
        is recorded with it (a different value changes the results' last digits).
    progress : bool
        A tqdm bar on stderr.
    report : bool
        Write ``report.html`` at the end when :mod:`enrich.report.html` is available.
    log : callable
        Where one-line notes and warnings go (stderr).
    retry_failed : bool
        When resuming, train the models recorded as failed again (their rows are replaced).

    Returns
    -------
    BenchmarkRun

    Raises
    ------
    EnrichError
        No labels (or masks), a single class, a test set without one of the classes, an
        ``out`` folder holding a different run, and other bad input.
    LockedError
        Another process is running a benchmark in `out` (``OUT/.enrich.lock`` names it):
        two runs on one folder would both train every model and append duplicate rows.
    """
    from enrich._lock import folder_lock

    with folder_lock(out):
        return _run_benchmark(
            data,
            config,
            out,
            workers=workers,
            device=device,
            threads=threads,
            progress=progress,
            report=report,
            retry_failed=retry_failed,
            log=log,
        )


def _run_benchmark(
    data: BenchmarkData | str | os.PathLike[str],
    config: ProtocolConfig | dict[str, Any] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    workers: int | str = 1,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    report: bool = True,
    retry_failed: bool = False,
    log: Callable[[str], None] = _stderr,
) -> BenchmarkRun:
    """:func:`run_benchmark` with the run folder locked."""
    from enrich.embeddings import check_vectors, fingerprint
    from enrich.evaluate.tasks import resolve_device

    t_start = time.perf_counter()
    cfg = load_config(config)
    if threads is not None:
        import dataclasses

        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise EnrichError(f"threads={threads!r}: expected an integer >= 1")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))
    if workers != "auto" and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise EnrichError(f"--workers {workers!r}: expected an integer >= 1 or auto")
    dev = resolve_device(device)
    if dev.startswith("cuda"):  # deterministic cuBLAS; must be set before CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if not isinstance(data, BenchmarkData):
        data = BenchmarkData.from_workspace(data)
    out = Path(out)
    warns: list[str] = []

    def warn(msg: str) -> None:
        warns.append(msg)
        log(f"warning: {msg}")

    vectors = check_vectors(data.vectors, ids=data.ids, name="embeddings")
    fp = fingerprint(vectors, data.ids)
    man = data.manifest.reset_index(drop=True)

    # -- targets: labels are read here, and used only for training and scoring ------------
    if cfg.task == "classification":
        if "label" not in man.columns or man["label"].isna().all():
            raise EnrichError(
                f"{data.source}: no labels: the manifest's 'label' column is "
                f"{'missing' if 'label' not in man.columns else 'empty'}; classification "
                "needs a label per image (add it when embedding: `enrich embed "
                "--labels-from-folder` for class sub-folders, or a CSV manifest with a "
                "'label' column)"
            )
        labels = man["label"].tolist()
        if cfg.label_map:
            labels = map_labels(labels, cfg.label_map, source=data.source)
        codes, classes = encode_labels(labels)
        keep = np.flatnonzero(codes >= 0)
        if len(keep) < len(man):
            warn(f"{len(man) - len(keep)} image(s) without a label are left out of the benchmark")
        if len(classes) < 2:
            raise EnrichError(
                f"{data.source}: every labelled image has the class {classes[0]!r}; "
                "classification needs at least two classes"
            )
    else:
        if not data.has_masks():
            raise EnrichError(
                f"{data.source}: segmentation needs a mask per image: add a manifest column "
                "'mask_path', or use .npz sources holding a 'masks' array"
            )
        codes, classes = np.zeros(len(man), dtype=np.int64), []
        keep = np.arange(len(man))

    # -- split -------------------------------------------------------------------------------
    sp = cfg.split
    early = cfg.train.patience is not None
    split = split_manifest(
        man.iloc[keep].reset_index(drop=True),
        seed=cfg.seed,
        column=sp.column,
        val=sp.val if early or sp.val != "validation" else "drop",
        group_by=sp.group_by,
        test_fraction=sp.test_fraction,
        validation_fraction=sp.validation_fraction if early else 0.0,
        labels=codes[keep] if cfg.task == "classification" else None,
    )
    pool = keep[split.indices("train")]
    val = keep[split.indices("val")]
    test = keep[split.indices("test")]
    if early and len(val) == 0:
        warn("no validation images: early stopping is off, every model trains all epochs")
    if cfg.task == "classification":
        for k, name in enumerate(classes):
            if not (codes[test] == k).any():
                raise EnrichError(
                    f"the test set ({len(test)} images) has no image of class {name!r}; AUC is "
                    "undefined. Give a split column with every class in test, or more data"
                )
        pool_classes = np.unique(codes[pool])
        if len(pool_classes) < 2:
            raise EnrichError(
                f"the training pool ({len(pool)} images) holds only class "
                f"{classes[int(pool_classes[0])]!r}; need at least two classes to train"
            )
    n_pool = len(pool)
    n_init, sizes, size_warns = plan_sizes(tuple(cfg.sizes), cfg.initial, n_pool)
    for w in size_warns:
        warn(w)
    if not sizes and not cfg.full:
        raise EnrichError("no subset size fits the training pool and full: false; nothing to run")
    from enrich.select import SELECTORS

    unknown = [s for s in cfg.strategies if s not in SELECTORS]
    if unknown:
        raise EnrichError(
            f"strategies: unknown {first_few(unknown)}; registered: {', '.join(SELECTORS)}"
        )

    # -- the run folder: a fresh one, or the same run to resume ------------------------------
    identity = {
        "config": cfg.to_dict(),
        "fingerprint": fp,
        "n_train": n_pool,
        "n_val": len(val),
        "n_test": len(test),
        "split_fingerprint": _split_fingerprint(data.ids, pool, val, test),
    }
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / META
    meta_old: dict[str, Any] | None = None
    if meta_path.exists():
        import json

        try:
            meta_old = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            meta_old = None
        if not meta_old or meta_old.get("identity") != identity:
            diff = (
                "unreadable meta.json"
                if not meta_old
                else ", ".join(
                    k for k in identity if (meta_old.get("identity") or {}).get(k) != identity[k]
                )
            )
            raise EnrichError(
                f"{out} holds a benchmark run with a different {diff}; choose a new --out "
                "(or delete that folder) to start a new run"
            )
    elif (out / RESULTS).exists():
        raise EnrichError(f"{out} has a results.csv but no meta.json; choose a new --out")

    seeds: dict[str, Any] = {
        "seed": cfg.seed,
        "split": {"seed_sequence": [cfg.seed, 0xB17], "attempt": split.attempt},
        "initial": {str(i): derive_seed(cfg.seed, 1, i) for i in range(cfg.initializations)},
        "selector": {
            s: {
                str(i): derive_seed(cfg.seed, 2, i, _strategy_key(s))
                for i in range(cfg.initializations)
            }
            for s in cfg.strategies
        },
        "model": {
            str(i): {str(m): derive_seed(cfg.seed, 3, i, m) for m in range(cfg.models)}
            for i in range(cfg.initializations)
        },
    }
    meta: dict[str, Any] = {
        "identity": identity,
        "config": cfg.to_dict(),
        "task": cfg.task,
        "metric": _metric_name(cfg),
        "seconds_per_image": cfg.labeling_seconds,
        "n_train": n_pool,
        "n_val": len(val),
        "n_test": len(test),
        "n_initial": n_init,
        "sizes": sizes,
        "fractions": [s / n_pool for s in sizes],
        "strategies": list(cfg.strategies),
        "classes": classes,
        "fingerprint": fp,
        "embeddings": dict(data.meta),
        "workspace": data.source,
        "split": {"source": split.source, "group_column": split.group_column},
        "seeds": seeds,
        "versions": _versions(),
        "device": dev,
        "workers": workers,
        # results do not depend on workers; they do on these (tasks.deterministic)
        "determinism": {
            "threads_per_model": cfg.train.threads,
            "torch_deterministic_algorithms": True,
            "cudnn_deterministic": True,
        },
        "threads": cfg.train.threads,  # torch threads per model
        "started": (meta_old or {}).get("started") or _now(),
        "finished": None,
        "warnings": warns,
    }
    write_json(meta_path, meta)
    remove_stale_caches(out, log)
    _write_split(out / SPLIT, man, data.ids, pool, val, test)

    # -- subsets: one full order per (strategy, initialization) -----------------------------
    subsets = _load_or_make_subsets(
        out / SUBSETS, cfg, vectors[pool], data.ids[pool], n_init, sizes, seeds, log
    )

    # -- jobs --------------------------------------------------------------------------------
    jobs = list(_jobs(cfg, subsets, sizes, n_pool, seeds))
    results = ResultsLog(out / RESULTS)
    if results.n_repaired:
        warn("results.csv ended in a torn line (an interrupted write); it was cut off")
    if retry_failed:
        n_dropped = results.drop_failed()
        if n_dropped:
            log(f"retrying {n_dropped} failed model(s)")
    done = results.done()
    todo = [j for j in jobs if j.key not in done]
    if done:
        log(f"resuming {out}: {len(jobs) - len(todo)} of {len(jobs)} models already done")

    if workers == "auto":
        workers = auto_workers(len(todo), cfg.train.threads, dev)
        meta["workers"] = f"auto ({workers})"
    assert isinstance(workers, int)
    n_trained = 0
    if todo:
        arrays = _prepare_arrays(data, cfg, pool, val, test, codes, log)
        log(
            f"training {len(todo)} models ({cfg.task}, {len(cfg.strategies)} strategies × "
            f"{cfg.initializations} inits × {len(sizes)} sizes × {cfg.models} models"
            f"{' + full' if cfg.full else ''}) on {dev} with {workers} worker(s)"
        )
        bar = _progress(len(todo), progress)
        rows = _execute(todo, arrays, cfg, dev, workers, cfg.train.threads, out)
        try:
            for row in rows:
                results.append(row)
                n_trained += 1
                if row["status"] != "ok":
                    log(
                        f"warning: model {row['strategy']}/init {row['init']}/size "
                        f"{row['size']}/model {row['model']} failed: {row['error']}"
                    )
                bar.update(1)
        finally:
            rows.close()  # an interrupt here stops the workers now, not at garbage collection
            bar.close()

    n_ok, n_failed = _count_status(out / RESULTS)
    meta["finished"] = _now()
    meta["warnings"] = warns
    write_json(meta_path, meta)
    report_path = _write_report(out, log) if report else None
    return BenchmarkRun(out, n_ok, n_failed, n_trained, report_path, time.perf_counter() - t_start)


def auto_workers(n_models: int, threads: int = 1, device: str = "cpu") -> int:
    """How many worker processes ``workers="auto"`` starts.

    One per usable CPU core (divided by the threads each model uses), at most 8; 1 on a GPU
    (one process keeps it busy) and for runs of fewer than 32 models, where starting the
    processes (each imports torch and MONAI, seconds on a busy machine) costs more than it
    saves. The results are the same for any number of workers.

    >>> auto_workers(10), auto_workers(100, device="cuda")
    (1, 1)
    """
    if device.startswith("cuda") or n_models < 32:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores // max(1, threads), 8, n_models))


def _split_fingerprint(ids: np.ndarray, pool: np.ndarray, val: np.ndarray, test: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256()
    for side, rows in (("train", pool), ("val", val), ("test", test)):
        h.update(side.encode() + b"\0" + "\0".join(ids[rows].astype(str).tolist()).encode())
    return "sha256:" + h.hexdigest()[:16]


def _metric_name(cfg: ProtocolConfig) -> str:
    return "auc" if cfg.task == "classification" else "jaccard"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_split(
    path: Path, man: Any, ids: np.ndarray, pool: np.ndarray, val: np.ndarray, test: np.ndarray
) -> None:
    import pandas as pd

    rows = np.concatenate([pool, val, test])
    side = np.array(["train"] * len(pool) + ["val"] * len(val) + ["test"] * len(test))
    df = pd.DataFrame({"id": ids[rows].astype(str), "split": side})
    for col in ("label", "patient_id", "clip_id", "subject_id"):
        if col in man.columns:
            df[col] = man[col].iloc[rows].astype("string").to_numpy()
    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


def _load_or_make_subsets(
    path: Path,
    cfg: ProtocolConfig,
    X: np.ndarray,
    pool_ids: np.ndarray,
    n_init: int,
    sizes: list[int],
    seeds: dict[str, Any],
    log: Callable[[str], None],
) -> dict[tuple[str, int], np.ndarray]:
    """(strategy, init) → the order's first ``max(sizes)`` pool positions.

    Written once to ``subsets.parquet``; a resumed run reads them back.
    """
    import pandas as pd

    n_pool = len(X)
    top = max(sizes) if sizes else n_init
    if path.exists():
        df = pd.read_parquet(path)
        lookup = {k: i for i, k in enumerate(pool_ids.tolist())}
        orders: dict[tuple[str, int], np.ndarray] = {}
        for key, grp in df.groupby(["strategy", "init"], sort=False):
            s, i = cast(tuple[Any, Any], key)
            largest = grp[grp["size"] == grp["size"].max()].sort_values("rank")
            orders[(str(s), int(i))] = np.array([lookup[x] for x in largest["id"]], np.int64)
        wanted = {(s, i) for s in cfg.strategies for i in range(cfg.initializations)}
        if set(orders) == wanted and all(len(o) == top for o in orders.values()):
            return orders
        log("warning: subsets.parquet does not match this config; recomputing it")

    from enrich.select import SELECTORS

    orders = {}
    for i in range(cfg.initializations):
        rng = np.random.default_rng(seeds["initial"][str(i)])
        initial = np.sort(rng.choice(n_pool, size=n_init, replace=False)).astype(np.int64)
        for s in cfg.strategies:
            t0 = time.perf_counter()
            sel = SELECTORS[s](seed=seeds["selector"][s][str(i)], budget=top - n_init)
            sel.fit(X, initial=initial)
            order = np.asarray(sel.order_, dtype=np.int64)[:top]
            if len(order) < top or set(order[:n_init].tolist()) != set(initial.tolist()):
                raise EnrichError(
                    f"strategy {s!r} did not return the initial subset first followed by "
                    f"{top - n_init} picks"
                )
            if len(np.unique(order)) != len(order):
                raise EnrichError(f"strategy {s!r} picked an image twice")
            orders[(s, i)] = order
            log(f"selected {top} images with {s} (init {i}) in {time.perf_counter() - t0:.1f} s")
    # With no sizes (only the full reference) the initial subsets are kept for the record.
    frames = [
        pd.DataFrame(
            {
                "strategy": s,
                "init": i,
                "size": k,
                "id": pool_ids[order[:k]].astype(str),
                "rank": np.arange(k, dtype=np.int64),
            }
        )
        for (s, i), order in orders.items()
        for k in (sizes or [n_init])
    ]
    df = pd.concat(frames, ignore_index=True)
    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)
    return orders


def _jobs(
    cfg: ProtocolConfig,
    orders: dict[tuple[str, int], np.ndarray],
    sizes: list[int],
    n_pool: int,
    seeds: dict[str, Any],
) -> Iterator[Job]:
    """Model-major order, so a partial run already holds comparable points."""
    everything = np.arange(n_pool, dtype=np.int64)
    for m in range(cfg.models):
        for i in range(cfg.initializations):
            seed = seeds["model"][str(i)][str(m)]
            for k in sizes:
                for s in cfg.strategies:
                    yield Job(s, i, k, k / n_pool, m, seed, orders[(s, i)][:k])
            if cfg.full:
                yield Job(FULL, i, n_pool, 1.0, m, seed, everything)


# ------------------------------------------------------------------------------ pixels


@dataclass
class _Arrays:
    """Model inputs, rows ordered pool, then validation, then test."""

    x: np.ndarray  # (n, S, S) float32, standardised with the pool's mean and std
    y: np.ndarray  # (n,) int64 labels, or (n, S, S) int64 masks
    n_pool: int
    n_val: int
    n_classes: int


def _prepare_arrays(
    data: BenchmarkData,
    cfg: ProtocolConfig,
    pool: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    codes: np.ndarray,
    log: Callable[[str], None],
) -> _Arrays:
    t0 = time.perf_counter()
    rows = np.concatenate([pool, val, test])
    size = cfg.model.input_size
    x = data.load_images(rows, size=size, preprocess=cfg.preprocess)
    if x.ndim != 3 or x.shape[1:] != (size, size):
        raise EnrichError(f"images were read with shape {x.shape}; expected (n, {size}, {size})")
    mean = float(x[: len(pool)].mean())
    std = float(x[: len(pool)].std()) or 1.0
    x = ((x - mean) / std).astype(np.float32)
    if cfg.task == "classification":
        y = codes[rows].astype(np.int64)
        n_classes = int(codes.max()) + 1
    else:
        crop = cfg.preprocess.get("crop", "center")
        y = data.load_masks(rows, size=size, crop=crop)
        n_classes = cfg.n_classes or max(2, int(y.max()) + 1)
        if y.max() >= n_classes or y.min() < 0:
            raise EnrichError(
                f"masks hold values {int(y.min())}..{int(y.max())}; expected class indices "
                f"0..{n_classes - 1} (n_classes)"
            )
        test_masks = y[len(pool) + len(val) :]
        if not (test_masks > 0).any():
            raise EnrichError(
                f"the test set ({len(test)} images) has no foreground pixel in its masks; "
                "the Jaccard index is undefined"
            )
    log(f"read {len(rows)} images at {size}×{size} in {time.perf_counter() - t0:.1f} s")
    return _Arrays(x, y, len(pool), len(val), n_classes)


# ------------------------------------------------------------------------------ execution


def _train_one(job: Job, arrays: _Arrays, cfg: ProtocolConfig, device: str) -> dict[str, Any]:
    """Train and score one model; any failure becomes a row with status=failed."""
    from enrich.evaluate.tasks import Diverged, train_and_score

    t0, c0 = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {
        "strategy": job.strategy,
        "init": job.init,
        "size": job.size,
        "fraction": round(job.fraction, 6),
        "model": job.model,
        "seed": job.seed,
        "metric": _metric_name(cfg),
        "device": device,
    }
    p, v = arrays.n_pool, arrays.n_val
    val_x = arrays.x[p : p + v] if v else None
    val_y = arrays.y[p : p + v] if v else None
    try:
        res = train_and_score(
            cfg,
            arrays.x[job.train],
            arrays.y[job.train],
            val_x,
            val_y,
            arrays.x[p + v :],
            arrays.y[p + v :],
            n_classes=arrays.n_classes,
            seed=job.seed,
            device=device,
        )
    except Diverged as exc:
        row.update(value=math.nan, status="failed", error=f"diverged: {exc}")
    except (EnrichError, RuntimeError, ValueError, MemoryError, FloatingPointError) as exc:
        row.update(value=math.nan, status="failed", error=f"{type(exc).__name__}: {exc}")
    else:
        row.update(
            value=res.value,
            status="ok",
            error="",
            epochs=res.epochs,
            best_epoch=res.best_epoch,
            train_loss=res.train_loss,
            val_loss=res.val_loss,
        )
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    row["cpu_s"] = round(time.process_time() - c0, 3)
    return row


_WORKER: dict[str, Any] = {}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int, *, poll_s: float = 1.0) -> None:
    """Make this worker process exit when `parent` (the benchmark) dies, however it dies.

    A worker blocked waiting for jobs would otherwise outlive a parent killed by SIGKILL
    (``timeout -s KILL``, SLURM, the OOM killer), holding its memory forever. On Linux the
    kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); everywhere, a
    daemon thread exits the process when the parent pid changes (re-parenting).
    """
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog remains
            pass
    if os.getppid() != parent:  # it died before the guard was in place
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watchdog, name="enrich-parent-watchdog", daemon=True).start()


def _worker_init(
    cache: str,
    cfg_dict: dict[str, Any],
    meta: dict[str, int],
    device: str,
    threads: int,
    parent: int,
) -> None:
    import signal

    _die_with_parent(parent)
    # Ctrl-C reaches the whole process group: the parent stops the workers itself, without
    # a KeyboardInterrupt traceback from each of them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(max(1, threads))
    _WORKER["arrays"] = _Arrays(
        np.load(os.path.join(cache, "x.npy"), mmap_mode="r"),
        np.load(os.path.join(cache, "y.npy"), mmap_mode="r"),
        meta["n_pool"],
        meta["n_val"],
        meta["n_classes"],
    )
    _WORKER["cfg"] = load_config(cfg_dict)
    _WORKER["device"] = device


def _worker_run(job: Job) -> dict[str, Any]:
    return _train_one(job, _WORKER["arrays"], _WORKER["cfg"], _WORKER["device"])


def _execute(
    todo: list[Job],
    arrays: _Arrays,
    cfg: ProtocolConfig,
    device: str,
    workers: int,
    threads: int | None,
    out: Path,
) -> Generator[dict[str, Any], None, None]:
    if workers == 1 or len(todo) == 1:
        for job in todo:
            yield _train_one(job, arrays, cfg, device)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    per_worker = threads or 1  # each model sets its own (train.threads) in any case
    # The owner's pid is in the name, so a later run can tell a killed run's cache.
    cache = tempfile.mkdtemp(prefix=f"{_CACHE_PREFIX}{os.getpid()}-", dir=out)
    try:
        np.save(os.path.join(cache, "x.npy"), arrays.x)
        np.save(os.path.join(cache, "y.npy"), arrays.y)
        meta = {"n_pool": arrays.n_pool, "n_val": arrays.n_val, "n_classes": arrays.n_classes}
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(cache, cfg.to_dict(), meta, device, per_worker, os.getpid()),
        )
        try:
            pending = set()
            it = iter(todo)
            # Keep the queue short so that an interrupt loses little queued work.
            for job in it:
                pending.add(pool.submit(_worker_run, job))
                if len(pending) >= 2 * workers:
                    break
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        yield fut.result()
                        nxt = next(it, None)
                        if nxt is not None:
                            pending.add(pool.submit(_worker_run, nxt))
            except BrokenProcessPool:
                raise EnrichError(
                    "a worker process died (out of memory?); finished models are saved, "
                    "rerun the same command to resume (try fewer --workers)"
                ) from None
            finally:
                for fut in pending:
                    fut.cancel()
        except BaseException:  # SIGTERM, Ctrl-C, the consumer closing us: stop the workers now
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _stop_workers(pool: Any) -> None:
    """Kill the pool's worker processes at once (shutdown would wait for running models)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(timeout=10)


_CACHE_PREFIX = ".cache-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:  # pragma: no cover - e.g. no such pid on Windows
        return False
    return True


def remove_stale_caches(out: str | os.PathLike[str], log: Callable[[str], None] = _stderr) -> int:
    """Remove ``.cache-<pid>-*`` folders in `out` left by a killed run (their pid is gone).

    A folder of an older version (no pid in its name) is stale too. Returns how many were
    removed. Folders of a live process, this one included, are kept.
    """
    import re

    removed = 0
    for path in Path(out).glob(f"{_CACHE_PREFIX}*"):
        if not path.is_dir() or path.is_symlink():
            continue
        m = re.match(rf"^{re.escape(_CACHE_PREFIX)}(\d+)-", path.name)
        if m and (int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1)))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += not path.exists()
    if removed:
        log(f"removed {removed} cache folder(s) left in {out} by an interrupted run")
    return removed


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM while :func:`sigterm_raises` is active.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` (a model
    recorded as failed) swallows it.
    """


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM (``timeout``, SLURM, ``kill``) into :class:`Terminated` in the main thread.

    The benchmark then stops its workers, removes its cache and leaves ``results.csv`` whole,
    as after Ctrl-C. Only the first SIGTERM raises; more during the clean-up are ignored
    (SIGKILL still works). Does nothing outside the main thread.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from enrich._progress import Progress

    # A bar on a terminal, plain lines in a log every few seconds, even within a slow model.
    return Progress(total, "benchmark", "models")


def _count_status(path: Path) -> tuple[int, int]:
    import csv

    ok = failed = 0
    with open(path, newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            if rec.get("status") == "ok":
                ok += 1
            elif rec.get("status") == "failed":
                failed += 1
    return ok, failed


def _write_report(out: Path, log: Callable[[str], None]) -> Path | None:
    try:
        from enrich.report.html import write_report
    except ImportError:
        log(
            "note: the HTML report module (enrich.report.html) is not available; "
            f"results are in {out / RESULTS}"
        )
        return None
    try:
        result = write_report(out)
    except EnrichError as exc:
        log(f"warning: could not write the report: {exc}")
        return None
    except Exception as exc:  # a report bug must not hide finished results
        log(
            f"warning: the report failed ({type(exc).__name__}: {exc}); the results are "
            f"complete, retry with `enrich report {out}`"
        )
        return None
    path = Path(result) if isinstance(result, (str, os.PathLike)) else out / "report.html"
    return path if path.exists() else None

"""Embedding as a map over image shards on Dask workers.

Training stays where it is (at most 5,000 images, in the driver's process or on its GPU); the
trained model is saved in the workspace as usual. Then the images still to embed are cut into
shards of whole files (a video's or a multi-frame DICOM's frames stay together, in manifest
order), and each worker reads and preprocesses its own shard's files, loads the saved model
from the workspace folder (so the workspace must be on a file system the workers share) and
embeds them. The driver puts the shards back in manifest order.

A worker that dies loses only the shard it was working on: Dask runs that task again on
another worker, and the driver keeps exactly one result per shard, so each skipped file is
listed once in ``skipped.csv``. The workspace is written by the driver, atomically, as in-process.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from distributed import Client

    from enrich.distributed import SchedulerSpec
    from enrich.embed.base import Embedder
    from enrich.io import SkippedImages
    from enrich.preprocess import Preprocess

__all__ = ["embed_shards", "file_shards", "shard_map_on"]

# A task that raises (not a worker that dies, which Dask always retries) is tried again this
# often, e.g. for a flaky network file system.
TASK_RETRIES = 2


def file_shards(manifest: pd.DataFrame, n_shards: int) -> list[np.ndarray]:
    """Row positions of `manifest`, cut into at most `n_shards` contiguous runs of whole files.

    >>> import pandas as pd
    >>> m = pd.DataFrame({"source_path": ["a", "a", "b", "c", "c", "c"]})
    >>> [s.tolist() for s in file_shards(m, 2)]
    [[0, 1, 2], [3, 4, 5]]
    """
    paths = manifest["source_path"].to_numpy(dtype=str)
    if len(paths) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, paths[1:] != paths[:-1]])  # first row of each file run
    groups = np.array_split(np.arange(len(starts)), max(1, min(n_shards, len(starts))))
    ends = np.r_[starts[1:], len(paths)]
    return [np.arange(starts[g[0]], ends[g[-1]]) for g in groups if len(g)]


def _embed_shard(
    rows: pd.DataFrame,
    preprocess: Preprocess,
    read_options: dict[str, Any],
    model_dir: str,
    embedder: str,
    runtime: dict[str, Any],
    batch_size: int,
) -> tuple[list[str], np.ndarray, list[SkippedImages]]:
    """Worker task: read, preprocess and embed one shard with the saved model."""
    from enrich.embed.api import read_batches
    from enrich.embed.registry import get_embedder_class

    model = get_embedder_class(embedder).load(model_dir, **runtime)
    ids: list[str] = []
    skips: list[SkippedImages] = []

    def batches() -> Any:
        for batch_ids, images in read_batches(
            rows, preprocess, batch_size=batch_size, read_options=read_options, skipped=skips
        ):
            ids.extend(batch_ids)
            yield images

    vectors = model.transform_batches(batches(), n=len(rows))
    return ids, np.array(vectors, dtype=np.float32), skips


def embed_shards(
    rows: pd.DataFrame,
    preprocess: Preprocess,
    read_options: dict[str, Any],
    model_dir: str | os.PathLike[str],
    cls: type[Embedder],
    batch_size: int,
    *,
    client: Client,
    device: str = "auto",
    n_shards: int | None = None,
) -> tuple[list[str], np.ndarray, list[SkippedImages]]:
    """Embed `rows` (manifest rows) on the workers; ids, vectors (n, d) and skipped files.

    The hook :func:`enrich.embed.api.embed_sources` calls (``shard_map``) with
    ``--engine dask``. Shards default to four per worker.
    """
    from enrich.distributed._client import n_workers
    from enrich.embed.api import _runtime_options

    runtime = _runtime_options(cls, device=device, progress=False)
    shards = file_shards(rows, n_shards or 4 * n_workers(client))
    futures = [
        client.submit(
            _embed_shard,
            rows.iloc[s].reset_index(drop=True),
            preprocess,
            dict(read_options),
            str(model_dir),
            cls.name,
            runtime,
            batch_size,
            pure=False,
            retries=TASK_RETRIES,
        )
        for s in shards
    ]
    results = client.gather(futures)  # one result per shard, in manifest order
    ids = [i for r in results for i in r[0]]
    skips = [s for r in results for s in r[2]]
    dim = cls.load(model_dir).dim if not results else results[0][1].shape[1]
    vectors = (
        np.concatenate([r[1] for r in results]) if results else np.empty((0, dim), dtype=np.float32)
    )
    return ids, vectors, skips


def shard_map_on(spec: SchedulerSpec, *, device: str = "auto") -> Callable[..., Any]:
    """The ``shard_map`` for :func:`enrich.embed.api.embed_sources` on the cluster `spec`.

    The cluster is joined (or started) when the embedding step begins, after training, and
    closed when it ends; an address is tried once now, so that an unreachable scheduler is
    reported before any training.
    """
    from enrich.distributed._client import connect

    if spec.kind == "address":
        with connect(spec):
            pass

    def shard_map(*args: Any) -> tuple[list[str], np.ndarray, list[SkippedImages]]:
        with connect(spec) as client:
            return embed_shards(*args, client=client, device=device)

    return shard_map

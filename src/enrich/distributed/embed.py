"""Embedding as a map over image shards on Dask workers.

Training stays where it is (at most 5,000 images, in the driver's process or on its GPU); the
trained model is saved in the workspace as usual. Then the images still to embed are cut into
shards of whole files (a video's or a multi-frame DICOM's frames stay together, in manifest
order), and each worker reads and preprocesses its own shard's files, loads the saved model
from the workspace folder (so the workspace must be on a file system the workers share) and
embeds them. The driver puts the shards back in manifest order.

A worker that dies loses only the shard it was working on: Dask runs that task again on
another worker, and the driver keeps exactly one result per shard, so each skipped file is
listed once in ``skipped.csv``.

**The vectors never pass through the driver.** Each shard task writes its vectors to its own
array in a staging Zarr group in the workspace (``.embeddings.zarr.parts-PID/``) and returns
only its ids and skipped files. Once every shard is done, the final store is laid out in
manifest order under a temporary name (``.embeddings.zarr.tmp-PID/``); each copy task owns a
run of whole chunks of it and fills them from the shards' arrays, so no two tasks write one
chunk. The driver writes only the ids and the attributes (the fingerprint is streamed chunk
by chunk), renames the store to ``embeddings.zarr`` and removes the staging group: an
interrupted run leaves only hidden ``.tmp``/``.parts`` folders (removed by the next run),
never a store that looks complete. When the run reuses vectors of an earlier run (a resumed
embedding), the new vectors are read into the driver and merged in memory as in-process.
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

__all__ = ["StagedVectors", "embed_shards", "file_shards", "shard_map_on"]

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
    staging: str | None = None,
    shard: int = 0,
) -> tuple[list[str], Any, list[SkippedImages]]:
    """Worker task: read, preprocess and embed one shard with the saved model; with
    `staging`, write the vectors to ``staging/shard-K`` and return their count instead."""
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

    vectors = np.array(model.transform_batches(batches(), n=len(rows)), dtype=np.float32)
    if staging is None:
        return ids, vectors, skips
    from enrich.distributed.store import _zarr

    zarr = _zarr()
    # A retried task (its worker died) overwrites the same array: one result per shard.
    arr = zarr.open_array(
        f"{staging}/shard-{shard}",
        mode="w",
        shape=(len(vectors), model.dim),
        dtype="float32",
        chunks=(max(1, min(len(vectors), 65536)), model.dim),
    )
    if len(vectors):
        arr[:] = vectors
    return ids, len(vectors), skips


def _copy_chunks(
    staging: str, target: str, a: int, b: int, pieces: list[tuple[int, int, int]]
) -> None:
    """Worker task: fill rows ``a:b`` (whole chunks) of the final store from the shards'
    arrays; `pieces` are ``(shard, first row of that shard's rows in the store, count)``."""
    from enrich.distributed.store import _zarr

    zarr = _zarr()
    out = zarr.open_array(f"{target}/vectors", mode="r+")
    block = np.empty((b - a, out.shape[1]), dtype=np.float32)
    for k, start, count in pieces:
        lo, hi = max(a, start), min(b, start + count)
        if lo < hi:
            src = zarr.open_array(f"{staging}/shard-{k}", mode="r")
            block[lo - a : hi - a] = src[lo - start : hi - start]
    out[a:b] = block


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
    staging: str | os.PathLike[str] | None = None,
) -> tuple[list[str], Any, list[SkippedImages]]:
    """Embed `rows` (manifest rows) on the workers; ids, vectors (n, d) and skipped files.

    The hook :func:`enrich.embed.api.embed_sources` calls (``shard_map``) with
    ``--engine dask``. Shards default to four per worker. With `staging` (a folder the
    workers can write), the vectors stay there and a :class:`StagedVectors` is returned in
    their place.
    """
    from enrich.distributed._client import n_workers
    from enrich.embed.api import _runtime_options

    runtime = _runtime_options(cls, device=device, progress=False)
    shards = file_shards(rows, n_shards or 4 * n_workers(client))
    stage = None if staging is None else str(staging)
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
            stage,
            k,
            pure=False,
            retries=TASK_RETRIES,
        )
        for k, s in enumerate(shards)
    ]
    results = client.gather(futures)  # one result per shard, in manifest order
    ids = [i for r in results for i in r[0]]
    skips = [s for r in results for s in r[2]]
    dim = cls.load(model_dir).dim if not results or stage is not None else results[0][1].shape[1]
    if stage is not None:
        counts = [int(r[1]) for r in results]
        return ids, StagedVectors(stage, counts, dim, client), skips
    vectors = (
        np.concatenate([r[1] for r in results]) if results else np.empty((0, dim), dtype=np.float32)
    )
    return ids, vectors, skips


class StagedVectors:
    """New vectors the workers left in a staging Zarr group, one array per shard, in order.

    ``len()`` and ``shape`` as an array's; :meth:`load` reads them into memory;
    :meth:`write_store` lays them out as the final ``embeddings.zarr`` on the workers.
    """

    def __init__(
        self, staging: str, counts: list[int], dim: int, client: Client | None = None
    ) -> None:
        self.staging, self.counts, self.dim, self.client = staging, counts, dim, client
        self.spec: SchedulerSpec | None = None  # to connect again when `client` is closed

    def _client(self) -> Any:
        import contextlib

        if self.spec is not None:
            from enrich.distributed._client import connect

            return connect(self.spec)
        return contextlib.nullcontext(self.client)

    def __len__(self) -> int:
        return sum(self.counts)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.dim

    def load(self) -> np.ndarray:
        from enrich.distributed.store import _zarr

        zarr = _zarr()
        parts = [
            np.asarray(zarr.open_array(f"{self.staging}/shard-{k}", mode="r")[:])
            for k, c in enumerate(self.counts)
            if c
        ]
        return np.concatenate(parts) if parts else np.empty((0, self.dim), np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.load()
        return out if dtype is None else out.astype(dtype)

    def discard(self) -> None:
        import shutil

        shutil.rmtree(self.staging, ignore_errors=True)

    def write_store(
        self, target: str | os.PathLike[str], ids: np.ndarray, *, chunk_rows: int | None = None
    ) -> str:
        """Write ``target`` (e.g. ``WS/embeddings.zarr``) atomically from the shards; the
        workers copy the vectors chunk by chunk, the driver writes the ids and attributes.
        Returns the fingerprint (the same as :func:`enrich.embeddings.fingerprint`)."""
        import hashlib
        import shutil
        from pathlib import Path

        from enrich.distributed.store import (
            DEFAULT_CHUNK_ROWS,
            FORMAT,
            VERSION,
            _zarr,
            replace_store,
        )

        zarr = _zarr()
        n, d = self.shape
        ids = np.asarray(ids).astype(str)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} staged vectors")
        final = Path(target)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        rows = max(1, min(chunk_rows or DEFAULT_CHUNK_ROWS, n))
        try:
            group = zarr.open_group(str(tmp), mode="w")
            group.create_array("vectors", shape=(n, d), dtype="float32", chunks=(rows, d))
            starts = np.cumsum([0, *self.counts])[:-1]
            pieces = [
                (k, int(st), int(c))
                for k, (st, c) in enumerate(zip(starts, self.counts, strict=True))
                if c
            ]
            with self._client() as client:
                # each task: a run of whole chunks, about 4 per worker
                n_chunks = -(-n // rows)
                per = rows * max(1, -(-n_chunks // max(1, 4 * len(client.nthreads()))))
                futures = [
                    client.submit(
                        _copy_chunks,
                        self.staging,
                        str(tmp),
                        a,
                        min(n, a + per),
                        pieces,
                        pure=False,
                        retries=TASK_RETRIES,
                    )
                    for a in range(0, n, per)
                ]
                client.gather(futures)
            i = group.create_array("ids", shape=ids.shape, dtype=str, chunks=(rows,))
            i[:] = ids
            # the fingerprint, streamed chunk by chunk in row order
            h = hashlib.sha256()
            h.update(str(((n, d), np.dtype(np.float32).str)).encode())
            vec = group["vectors"]
            for a in range(0, n, rows):
                h.update(np.ascontiguousarray(vec[a : a + rows], dtype=np.float32).tobytes())
            h.update("\0".join(ids.tolist()).encode())
            fp = "sha256:" + h.hexdigest()[:16]
            group.attrs.update(
                {"format": FORMAT, "version": VERSION, "n_images": n, "dim": d, "fingerprint": fp}
            )
            replace_store(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return fp


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

    def shard_map(*args: Any) -> tuple[list[str], Any, list[SkippedImages]]:
        from pathlib import Path

        # The workers write their vectors beside the workspace's future store.
        staging = Path(args[3]).parent / f".embeddings.zarr.parts-{os.getpid()}"
        clean_stale_stores(staging.parent / "embeddings.zarr")
        with connect(spec) as client:
            ids, staged, skips = embed_shards(*args, client=client, device=device, staging=staging)
        staged.client, staged.spec = None, spec
        return ids, staged, skips

    return shard_map


def clean_stale_stores(target: str | os.PathLike[str]) -> None:
    """Remove hidden ``.NAME.tmp-PID``/``.parts-PID``/``.old-PID`` folders of `target` left by
    runs whose process is gone (on this machine)."""
    import re
    import shutil
    from pathlib import Path

    from enrich._atomic import _pid_alive

    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:tmp|parts|old)-(\d+)$")
    if not target.parent.is_dir():
        return
    for entry in target.parent.iterdir():
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)

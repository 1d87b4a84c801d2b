"""Images in, embeddings out: the pipeline behind ``enrich embed``.

:func:`embed_sources` discovers the images, trains the embedder on up to ``max_train`` of
them (chosen by seed) or reuses the workspace's model, then streams every image through
reading → preprocessing → embedding in batches, and writes the workspace.

Re-running on a grown folder reuses the model when its embedder, options, seed and
preprocessing are unchanged, keeps the vectors already computed, and embeds only the new
images. Anything else (a new seed, another embedder, other preprocessing, ``retrain=True``)
trains a new model and embeds everything again. Images are known by id (their path), so
a file rewritten in place keeps its old vector: pass ``retrain=True`` (``--retrain``) after
editing images.

``model_from=FOLDER`` (``--model-from``) offers a model trained elsewhere (another
workspace's ``model/``, or the demo's shipped models): it is used instead of training only
when its embedder, options and preprocessing match and its recorded data fingerprint equals
that of the training images this run would pick (pixels and ids), i.e. when training here
would have seen exactly the same images. The β-VAE's training is checkpointed every epoch
in ``WS/model/training-checkpoint.pt``; an interrupted run resumes from it when rerun.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich._outputs import check_seed
from enrich.embed.base import CONFIG_FILE, Embedder, read_config
from enrich.embed.registry import get_embedder_class
from enrich.embeddings import Embeddings
from enrich.errors import EnrichError
from enrich.io._discover import IGNORED_REASON
from enrich.io._paths import text_path
from enrich.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from enrich.io import SkippedImages
    from enrich.preprocess import Preprocess

__all__ = [
    "MIN_RELIABLE_TRAIN",
    "EmbedSummary",
    "embed_sources",
    "read_batches",
    "read_images",
]

#: Below this many training images the β-VAE's embedding may be unreliable: a 200-image
#: PneumoniaMNIST model gave a median max similarity of 0.976 and near-duplicate groups that
#: mixed classes (the paper trained on 5,000). ``enrich embed`` warns and says so in
#: ``embeddings.json``.
MIN_RELIABLE_TRAIN = 1000
CHECKPOINT_FILE = "training-checkpoint.pt"


@dataclass
class EmbedSummary:
    """What one ``enrich embed`` run did (also written to ``WS/embeddings.json``)."""

    workspace: str
    embedder: str
    n_images: int
    n_new: int
    n_skipped: int
    dim: int
    model_reused: bool
    n_train: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    #: One line each: what the user should know (too few training images, reader warnings).
    n_ignored: int = 0  # files in the folders that no reader handles (also in skipped.csv)
    model_source: str | None = None  # the --model-from folder whose model was used
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one summary line the CLI prints."""
        ws = Path(self.workspace)
        if self.model_source is not None:
            model = f"model from {self.model_source}"
        else:
            model = "reused model" if self.model_reused else f"trained on {self.n_train}"
        skipped = f"{self.n_skipped} skipped"
        if self.n_ignored:
            skipped += f", {self.n_ignored} ignored ({IGNORED_REASON})"
        if self.n_skipped or self.n_ignored:
            skipped += f" → {ws / Workspace.SKIPPED}"
        return (
            f"embedded {self.n_images} images ({self.n_new} new, {skipped}) with {self.embedder} "
            f"({model}, d={self.dim}) in {self.seconds:.1f}s → {ws / Workspace.EMBEDDINGS}, "
            f"{ws / Workspace.MANIFEST}"
        )


def embed_sources(
    sources: Sequence[str | os.PathLike[str]],
    workspace: str | os.PathLike[str] | Workspace,
    *,
    embedder: str = "betavae",
    seed: int = 0,
    max_train: int = 5000,
    preprocess: Preprocess | None = None,
    embedder_options: dict[str, Any] | None = None,
    discover_options: dict[str, Any] | None = None,
    id_options: dict[str, Any] | None = None,
    device: str = "auto",
    batch_size: int = 256,
    retrain: bool = False,
    progress: bool = True,
    shard_map: Callable[..., tuple[list[str], np.ndarray, list[SkippedImages]]] | None = None,
    threads: int | str | None = None,
    model_from: str | os.PathLike[str] | None = None,
    labels_from_folder: bool = False,
) -> EmbedSummary:
    """Discover, preprocess and embed images into a workspace.

    Parameters
    ----------
    sources : sequence of paths
        Folders (searched recursively), files, or CSV manifests (see :func:`enrich.io.discover`).
    workspace : path or Workspace
        Created if needed.
    embedder : str
        A name in :data:`enrich.embed.EMBEDDERS`.
    seed : int
        Chooses the training subset and seeds the embedder.
    max_train : int
        At most this many images train the embedder (the paper: 5,000).
    preprocess : Preprocess, optional
        Must give 64×64 grayscale images; default ``Preprocess()`` (centre crop, 64×64).
    embedder_options : dict, optional
        Passed to the embedder (e.g. ``latent_dim``, ``beta``, ``max_epochs``).
    discover_options : dict, optional
        Passed to :func:`enrich.io.discover` (e.g. the NIfTI axis, the video frame step).
    id_options : dict, optional
        Ids from file names and labels from a side table (:func:`enrich.io._ids.annotate`).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (β-VAE only).
    batch_size : int
        Images read and embedded per batch.
    retrain : bool
        Train a new model even when the saved one (or `model_from`) matches, from scratch
        (an interrupted training's checkpoint is discarded).
    progress : bool
        Progress on stderr: bars on a terminal, plain lines every few seconds in a log.
    shard_map : callable, optional
        Embeds the images still to embed elsewhere (``--engine dask``:
        :func:`enrich.distributed.embed.embed_shards`), called as
        ``shard_map(rows, preprocess, read_options, model_dir, embedder_class, batch_size)``
        after the model is trained and saved; returns ``(ids, vectors, skipped)``.
    threads : int or "auto", optional
        torch threads (``"auto"``: the cores free now, see :func:`enrich._threads.free_cores`);
        None leaves torch's setting alone. Recorded in ``embeddings.json``.
    model_from : path, optional
        A saved model folder to use instead of training, when it was trained on exactly the
        images and options this run would train on (see the module docstring).
    labels_from_folder : bool
        Set every image's label to the name of the folder holding its file
        (``pneumonia/x1.png`` → ``pneumonia``), replacing labels from files or manifests.

    Returns
    -------
    EmbedSummary
    """
    from enrich import io
    from enrich.preprocess import Preprocess

    start = time.perf_counter()
    pp = preprocess if preprocess is not None else Preprocess()
    if pp.size != 64 or not pp.grayscale:
        raise EnrichError(
            f"preprocess gives size={pp.size}, grayscale={pp.grayscale}; embedders need 64×64 gray"
        )
    check_seed(seed)
    if max_train < 2:
        raise EnrichError(f"max_train={max_train}: expected at least 2")
    if batch_size < 1:
        raise EnrichError(f"batch_size={batch_size}: expected a positive integer")
    cls = get_embedder_class(embedder)  # unknown names fail before any work
    if device != "auto" and "device" in inspect.signature(cls.__init__).parameters:
        from enrich.embed.train import resolve_device

        resolve_device(device)  # "cuda" without a GPU fails before any work too
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.check_creatable()  # fail before the (possibly long) discovery, but write nothing yet
    # A workspace kept inside a source folder is never read back as images.
    dopts = dict(discover_options or {})
    dopts["exclude"] = [*dopts.get("exclude", ()), ws.path.absolute()]
    discovery = io.discover(list(sources), **dopts)
    if id_options:
        from enrich.io._ids import annotate

        discovery = annotate(discovery, sources=list(sources), **id_options)
    ws = Workspace.create(ws.path)
    manifest = discovery.manifest.reset_index(drop=True)
    if labels_from_folder:
        manifest = _labels_from_folder(manifest)
    ignored = discovery.ignored
    n_ignored = 0 if ignored is None else len(ignored)
    skipped = [discovery.skipped]
    if ignored is not None:
        skipped.append(ignored)
    if len(manifest) == 0:
        ws.write_skipped(_concat_skipped(skipped))
        n_bad = len(discovery.skipped)
        raise EnrichError(
            f"no readable images in {', '.join(str(s) for s in sources)}"
            + (f" ({n_bad} file(s) skipped, see {ws.skipped_path})" if n_bad else "")
        )

    # -- the model: reuse or train ---------------------------------------------------------
    n_threads = None
    if threads is not None:
        from enrich._threads import set_torch_threads

        n_threads = set_torch_threads(threads)
    options = dict(embedder_options or {})
    options["seed"] = seed
    checkpoint = ws.model_dir / CHECKPOINT_FILE
    if retrain:
        checkpoint.unlink(missing_ok=True)
    runtime = _runtime_options(cls, device=device, progress=progress, checkpoint=str(checkpoint))
    candidate = cls(**options, **runtime)
    # What, besides the embedder's own options, decides the vectors: reusing a model (and
    # its vectors) needs the same preprocessing, subset size and reader options (a NIfTI
    # slice "v.nii#3" is another image along another axis).
    pipeline = {
        "preprocess": pp.to_dict(),
        "max_train": int(max_train),
        "read_options": dict(discovery.options),
    }
    saved = None if retrain else _saved_config(ws.model_dir)  # --retrain rebuilds a bad one
    reuse = (
        not retrain
        and saved is not None
        and saved.get("embedder") == cls.name
        and _jsonable(saved.get("params")) == _jsonable(candidate.params())
        and _jsonable(saved.get("pipeline")) == _jsonable(pipeline)
    )
    n_train = 0
    notes: list[str] = []  # one line each for the user: also warnings.warn'd at the end
    source: str | None = None
    if reuse:
        model = cls.load(ws.model_dir, **runtime)
        n_train = int(model.fit_info_.get("n_train", 0))
    else:
        sample = _training_sample(
            manifest, pp, max_train=int(max_train), seed=seed, read_options=discovery.options
        )
        train_ids, train_images = sample.ids, sample.images
        if len(train_ids) < 2:
            ws.write_skipped(_concat_skipped([*skipped, _skipped_frame(sample.skipped)]))
            first = sample.skipped[0] if sample.skipped else None
            raise EnrichError(
                f"only {len(train_ids)} of {len(manifest)} image(s) could be read "
                f"({sample.n_failed} tried and failed); the model needs at least 2"
                + (f"; first failure {first.source_path}: {first.reason}" if first else "")
                + f" (all in {ws.skipped_path})"
            )
        # (the β-VAE's own, stricter warning on a small training set comes below)
        notes.extend(sample.warnings(int(max_train), len(manifest), small=cls.name != "betavae"))
        n_train = len(train_ids)
        offered = None
        if model_from is not None and not retrain:
            offered = _matching_model(
                Path(model_from), cls, candidate, pipeline, train_images, train_ids, progress
            )
        if offered is not None:
            model = cls.load(offered, **runtime)
            source = str(model_from)
            reuse = True
        else:
            if progress and hasattr(candidate, "max_epochs"):
                _note(
                    f"training the {cls.name} on {n_train:,} images "
                    f"({_plural(n_threads or _torch_threads() or 1, 'thread')}); progress follows, "
                    "interrupt at any time and rerun to resume"
                )
            model = candidate.fit(train_images, ids=train_ids)
        del train_images
        # The pipeline (preprocessing, subset size) is part of what makes the model reusable.
        extra: dict[str, Any] = {"pipeline": pipeline}
        if source is not None:
            extra["copied_from"] = source
        model.save(ws.model_dir, extra=extra)
    model_fp = _file_fingerprint(ws.model_dir / CONFIG_FILE)

    # -- vectors we can keep ---------------------------------------------------------------
    old: Embeddings | None = None
    info = ws.embeddings_info()
    if reuse and ws.has_embeddings() and info.get("model_fingerprint") == model_fp:
        try:
            old = ws.embeddings(aligned=False)  # embeddings.npz, or embeddings.zarr alone
        except EnrichError:
            old = None  # unreadable: embed everything again
        if old is not None and old.dim != model.dim:
            old = None
    ids = manifest["id"].to_numpy(dtype=str)
    old_pos: dict[str, int] = {}
    if old is not None:
        old_pos = {k: i for i, k in enumerate(old.ids.tolist())}
    have_old = np.fromiter((k in old_pos for k in ids.tolist()), bool, len(ids))
    new_rows = manifest.loc[~have_old].reset_index(drop=True)

    # -- stream the new images through the embedder ----------------------------------------
    new_ids: list[str] = []
    read_skips: list[SkippedImages] = []
    read_warnings: list[tuple[str, str]] = []
    staged: Any = None
    if shard_map is not None:  # on Dask workers, shards of whole files, same saved model
        new_ids, new_vecs, read_skips = shard_map(
            new_rows, pp, discovery.options, ws.model_dir, cls, batch_size
        )
        # Vectors the workers left on disk (distributed.embed.StagedVectors) become the
        # workspace's embeddings.zarr without passing through here, unless merged with old ones.
        staged = new_vecs if hasattr(new_vecs, "write_store") else None
        if staged is not None and old is not None:
            new_vecs = staged.load()
            staged.discard()
            staged = None
    else:
        batches = read_batches(
            new_rows,
            pp,
            batch_size=batch_size,
            read_options=discovery.options,
            skipped=read_skips,
            progress=progress,
            warnings=read_warnings,
        )
        new_vecs = model.transform_batches(_collect_ids(batches, new_ids), n=len(new_rows))
    skipped.append(_skipped_frame(read_skips))

    # -- assemble in manifest order ---------------------------------------------------------
    keep = have_old.copy()
    keep[~have_old] = np.isin(ids[~have_old], np.asarray(new_ids, dtype=str))
    final_ids = ids[keep]
    if staged is not None or (old is None and keep.all() and len(new_ids) == len(ids)):
        vectors = new_vecs  # nothing old to merge: already in manifest order
    else:
        vectors = np.empty((len(final_ids), model.dim), np.float32)
        slot = {k: i for i, k in enumerate(final_ids.tolist())}
        if old is not None:
            rows_old = [k for k in final_ids.tolist() if k in old_pos]
            vectors[[slot[k] for k in rows_old]] = old.vectors[[old_pos[k] for k in rows_old]]
        if new_ids:
            vectors[[slot[k] for k in new_ids]] = new_vecs
    del new_vecs

    summary = EmbedSummary(
        workspace=str(ws.path),
        embedder=cls.name,
        n_images=len(final_ids),
        n_new=len(new_ids),
        n_skipped=0,
        dim=model.dim,
        model_reused=reuse,
        n_train=n_train,
        seconds=0.0,
        warnings=notes,
        n_ignored=n_ignored,
        model_source=source,
    )
    reader_warnings = _reader_warnings(discovery.warnings, read_warnings)
    if reader_warnings["count"]:
        (path, first), n_files = reader_warnings["first"], reader_warnings["n_files"]
        notes.append(
            f"the image readers warned {reader_warnings['count']} time(s) about {n_files} "
            f"file(s) (first: {path}: {first}); all are listed in {ws.embeddings_info_path}"
        )
    if cls.name == "betavae" and 0 < n_train < MIN_RELIABLE_TRAIN:
        notes.append(
            f"the β-VAE was trained on only {n_train:,} images (fewer than "
            f"{MIN_RELIABLE_TRAIN:,}; the paper used 5,000): its embedding may be unreliable, "
            "with similarities near 1 and near-duplicate groups that mix classes"
        )
    for message in summary.warnings:
        warnings.warn(message, UserWarning, stacklevel=2)
    all_skipped = _concat_skipped(skipped)
    summary.n_skipped = len(all_skipped) - n_ignored
    summary.seconds = round(time.perf_counter() - start, 3)
    record = {
        "embedder": cls.name,
        "params": model.params(),
        "preprocess": pp.to_dict(),
        "model_fingerprint": model_fp,
        "model_reused": reuse,
        "n_new": summary.n_new,
        "n_skipped": summary.n_skipped,
        "n_ignored": n_ignored,
        "n_train": n_train,
        "small_training_set": bool(cls.name == "betavae" and 0 < n_train < MIN_RELIABLE_TRAIN),
        "min_reliable_train": MIN_RELIABLE_TRAIN,
        "warnings": summary.warnings,
        "threads": n_threads if n_threads is not None else _torch_threads(),
        "model_from": source,
        "labels_from_folder": bool(labels_from_folder),
        "seconds": summary.seconds,
        "sources": [text_path(s) for s in sources],
        "reader_warnings": reader_warnings["records"],
    }
    # Embeddings first, manifest last: an interrupted run leaves every manifest row embedded.
    if staged is not None or (shard_map is not None and _holds_store(ws)):
        _write_store(ws, staged, final_ids, vectors, record)
    else:
        ws.write_embeddings(Embeddings(final_ids, vectors), info=record)
    ws.write_skipped(all_skipped)
    ws.write_manifest(manifest.loc[keep].reset_index(drop=True))
    summary.details = record
    return summary


def _holds_store(ws: Workspace) -> bool:
    return not ws.embeddings_path.is_file() and (ws.path / "embeddings.zarr").is_dir()


def _write_store(
    ws: Workspace, staged: Any, ids: np.ndarray, vectors: Any, record: dict[str, Any]
) -> None:
    """``embeddings.zarr`` (``--engine dask``), then ``embeddings.json``; an older
    ``embeddings.npz`` is removed, so that the store is what every command reads.

    From the vectors the Dask workers staged (`staged`), the workers write it chunk by chunk;
    from vectors in memory (merged with an earlier run's), it is written here."""
    from enrich._atomic import write_json
    from enrich.distributed.store import save_zarr
    from enrich.embeddings import fingerprint

    target = ws.path / "embeddings.zarr"
    if staged is not None:
        fp = staged.write_store(target, ids)
        staged.discard()
        n, d = staged.shape
    else:
        vectors = np.asarray(vectors, dtype=np.float32)
        save_zarr(target, Embeddings(ids, vectors))
        fp, (n, d) = fingerprint(vectors, ids), vectors.shape
    ws.embeddings_path.unlink(missing_ok=True)
    write_json(
        ws.embeddings_info_path,
        {**record, "n_images": n, "dim": d, "fingerprint": fp, "format": "zarr"},
    )


# -- reading ---------------------------------------------------------------------------------
def read_batches(
    manifest: pd.DataFrame,
    preprocess: Preprocess,
    *,
    batch_size: int = 256,
    read_options: dict[str, Any] | None = None,
    skipped: list[SkippedImages] | None = None,
    progress: bool = False,
    warnings: list[tuple[str, str]] | None = None,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Stream ``(ids, images (B, 64, 64) float32)`` in manifest order, one batch in memory.

    Images that cannot be read or preprocessed are left out and appended to `skipped`
    (:class:`enrich.io.SkippedImages`: ``source_path``, ``reason``, ``ids``).
    ``read_options`` are the readers' options from discovery (``Discovery.options``).
    The reader libraries' warnings go to `warnings` (``(source_path, warning)``), not stderr.
    """
    from enrich import io
    from enrich._progress import Progress

    stream = io.read_frames(
        manifest,
        preprocess=preprocess,
        on_skip=None if skipped is None else skipped.append,
        **(read_options or {}),
    )
    buf = np.empty((batch_size, 64, 64), np.float32)
    ids: list[str] = []
    bar = Progress(len(manifest), "embed", "images", enabled=progress and len(manifest) > 0)
    try:
        for image_id, image in stream:
            buf[len(ids)] = image
            ids.append(str(image_id))
            if len(ids) == batch_size:
                yield ids, buf
                bar.update(len(ids))
                buf = np.empty_like(buf)  # the consumer may keep the last batch
                ids = []
            elif len(ids) % 16 == 0:
                bar.poll()  # a slow reader (big DICOM, video) still shows life in a log
        if ids:
            yield ids, buf[: len(ids)]
            bar.update(len(ids))
    finally:
        bar.close()
        if warnings is not None:
            warnings.extend(stream.warnings)


def read_images(
    manifest: pd.DataFrame,
    preprocess: Preprocess,
    *,
    read_options: dict[str, Any] | None = None,
    skipped: list[SkippedImages] | None = None,
) -> tuple[list[str], np.ndarray]:
    """All images of a (small) manifest in memory: ids and ``(n, 64, 64)`` float32."""
    out = np.empty((len(manifest), 64, 64), np.float32)
    ids: list[str] = []
    for batch_ids, batch in read_batches(
        manifest, preprocess, read_options=read_options, skipped=skipped
    ):
        out[len(ids) : len(ids) + len(batch_ids)] = batch
        ids.extend(batch_ids)
    return ids, out[: len(ids)]


def _collect_ids(
    batches: Iterator[tuple[list[str], np.ndarray]], sink: list[str]
) -> Iterator[np.ndarray]:
    for batch_ids, batch in batches:
        sink.extend(batch_ids)
        yield batch


def _skipped_frame(items: list[SkippedImages]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for item in items:
        reason = item.reason
        frames = [i.rsplit("#", 1)[1] for i in item.ids if "#" in i]
        if frames:
            reason += f" (image{'s' if len(frames) > 1 else ''} #{', #'.join(frames[:5])}"
            reason += f" and {len(frames) - 5} more)" if len(frames) > 5 else ")"
        rows.append({"source_path": item.source_path, "reason": reason})
    return pd.DataFrame(rows, columns=["source_path", "reason"])


def _concat_skipped(frames: list[pd.DataFrame]) -> pd.DataFrame:
    import pandas as pd

    parts = [f[["source_path", "reason"]] for f in frames if f is not None and len(f)]
    if not parts:
        return pd.DataFrame({"source_path": [], "reason": []}, dtype=str)
    return pd.concat(parts, ignore_index=True).drop_duplicates(ignore_index=True)


# -- the training sample ---------------------------------------------------------------------
#: Below this many training images ``enrich embed`` warns that the model saw too few (the
#: paper trained on 5,000; a 120-frame clip is enough for its own frames, 50 images are not).
MIN_TRAIN_IMAGES = 100


@dataclass
class _Sample:
    ids: list[str]
    images: np.ndarray  # (n, 64, 64) float32, in manifest order
    n_failed: int  # drawn images that could not be read
    skipped: list[SkippedImages]

    def warnings(self, max_train: int, n_images: int, *, small: bool = True) -> list[str]:
        n = len(self.ids)
        out = []
        if n < min(max_train, n_images):
            out.append(
                f"the model was trained on {n} images, not {min(max_train, n_images)}: "
                f"{self.n_failed} drawn image(s) could not be read and no other was left"
            )
        if small and n < MIN_TRAIN_IMAGES <= max_train:
            out.append(
                f"the model was trained on only {n} images (fewer than {MIN_TRAIN_IMAGES}); "
                "its embeddings may not tell your images apart (the paper trained on 5,000)"
            )
        return out


def _training_sample(
    manifest: pd.DataFrame,
    preprocess: Preprocess,
    *,
    max_train: int,
    seed: int,
    read_options: dict[str, Any],
) -> _Sample:
    """Read up to `max_train` training images drawn by `seed`, counting only those read.

    The first draw is a uniform sample without replacement. Drawn images that cannot be
    read are replaced by further draws from the other images (in a seeded random order)
    until `max_train` images were read or none is left. A file that yields no image at all
    when read is dropped with all its images from later draws, so a corrupt file costs one
    attempt whatever its header claims. Memory: `max_train` images.
    """
    from enrich import io

    n = len(manifest)
    rng = np.random.default_rng(seed)
    n_pick = min(n, max_train)
    first = np.sort(rng.choice(n, size=n_pick, replace=False))
    rest = np.ones(n, bool)
    rest[first] = False
    queue = np.concatenate([first, rng.permutation(np.flatnonzero(rest))])
    ids = manifest["id"].astype(str).to_numpy()
    paths = manifest["source_path"].astype(str).to_numpy()
    out = np.empty((n_pick, 64, 64), np.float32)
    got_rows: list[int] = []
    skipped: list[SkippedImages] = []
    dropped: set[str] = set()
    n_failed = pos = 0
    while len(got_rows) < n_pick and pos < n:
        take: list[int] = []
        while len(take) < n_pick - len(got_rows) and pos < n:
            r = int(queue[pos])
            pos += 1
            if paths[r] not in dropped:
                take.append(r)
        if not take:
            break
        rows = np.sort(np.asarray(take, np.int64))
        row_of = {str(ids[r]): int(r) for r in rows}
        stream = io.read_frames(
            manifest.iloc[rows], preprocess=preprocess, order="file", **read_options
        )
        read_files: set[str] = set()
        for image_id, img in stream:
            out[len(got_rows)] = img
            got_rows.append(row_of[image_id])
            read_files.add(str(paths[row_of[image_id]]))
        for item in stream.skipped:
            n_failed += len(item.ids)
            skipped.append(item)
            if item.fatal and item.source_path not in read_files:
                dropped.add(item.source_path)
    order = np.argsort(np.asarray(got_rows, np.int64), kind="stable")  # manifest order
    images = out[: len(got_rows)][order]
    return _Sample([str(ids[got_rows[i]]) for i in order], images, n_failed, skipped)


def _reader_warnings(
    at_discovery: pd.DataFrame | None, when_read: list[tuple[str, str]], *, keep: int = 1000
) -> dict[str, Any]:
    """Count the reader libraries' warnings; keep the first `keep` distinct ones."""
    pairs: list[tuple[str, str]] = []
    if at_discovery is not None and len(at_discovery):
        pairs.extend(at_discovery[["source_path", "warning"]].itertuples(index=False, name=None))
    pairs.extend(when_read)
    distinct = list(dict.fromkeys(pairs))
    return {
        "count": len(pairs),
        "n_files": len({p for p, _ in pairs}),
        "first": distinct[0] if distinct else None,
        "records": [{"source_path": p, "warning": w} for p, w in distinct[:keep]],
    }


# -- helpers -----------------------------------------------------------------------------------
def _saved_config(model_dir: Path) -> dict[str, Any] | None:
    """The workspace model's config; an unreadable one says how to rebuild it."""
    try:
        return read_config(model_dir)
    except EnrichError as exc:
        raise EnrichError(f"{exc}; rerun with --retrain to train and save a new model") from None


def _runtime_options(cls: type[Embedder], **options: Any) -> dict[str, Any]:
    """The options of `cls` that do not define the model (device, progress, checkpoint)."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in options.items() if k in accepted}


def _torch_threads() -> int | None:
    if "torch" not in sys.modules:
        return None
    return int(sys.modules["torch"].get_num_threads())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _matching_model(
    folder: Path,
    cls: type[Embedder],
    candidate: Embedder,
    pipeline: dict[str, Any],
    train_images: np.ndarray,
    train_ids: list[str],
    progress: bool,
) -> Path | None:
    """`folder` if its saved model is what training here would make, else None (says why)."""
    from enrich.embed.base import data_fingerprint

    saved = read_config(folder)
    why = None
    if saved is None:
        why = f"no saved model ({CONFIG_FILE} is missing)"
    elif saved.get("embedder") != cls.name:
        why = f"it holds a {saved.get('embedder')!r} model, not {cls.name!r}"
    elif _jsonable(saved.get("params")) != _jsonable(candidate.params()):
        why = "its options differ"
    elif _jsonable(saved.get("pipeline")) != _jsonable(pipeline):
        why = "its preprocessing or training-set size differs"
    elif saved.get("data_fingerprint") != data_fingerprint(train_images, train_ids):
        why = "it was trained on other images (data fingerprint differs)"
    if why is None:
        return folder
    if progress:
        _note(f"not using the model in {folder}: {why}; training a new one")
    return None


def _labels_from_folder(manifest: pd.DataFrame) -> pd.DataFrame:
    """Each image's label: the name of the folder holding its file."""
    out = manifest.copy()
    out["label"] = [Path(p).parent.name or None for p in out["source_path"].tolist()]
    labels = set(out["label"].dropna().tolist())
    if len(labels) < 2:
        warnings.warn(
            f"labels from folders: every image is in a folder named {sorted(labels)}; "
            "put each class in its own sub-folder (e.g. normal/, pneumonia/)",
            UserWarning,
            stacklevel=3,
        )
    return out


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _file_fingerprint(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]

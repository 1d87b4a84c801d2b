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
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich._outputs import check_seed
from enrich.embed.base import CONFIG_FILE, Embedder, read_config
from enrich.embed.registry import get_embedder_class
from enrich.embeddings import Embeddings, load_embeddings
from enrich.errors import EnrichError
from enrich.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from enrich.io import SkippedImages
    from enrich.preprocess import Preprocess

__all__ = ["EmbedSummary", "embed_sources", "read_batches", "read_images"]


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

    def line(self) -> str:
        """The one summary line the CLI prints."""
        ws = Path(self.workspace)
        model = "reused model" if self.model_reused else f"trained on {self.n_train}"
        skipped = f"{self.n_skipped} skipped"
        if self.n_skipped:
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
        Train a new model even when the saved one matches.
    progress : bool
        Progress bars on stderr.

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
    discovery = io.discover(list(sources), **(discover_options or {}))
    if id_options:
        from enrich.io._ids import annotate

        discovery = annotate(discovery, sources=list(sources), **id_options)
    ws = Workspace.create(ws.path)
    manifest = discovery.manifest.reset_index(drop=True)
    skipped = [discovery.skipped]
    if len(manifest) == 0:
        ws.write_skipped(_concat_skipped(skipped))
        n_bad = len(discovery.skipped)
        raise EnrichError(
            f"no readable images in {', '.join(str(s) for s in sources)}"
            + (f" ({n_bad} file(s) skipped, see {ws.skipped_path})" if n_bad else "")
        )

    # -- the model: reuse or train ---------------------------------------------------------
    options = dict(embedder_options or {})
    options["seed"] = seed
    runtime = _runtime_options(cls, device=device, progress=progress)
    candidate = cls(**options, **runtime)
    # What, besides the embedder's own options, decides the vectors: reusing a model (and
    # its vectors) needs the same preprocessing, subset size and reader options (a NIfTI
    # slice "v.nii#3" is another image along another axis).
    pipeline = {
        "preprocess": pp.to_dict(),
        "max_train": int(max_train),
        "read_options": dict(discovery.options),
    }
    saved = read_config(ws.model_dir)
    reuse = (
        not retrain
        and saved is not None
        and saved.get("embedder") == cls.name
        and _jsonable(saved.get("params")) == _jsonable(candidate.params())
        and _jsonable(saved.get("pipeline")) == _jsonable(pipeline)
    )
    n_train = 0
    if reuse:
        model = cls.load(ws.model_dir, **runtime)
        n_train = int(model.fit_info_.get("n_train", 0))
    else:
        rng = np.random.default_rng(seed)
        n_pick = min(len(manifest), int(max_train))
        pick = np.sort(rng.choice(len(manifest), size=n_pick, replace=False))
        train_rows = manifest.iloc[pick].reset_index(drop=True)
        train_ids, train_images = read_images(train_rows, pp, read_options=discovery.options)
        if len(train_ids) < 2:
            raise EnrichError(
                f"only {len(train_ids)} of {n_pick} training image(s) could be read; "
                "need at least 2"
            )
        model = candidate.fit(train_images, ids=train_ids)
        del train_images
        n_train = len(train_ids)
        # The pipeline (preprocessing, subset size) is part of what makes the model reusable.
        model.save(ws.model_dir, extra={"pipeline": pipeline})
    model_fp = _file_fingerprint(ws.model_dir / CONFIG_FILE)

    # -- vectors we can keep ---------------------------------------------------------------
    old: Embeddings | None = None
    info = ws.embeddings_info()
    if reuse and ws.has_embeddings() and info.get("model_fingerprint") == model_fp:
        try:
            old = load_embeddings(ws.embeddings_path)
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
    batches = read_batches(
        new_rows,
        pp,
        batch_size=batch_size,
        read_options=discovery.options,
        skipped=read_skips,
        progress=progress,
    )
    new_vecs = model.transform_batches(_collect_ids(batches, new_ids), n=len(new_rows))
    skipped.append(_skipped_frame(read_skips))

    # -- assemble in manifest order ---------------------------------------------------------
    keep = have_old.copy()
    keep[~have_old] = np.isin(ids[~have_old], np.asarray(new_ids, dtype=str))
    final_ids = ids[keep]
    if old is None and keep.all() and len(new_ids) == len(ids):
        vectors = new_vecs  # first run, nothing failed: already in manifest order
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
    )
    all_skipped = _concat_skipped(skipped)
    summary.n_skipped = len(all_skipped)
    summary.seconds = round(time.perf_counter() - start, 3)
    record = {
        "embedder": cls.name,
        "params": model.params(),
        "preprocess": pp.to_dict(),
        "model_fingerprint": model_fp,
        "model_reused": reuse,
        "n_new": summary.n_new,
        "n_skipped": summary.n_skipped,
        "n_train": n_train,
        "seconds": summary.seconds,
        "sources": [str(s) for s in sources],
    }
    # Embeddings first, manifest last: an interrupted run leaves every manifest row embedded.
    ws.write_embeddings(Embeddings(final_ids, vectors), info=record)
    ws.write_skipped(all_skipped)
    ws.write_manifest(manifest.loc[keep].reset_index(drop=True))
    summary.details = record
    return summary


# -- reading ---------------------------------------------------------------------------------
def read_batches(
    manifest: pd.DataFrame,
    preprocess: Preprocess,
    *,
    batch_size: int = 256,
    read_options: dict[str, Any] | None = None,
    skipped: list[SkippedImages] | None = None,
    progress: bool = False,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Stream ``(ids, images (B, 64, 64) float32)`` in manifest order, one batch in memory.

    Images that cannot be read or preprocessed are left out and appended to `skipped`
    (:class:`enrich.io.SkippedImages`: ``source_path``, ``reason``, ``ids``).
    ``read_options`` are the readers' options from discovery (``Discovery.options``).
    """
    from tqdm.auto import tqdm

    from enrich import io

    stream = io.read_frames(
        manifest,
        preprocess=preprocess,
        on_skip=None if skipped is None else skipped.append,
        **(read_options or {}),
    )
    buf = np.empty((batch_size, 64, 64), np.float32)
    ids: list[str] = []
    bar = tqdm(
        total=len(manifest),
        desc="embed",
        unit="img",
        file=sys.stderr,
        disable=not progress or len(manifest) == 0,
        leave=False,
    )
    try:
        for image_id, image in stream:
            buf[len(ids)] = image
            ids.append(str(image_id))
            if len(ids) == batch_size:
                yield ids, buf
                bar.update(len(ids))
                buf = np.empty_like(buf)  # the consumer may keep the last batch
                ids = []
        if ids:
            yield ids, buf[: len(ids)]
            bar.update(len(ids))
    finally:
        bar.close()


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


# -- helpers -----------------------------------------------------------------------------------
def _runtime_options(cls: type[Embedder], *, device: str, progress: bool) -> dict[str, Any]:
    """The options of `cls` that do not define the model (device, progress bar)."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in {"device": device, "progress": progress}.items() if k in accepted}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _file_fingerprint(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]

"""Stream images from a manifest: one file open per run of its rows, constant memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.errors import EnrichError, MissingExtraError
from enrich.io._base import Reader
from enrich.io._paths import fs_path, text_path
from enrich.io._registry import make_readers, reader_for

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FrameStream", "SkippedImages", "read_frames"]

Prepare = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SkippedImages:
    """Images of one file that could not be read (after discovery), and why."""

    source_path: str
    reason: str
    ids: tuple[str, ...]
    #: The file could not be opened or its reader failed (rather than one image in it).
    fatal: bool = False


def _default_prepare(img: np.ndarray) -> np.ndarray:
    from enrich.preprocess import rescale_intensity, to_grayscale

    return to_grayscale(rescale_intensity(img)).astype(np.float32, copy=False)


class FrameStream:
    """An iterable over the images of a manifest; see :func:`read_frames`.

    Attributes
    ----------
    skipped : list of SkippedImages
        Filled while iterating: files or frames that failed to read or preprocess.
    warnings : list of (source_path, warning)
        What the reader libraries warned about while reading (collected, not printed).
    n_read : int
        Images yielded so far.
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        *,
        prepare: Prepare,
        batch_size: int | None,
        readers: dict[str, Reader],
        on_skip: Callable[[SkippedImages], None] | None,
        order: str = "manifest",
    ) -> None:
        import pandas as pd

        self._ids = manifest["id"].astype(str).to_numpy()
        self._paths = manifest["source_path"].astype(str).to_numpy()
        self._frames = manifest["frame"].to_numpy(dtype=np.int64)
        if order == "file":
            # files in order of first appearance, each file's frames ascending
            codes, _ = pd.factorize(self._paths)
            perm = np.lexsort((self._frames, codes))
            self._ids, self._paths, self._frames = (
                self._ids[perm],
                self._paths[perm],
                self._frames[perm],
            )
        self._prepare = prepare
        self._batch_size = batch_size
        self._readers = readers
        self._on_skip = on_skip
        self.skipped: list[SkippedImages] = []
        self._warned: list[tuple[str, str]] = []
        self.n_read = 0

    def __len__(self) -> int:
        """The number of manifest rows (an upper bound on the images yielded)."""
        return len(self._ids)

    @property
    def warnings(self) -> list[tuple[str, str]]:
        """``(source_path, warning)`` from the reader libraries so far, collected, not printed.

        Those caught around each read, then those a reader keeps per file itself
        (:class:`enrich.io.dicom.DicomReader` keeps pydicom's, to quote them in skip reasons).
        """
        out = list(self._warned)
        for reader in self._readers.values():
            for path, msgs in getattr(reader, "warnings", {}).items():
                out.extend((text_path(path), m) for m in msgs)
        return out

    @property
    def n_skipped(self) -> int:
        """Images skipped so far."""
        return sum(len(s.ids) for s in self.skipped)

    def skipped_frame(self) -> pd.DataFrame:
        """``source_path, reason, n_images`` for the skips so far (one row per file/reason)."""
        import pandas as pd

        return pd.DataFrame(
            [(s.source_path, s.reason, len(s.ids)) for s in self.skipped],
            columns=["source_path", "reason", "n_images"],
        )

    def _skip(self, path: str, reason: str, ids: list[str], *, fatal: bool = False) -> None:
        if not ids:
            return
        item = SkippedImages(path, reason, tuple(ids), fatal)
        self.skipped.append(item)
        if self._on_skip is not None:
            self._on_skip(item)

    def _runs(self) -> Iterator[tuple[int, int]]:
        """[start, stop) row ranges of one file with ascending frames."""
        n = len(self._ids)
        i = 0
        while i < n:
            j = i + 1
            while (
                j < n and self._paths[j] == self._paths[i] and self._frames[j] > self._frames[j - 1]
            ):
                j += 1
            yield i, j
            i = j

    def images(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(id, image)`` in manifest order, skipping (and recording) failures."""
        from enrich.io._discover import _reason, collect_warnings, not_regular

        for start, stop in self._runs():
            path = str(self._paths[start])
            real = fs_path(path)  # a non-UTF-8 name is stored escaped (enrich.io._paths)
            why = not_regular(Path(real))  # a FIFO put there since discovery would block
            reader = None if why else reader_for(real, self._readers)
            if reader is None:
                why = why or "unsupported file type"
                self._skip(path, why, [str(x) for x in self._ids[start:stop]], fatal=True)
                continue
            k = start  # the next row we expect
            try:
                wanted = [int(f) for f in self._frames[start:stop]]
                frames = reader.read(real, wanted)
                while True:
                    # the warnings of the reader library only, not of the consumer's code
                    with collect_warnings(self._warned, path):
                        item = next(frames, None)
                    if item is None:
                        break
                    frame, raw = item
                    while k < stop and self._frames[k] != frame:
                        self._skip(path, f"frame {self._frames[k]} not found", [self._ids[k]])
                        k += 1
                    if k == stop:
                        break
                    image_id = str(self._ids[k])
                    k += 1
                    try:
                        img = self._prepare(raw)
                    except MissingExtraError:
                        raise
                    except Exception as exc:
                        self._skip(path, _reason(exc), [image_id])
                        continue
                    self.n_read += 1
                    yield image_id, img
            except MissingExtraError:
                raise
            except Exception as exc:
                self._skip(path, _reason(exc), [str(x) for x in self._ids[k:stop]], fatal=True)
                continue
            if k < stop:
                rest = [str(x) for x in self._ids[k:stop]]
                self._skip(path, "frames not found in file", rest, fatal=True)

    def batches(self, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yield ``(ids, images)`` with ``images`` of shape (B, H, W) (B ≤ `batch_size`)."""
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise EnrichError(f"batch_size={batch_size!r}; expected a positive integer")
        ids: list[str] = []
        imgs: list[np.ndarray] = []
        for image_id, img in self.images():
            if imgs and img.shape != imgs[0].shape:
                raise EnrichError(
                    f"image {image_id} has shape {img.shape} but {ids[0]} has {imgs[0].shape}; "
                    "batches need one size: pass preprocess=Preprocess(size=...)"
                )
            ids.append(image_id)
            imgs.append(img)
            if len(ids) == batch_size:
                yield ids, np.stack(imgs)
                ids, imgs = [], []
        if ids:
            yield ids, np.stack(imgs)

    def __iter__(self) -> Iterator[Any]:
        if self._batch_size is None:
            return self.images()
        return self.batches(self._batch_size)


def read_frames(
    manifest: pd.DataFrame,
    *,
    preprocess: Prepare | None = None,
    batch_size: int | None = None,
    nifti_axis: int = -1,
    video_step: int = 1,
    npz_key: str | None = None,
    on_skip: Callable[[SkippedImages], None] | None = None,
    order: str = "manifest",
) -> FrameStream:
    """Stream the images of a manifest in its order, never holding them all.

    Each source file is opened once per run of consecutive manifest rows (a discovery
    manifest keeps a file's frames together, so once per file; see `order`). A file or
    frame that fails now (corrupt pixel data found after discovery) is skipped and
    recorded in ``stream.skipped`` (and passed to `on_skip`), never fatal.

    Parameters
    ----------
    manifest : DataFrame
        With at least ``id, source_path, frame`` (from :func:`discover`).
    preprocess : callable, optional
        Applied to each image, e.g. :class:`enrich.preprocess.Preprocess`. By default
        images are rescaled to [0, 1] and made gray, at their own size.
    batch_size : int, optional
        Iterate ``(ids, images (B, H, W))`` batches instead of ``(id, image)`` pairs.
    nifti_axis, video_step, npz_key
        The reader options used by :func:`discover` (``Discovery.options``).
    on_skip : callable, optional
        Called with each :class:`SkippedImages` as it happens.
    order : {"manifest", "file"}
        ``"manifest"``: the manifest's row order; a file is opened once per run of
        consecutive rows with ascending frames. ``"file"``: files in order of first
        appearance, each file's frames ascending, so every file is opened exactly once even
        for a shuffled subset (use it when the ids, not the order, matter: a random subset of
        video or NIfTI frames otherwise decodes a file once per row).

    Returns
    -------
    FrameStream
        Iterate it for ``(id, float32 image)`` (or batches); then read ``.skipped``.

    Examples
    --------
    >>> from enrich.io import discover, read_frames
    >>> from enrich.preprocess import Preprocess
    >>> found = discover("data/pneumoniamnist")  # run from the repository root
    >>> stream = read_frames(found.manifest, preprocess=Preprocess(), batch_size=256)
    >>> for ids, x in stream:  # x: (256, 64, 64) float32
    ...     pass
    >>> len(stream.skipped)
    0
    """
    missing = [c for c in ("id", "source_path", "frame") if c not in manifest.columns]
    if missing:
        raise EnrichError(
            f"manifest lacks column(s) {', '.join(missing)}; expected id, source_path, frame"
        )
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise EnrichError(f"batch_size={batch_size!r}; expected a positive integer")
    if order not in ("manifest", "file"):
        raise EnrichError(f"order={order!r}; expected 'manifest' or 'file'")
    readers = make_readers(nifti_axis=nifti_axis, video_step=video_step, npz_key=npz_key)
    return FrameStream(
        manifest,
        prepare=preprocess if preprocess is not None else _default_prepare,
        batch_size=None if batch_size is None else int(batch_size),
        readers=readers,
        on_skip=on_skip,
        order=order,
    )

"""Video (AVI, MP4, MOV, MKV) through PyAV (extra ``enrich-imaging[video]``).

A video is a clip; its frames are images (``us/loop.mp4#12``, the 0-based decoded frame
number). With ``step=k`` only every k-th frame is kept (frames 0, k, 2k, ...), and ids
keep the original frame numbers. Frames are RGB ``uint8``.

Discovery takes the frame count from the stream header; when the container does not
store it (or claims more frames than the file has bytes), the video is decoded once to
count. A file without a video stream, or with no
frames, is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from enrich.errors import EnrichError
from enrich.io._base import FrameRecord, Reader, require

__all__ = ["VideoReader"]


class VideoReader(Reader):
    """Video files decoded with FFmpeg through PyAV.

    Parameters
    ----------
    step : int
        Keep every `step`-th frame (1: all).
    """

    name: ClassVar[str] = "video"
    suffixes: ClassVar[tuple[str, ...]] = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".webm")

    def __init__(self, *, step: int = 1) -> None:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise EnrichError(f"video_step={step!r}; expected a positive integer")
        self.step = int(step)

    def options(self) -> dict[str, Any]:
        return {"video_step": self.step}

    def count(self, path: str | Path) -> list[FrameRecord]:
        av = require("av", "video")
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            n = int(stream.frames or 0)
            if n > os.path.getsize(path):
                n = 0  # a coded frame takes at least a byte: the header is wrong
            if n <= 0:  # not in the header: decode to count
                n = sum(1 for _ in container.decode(stream))
        if n == 0:
            raise ValueError("video has no frames")
        return [FrameRecord(i, key=str(i)) for i in range(0, n, self.step)]

    def read(
        self, path: str | Path, frames: Iterable[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        av = require("av", "video")
        wanted = None if frames is None else sorted({int(i) for i in frames})
        last = None if wanted is None else (wanted[-1] if wanted else -1)
        keep = None if wanted is None else set(wanted)
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if last is not None and i > last:
                    break
                if (keep is None and i % self.step == 0) or (keep is not None and i in keep):
                    yield i, frame.to_ndarray(format="rgb24")

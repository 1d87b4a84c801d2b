"""PNG, JPEG, TIFF and BMP through Pillow.

8- and 16-bit gray images keep their dtype (``uint8``, ``uint16``); colour images become
RGB ``uint8`` (alpha dropped, palettes expanded). Pillow reads 16-bit colour PNG/TIFF as
8-bit RGB. A multi-page TIFF is a clip: every page is a frame (``stack.tif#3``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from enrich.io._base import FrameRecord, Reader

__all__ = ["PillowReader"]

_GRAY16 = ("I;16", "I;16L", "I;16B", "I;16N")


def _to_array(im: Any) -> np.ndarray:
    """Pillow image → ndarray (H, W) or (H, W, 3), keeping 16-bit gray."""
    mode = im.mode
    if mode in _GRAY16:
        return np.asarray(im, dtype=np.uint16)
    if mode in ("L", "I", "F", "RGB"):
        return np.asarray(im)
    if mode in ("1", "LA", "La"):
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))  # P, PA, RGBA, CMYK, YCbCr, LAB, HSV, ...


class PillowReader(Reader):
    """PNG, JPEG, TIFF and BMP files."""

    name: ClassVar[str] = "pillow"
    suffixes: ClassVar[tuple[str, ...]] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

    def count(self, path: str | Path) -> list[FrameRecord]:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            if w == 0 or h == 0:
                raise ValueError(f"image has size {w}x{h}")
            n = int(getattr(im, "n_frames", 1))
        if n == 1:
            return [FrameRecord(0)]
        return [FrameRecord(i, key=str(i)) for i in range(n)]

    def read(
        self, path: str | Path, frames: Iterable[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        from PIL import Image

        with Image.open(path) as im:
            n = int(getattr(im, "n_frames", 1))
            for i in range(n) if frames is None else frames:
                if not 0 <= i < n:
                    raise ValueError(f"frame {i} is out of range (the file has {n})")
                if n > 1:
                    im.seek(i)
                im.load()
                yield i, _to_array(im)

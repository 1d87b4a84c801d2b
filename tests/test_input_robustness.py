"""Hostile or broken input never stops ``enrich embed``: issue 9, items 1, 2, 7, 11, 16.

Each test reproduces one defect of the adversarial run and fails on the code before the fix.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from enrich.io import discover, read_frames
from enrich.io._paths import fs_path, text_path

RNG = np.random.default_rng(99)
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file names and FIFOs")


def png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(img).save(path)
    return path


def latin1_tree(root: Path) -> tuple[bytes, bytes]:
    """A Latin-1 ``Müller/`` folder with two PNGs and a ``bad\\xffname.png``."""
    folder = os.fsencode(root) + b"/M\xfcller"
    try:
        os.mkdir(folder)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    for k in range(2):
        png(Path(os.fsdecode(folder + f"/{k}.png".encode())), seed=k)
    bad = os.fsencode(root) + b"/bad\xffname.png"
    png(Path(os.fsdecode(bad)), seed=7)
    return folder, bad


def run_with_timeout(fn, seconds: float = 30.0):
    """Run `fn` in a daemon thread; fail (instead of hanging the suite) if it blocks."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---------------------------------------------------------------- item 1: non-UTF-8 names


def test_text_path_round_trips_every_byte():
    raw = bytes(range(1, 256)).replace(b"/", b"")
    name = os.fsdecode(b"/d/" + raw) if os.name == "posix" else "/d/x\\y"
    s = text_path(name)
    s.encode("utf-8")  # storable in Parquet, CSV and JSON
    assert fs_path(s) == name
    # valid names are unchanged, backslashes included
    assert text_path("/d/a\\xffb.png") == "/d/a\\xffb.png"
    assert text_path("/d/Müller/ä.png") == "/d/Müller/ä.png"


@posix_only
def test_non_utf8_names_are_found_stored_and_read_back(tmp_path):
    folder, bad = latin1_tree(tmp_path)
    png(tmp_path / "ok.png")
    found = discover(tmp_path)
    ids = found.manifest["id"].tolist()
    assert ids == ["M\\xfcller/0.png", "M\\xfcller/1.png", "bad\\xffname.png", "ok.png"]
    found.manifest.to_parquet(tmp_path.parent / f"{tmp_path.name}-m.parquet")  # no crash
    # the stored text form leads back to the real bytes path
    paths = found.manifest["source_path"].tolist()
    assert os.fsencode(fs_path(paths[2])) == bad
    assert os.fsencode(fs_path(paths[0])).startswith(folder + b"/")
    got = dict(read_frames(found.manifest))
    assert list(got) == ids
    expected = np.asarray(Image.open(os.fsdecode(bad)), dtype=np.float32) / 255.0
    np.testing.assert_allclose(got["bad\\xffname.png"], expected, atol=1e-6)


# ---------------------------------------------------------------- item 2: one bad source


def test_an_unreadable_source_among_good_ones_is_skipped(tmp_path):
    a, b = png(tmp_path / "a.png", 1), png(tmp_path / "b.png", 2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    (tmp_path / "empty").mkdir()
    found = discover([a, b, broken, tmp_path / "bad", tmp_path / "empty"])
    assert found.manifest["id"].tolist() == ["a.png", "b.png"]
    reasons = dict(found.skipped.itertuples(index=False))
    assert "UnidentifiedImageError" in reasons[broken.as_posix()]
    assert "UnidentifiedImageError" in reasons[(tmp_path / "bad" / "x.png").as_posix()]
    assert reasons[(tmp_path / "empty").as_posix()].startswith("no images found")
    # nothing readable anywhere is still an error, naming a file and its reason
    from enrich.errors import EnrichError

    with pytest.raises(EnrichError, match=r"nothing readable in any of the 2 sources: .*broken"):
        discover([broken, tmp_path / "bad"])


def npz_claiming(path: Path, n: int) -> Path:
    """A tiny .npz whose 'images' header claims `n` 64×64 images and holds none."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": (n, 64, 64)}
    )
    buf.seek(0)
    np.lib.format.read_magic(buf)  # the header is valid
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images.npy", b"\x93NUMPY" + buf.getvalue()[6:])
    return path


def test_a_header_claiming_millions_of_frames_is_refused_at_discovery(tmp_path):
    bogus = npz_claiming(tmp_path / "bogus.npz", 3_000_000)
    assert bogus.stat().st_size < 1000
    png(tmp_path / "a.png")
    found = run_with_timeout(lambda: discover(tmp_path), 20)
    assert found.manifest["id"].tolist() == ["a.png"]
    ((path, reason),) = found.skipped.itertuples(index=False)
    assert path.endswith("bogus.npz") and "claims shape (3000000, 64, 64)" in reason


# ---------------------------------------------------------------- item 7: FIFOs and devices


@posix_only
def test_fifo_and_device_links_are_skipped_not_opened(tmp_path):
    png(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "sub" / "pipe.png")
    os.mkfifo(tmp_path / "IM0001")  # no suffix: DICOM sniffing would open it
    os.symlink("/dev/zero", tmp_path / "zero.npz")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    found = run_with_timeout(lambda: discover(tmp_path))
    assert found.manifest["id"].tolist() == ["a.png"]
    reasons = {Path(p).name: r for p, r in found.skipped.itertuples(index=False)}
    assert reasons["pipe.png"] == reasons["IM0001"] == "not a regular file: a FIFO (named pipe)"
    assert reasons["zero.npz"] == "not a regular file: a character device"
    assert reasons["dangling.png"].startswith("broken symbolic link")
    # a file named on the command line too
    with pytest.raises(Exception, match="FIFO"):
        run_with_timeout(lambda: discover(tmp_path / "sub" / "pipe.png"))


# ---------------------------------------------------------------- item 11: workspaces


def test_enrich_workspaces_under_a_source_are_not_read(tmp_path):
    from enrich.workspace import Workspace

    png(tmp_path / "scan.png")
    ws = Workspace.create(tmp_path / "runs" / "ws")
    png(ws.runs_dir / "red" / "cdf.png")
    # a folder that only looks like one is searched
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "workspace.json").write_text('{"format": "something-else"}')
    png(tmp_path / "other" / "b.png")
    found = discover(tmp_path)
    assert found.manifest["id"].tolist() == ["other/b.png", "scan.png"]
    assert found.skipped.itertuples(index=False).__next__()[0] == ws.path.as_posix()


# ---------------------------------------------------------------- item 16: library warnings


def test_reader_library_warnings_are_collected_not_printed(tmp_path, monkeypatch, recwarn):
    import warnings

    from enrich.io.pillow import PillowReader

    png(tmp_path / "a.png")
    real_count, real_read = PillowReader.count, PillowReader.read

    def noisy_count(self, path):
        warnings.warn("odd chunk in header", UserWarning, stacklevel=1)
        return real_count(self, path)

    def noisy_read(self, path, frames=None):
        for item in real_read(self, path, frames):
            warnings.warn("odd pixel data", RuntimeWarning, stacklevel=1)
            yield item

    monkeypatch.setattr(PillowReader, "count", noisy_count)
    monkeypatch.setattr(PillowReader, "read", noisy_read)
    found = discover(tmp_path)
    stream = read_frames(found.manifest)
    assert [i for i, _ in stream] == ["a.png"]
    assert not recwarn.list  # nothing reached the warnings machinery (stderr)
    where = (tmp_path / "a.png").as_posix()
    assert found.warnings.to_dict("records") == [
        {"source_path": where, "warning": "UserWarning: odd chunk in header"}
    ]
    assert stream.warnings == [(where, "RuntimeWarning: odd pixel data")]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

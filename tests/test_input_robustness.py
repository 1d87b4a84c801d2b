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


def test_workspace_writers_never_crash_on_a_raw_non_utf8_name(tmp_path):
    import pandas as pd

    from enrich.errors import EnrichError
    from enrich.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    raw = "/d/M\udcfcller/a.png"  # as os.walk hands it over
    skips = {"source_path": [raw], "reason": [f"OSError: '{raw}'"]}
    ws.write_skipped(pd.DataFrame(skips, dtype=object))
    assert ws.skipped().to_dict("records") == [
        {"source_path": "/d/M\\xfcller/a.png", "reason": "OSError: '/d/M\\xfcller/a.png'"}
    ]
    with pytest.raises(EnrichError, match=r"1 id\(s\) are not valid UTF-8, e.g. .*M\\\\xfcller"):
        rows = {"id": ["M\udcfcller/a.png"], "source_path": [raw]}
        ws.write_manifest(pd.DataFrame(rows, dtype=object))
    assert not ws.manifest_path.exists()


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


def test_nifti_and_dicom_headers_claiming_more_than_the_file_holds(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = RNG.random((16, 16, 40)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii")
    data = (tmp_path / "vol.nii").read_bytes()
    (tmp_path / "vol.nii").write_bytes(data[: len(data) // 2])
    pydicom_data = pytest.importorskip("pydicom.data")
    clip = pydicom_data.get_testdata_file("color3d_jpeg_baseline.dcm")
    if clip is None:
        pytest.skip("pydicom-data is not installed")
    import pydicom

    ds = pydicom.dcmread(clip)
    ds.NumberOfFrames = 10_000_000  # a JPEG cine of 120 frames claiming ten million
    ds.save_as(tmp_path / "cine.dcm")
    png(tmp_path / "a.png")
    found = run_with_timeout(lambda: discover(tmp_path), 30)
    assert found.manifest["id"].tolist() == ["a.png"]
    reasons = {Path(p).name: r for p, r in found.skipped.itertuples(index=False)}
    assert reasons["vol.nii"].startswith("ValueError: truncated NIfTI: shape (16, 16, 40)")
    assert "truncated DICOM: NumberOfFrames=10000000" in reasons["cine.dcm"]


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


# ---------------------------------------------------------------- enrich embed, end to end


def embed(argv: list[str], capsys) -> tuple[int, str, str]:
    from enrich.cli import main

    rc = main(["embed", *argv, "--embedder", "pixels", "--latent-dim", "4"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


@posix_only
def test_embed_non_utf8_tree_then_reembed_and_rank(tmp_path, capsys):
    from enrich.cli import main
    from enrich.workspace import Workspace

    src = tmp_path / "src"
    src.mkdir()
    latin1_tree(src)
    png(src / "ok.png")
    ws = tmp_path / "ws"
    rc, out, err = embed([str(src), "-w", str(ws)], capsys)
    assert rc == 0, err
    assert out.startswith("embedded 4 images (4 new, 0 skipped")
    w = Workspace.open(ws)
    assert w.manifest()["id"].tolist() == w.embeddings().ids.tolist()
    assert "bad\\xffname.png" in w.manifest()["id"].tolist()
    # the escaped paths lead back to the files: a re-run finds the same ids, embeds nothing
    rc, out, err = embed([str(src), "-w", str(ws)], capsys)
    assert rc == 0 and "(0 new, 0 skipped" in out and "reused model" in out, err
    rc = main(["rank", "-w", str(ws), "-o", str(tmp_path / "order.csv")])
    assert rc == 0
    order = (tmp_path / "order.csv").read_text(encoding="utf-8")
    assert "M\\xfcller/0.png" in order and str(src / "bad\\xffname.png") in order


def test_embed_files_with_one_broken_among_them(tmp_path, capsys):
    from enrich.workspace import Workspace

    files = [str(png(tmp_path / f"{k}.png", k)) for k in range(3)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rc, out, err = embed([*files, str(broken), "--workspace", str(tmp_path / "ws")], capsys)
    assert rc == 0, err
    assert out.startswith("embedded 3 images (3 new, 1 skipped")
    skipped = Workspace.open(tmp_path / "ws").skipped()
    assert skipped["source_path"].tolist() == [broken.as_posix()]
    # nothing readable at all: still one clear line, exit 2
    rc, _, err = embed([str(broken), "-w", str(tmp_path / "ws2")], capsys)
    assert rc == 2 and "nothing readable in" in err and len(err.strip().splitlines()) == 1


def corrupt_npz(path: Path, n: int) -> Path:
    """An .npz whose header is honest but whose data fail their CRC when read."""
    np.savez(path, images=RNG.integers(0, 256, (n, 8, 8), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    for i in range(1000, 1100):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_a_corrupt_file_cannot_take_over_the_training_sample(tmp_path, capsys):
    from enrich.workspace import Workspace

    src = tmp_path / "src"
    corrupt_npz(src.parent / "c.npz", 3000).rename(src.mkdir() or src / "c.npz")
    for k in range(40):
        png(src / f"p{k:02d}.png", k)
    ws = tmp_path / "ws"
    rc, out, err = embed([str(src), "-w", str(ws), "--max-train", "20"], capsys)
    assert rc == 0, err
    # 3,000 of the 3,040 images are in the corrupt file: the first draw hits it ~20 times
    assert "(trained on 20," in out
    config = Workspace.open(ws).model_dir / "config.json"
    import json

    assert json.loads(config.read_text())["fit"]["n_train"] == 20
    assert "BadZipFile" in Workspace.open(ws).skipped()["reason"].str.cat()


def test_a_truncated_clip_trains_on_what_it_can_give(tmp_path, capsys):
    av = pytest.importorskip("av")
    with av.open(str(tmp_path / "full.avi"), "w") as c:
        s = c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuvj420p"
        for i in range(120):
            img = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "cut.avi").write_bytes(data[: len(data) // 2])
    rc, out, err = embed(
        [str(tmp_path / "src"), "-w", str(tmp_path / "ws"), "--max-train", "50"], capsys
    )
    assert rc == 0, err
    n_read = int(out.split(" images")[0].split()[-1])
    assert 50 <= n_read < 120  # the header claims 120 frames; only part decode
    assert "(trained on 50," in out
    # asked for more than can be read: the shortfall is said, honestly
    rc, out, err = embed(
        [str(tmp_path / "src"), "-w", str(tmp_path / "ws2"), "--max-train", "200"], capsys
    )
    assert rc == 0 and f"(trained on {n_read}," in out
    assert f"warning: the model was trained on {n_read} images, not 120" in err


def test_a_workspace_inside_its_source_is_not_read_back(tmp_path, capsys):
    src = tmp_path / "src"
    for k in range(6):
        png(src / f"{k}.png", k)
    ws = src / "runs" / "red-ws"
    rc, out, err = embed([str(src), "-w", str(ws)], capsys)
    assert rc == 0 and out.startswith("embedded 6 images"), err
    png(ws / "runs" / "red" / "cdf.png", 9)  # a figure, as `enrich redundancy` writes
    rc, out, err = embed([str(src), "-w", str(ws)], capsys)
    assert rc == 0 and out.startswith("embedded 6 images (0 new"), (out, err)
    from enrich.workspace import Workspace

    assert all("runs/" not in i for i in Workspace.open(ws).manifest()["id"])


def test_retrain_rebuilds_a_corrupt_model_config(tmp_path, capsys):
    src = tmp_path / "src"
    for k in range(6):
        png(src / f"{k}.png", k)
    ws = tmp_path / "ws"
    assert embed([str(src), "-w", str(ws)], capsys)[0] == 0
    config = ws / "model" / "config.json"
    config.write_text('{"embedder": "pix')
    rc, _, err = embed([str(src), "-w", str(ws)], capsys)
    assert rc == 2 and "config.json" in err and "--retrain" in err
    rc, out, err = embed([str(src), "-w", str(ws), "--retrain"], capsys)
    assert rc == 0 and "trained on 6" in out, err
    import json

    assert json.loads(config.read_text())["embedder"] == "pixels"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

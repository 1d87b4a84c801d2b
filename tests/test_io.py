"""Readers, discovery and streaming on real small files written with the real libraries."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from enrich.errors import EnrichError, MissingExtraError
from enrich.io import (
    MANIFEST_COLUMNS,
    DicomReader,
    NiftiReader,
    NpzReader,
    PillowReader,
    VideoReader,
    discover,
    read_frames,
)
from enrich.preprocess import Preprocess

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------- writers (real libraries)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    patient: str = "PAT-1",
    series: str | None = None,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    modality: str = "OT",
    extra: dict | None = None,
) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.PatientID = patient
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.Modality = modality
    bits = bits_stored or pixels.dtype.itemsize * 8
    ds.set_pixel_data(pixels, photometric, bits)
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_video(path: Path, n: int, *, codec: str = "mpeg4", size: tuple[int, int] = (32, 48)):
    import av

    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height = w, h
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(n):
            img = np.full((h, w, 3), 20 + 25 * i, dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def frames_of(reader, path, frames=None):
    return dict(reader.read(path, frames))


# ---------------------------------------------------------------- Pillow formats


def test_pillow_formats_round_trip(tmp_path):
    gray8 = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    gray16 = RNG.integers(0, 65536, (20, 30), dtype=np.uint16)
    rgb = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    rgba = RNG.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(gray8).save(tmp_path / "g8.png")
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(gray16).save(tmp_path / "g16.tif")
    Image.fromarray(rgb).save(tmp_path / "rgb.bmp")
    yy, xx = np.mgrid[0:20, 0:30]
    smooth = np.stack([xx * 8, yy * 12, 255 - xx * 8], axis=-1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "rgb.jpg", quality=95)
    r = PillowReader()
    exact = {
        "g8.png": gray8,
        "g16.png": gray16,
        "rgb.png": rgb,
        "rgba.png": rgba[..., :3],
        "g16.tif": gray16,
        "rgb.bmp": rgb,
    }
    for name, want in exact.items():
        assert r.verify(tmp_path / name)
        assert r.count(tmp_path / name)[0].key is None
        ((frame, got),) = r.read(tmp_path / name)
        assert frame == 0
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    ((_, jpg),) = r.read(tmp_path / "rgb.jpg")
    assert jpg.shape == smooth.shape and jpg.dtype == np.uint8
    assert np.abs(jpg.astype(int) - smooth).mean() < 4  # lossy, but the same picture


def test_multipage_tiff_is_a_clip(tmp_path):
    pages = [np.full((8, 9), 10 * i, dtype=np.uint8) for i in range(3)]
    Image.fromarray(pages[0]).save(
        tmp_path / "stack.tif", save_all=True, append_images=[Image.fromarray(p) for p in pages[1:]]
    )
    found = discover(tmp_path)
    m = found.manifest
    assert list(m.id) == ["stack.tif#0", "stack.tif#1", "stack.tif#2"]
    assert set(m.clip_id) == {"stack.tif"}
    got = frames_of(PillowReader(), tmp_path / "stack.tif", [2, 0])
    np.testing.assert_array_equal(got[2], pages[2])


def test_discover_folder_ids_and_columns(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    img = RNG.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "z.png")
    Image.fromarray(img).save(tmp_path / "a" / "b" / "x.PNG")
    Image.fromarray(img).save(tmp_path / "a" / "y.jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    Image.fromarray(img).save(tmp_path / ".hidden" / "h.png")
    found = discover(tmp_path)
    m = found.manifest
    assert tuple(m.columns) == MANIFEST_COLUMNS
    assert list(m.id) == ["a/b/x.PNG", "a/y.jpeg", "z.png"]  # sorted walk, posix, relative
    assert m.frame.dtype == np.int64 and (m.frame == 0).all()
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in m.source_path)
    assert m.patient_id.isna().all() and m.clip_id.isna().all()
    assert found.skipped.empty  # notes.txt is ignored, not skipped
    # ids do not depend on where the folder is
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    import shutil

    shutil.copytree(tmp_path, moved)
    assert list(discover(moved).manifest.id) == list(m.id)


# ---------------------------------------------------------------- DICOM


def test_dicom_single_frame_metadata_and_pixels(tmp_path):
    px = RNG.integers(0, 4096, (24, 20), dtype=np.uint16)
    write_dicom(
        tmp_path / "s" / "one.dcm", px, patient="P7", series="1.2.826.0.1.99", bits_stored=12
    )
    found = discover(tmp_path)
    row = found.manifest.iloc[0]
    assert row.id == "s/one.dcm" and row.patient_id == "P7" and row.clip_id == "1.2.826.0.1.99"
    ((_, got),) = DicomReader().read(tmp_path / "s" / "one.dcm")
    np.testing.assert_array_equal(got, px)


@pytest.mark.parametrize("small_file", [16 << 20, 0], ids=["parsed-once", "frame-by-frame"])
def test_dicom_multiframe_every_frame_is_an_image(tmp_path, monkeypatch, small_file):
    monkeypatch.setattr("enrich.io.dicom._SMALL_FILE", small_file)
    px = np.stack([np.full((10, 12), 100 * i, dtype=np.uint16) for i in range(5)])
    px[:, 0, 0] = 7
    write_dicom(tmp_path / "cine.dcm", px, patient="P2")
    m = discover(tmp_path).manifest
    assert list(m.id) == [f"cine.dcm#{i}" for i in range(5)]
    assert list(m.frame) == list(range(5))
    assert (m.patient_id == "P2").all() and m.clip_id.nunique() == 1
    got = frames_of(DicomReader(), tmp_path / "cine.dcm", [1, 3])
    assert sorted(got) == [1, 3]
    np.testing.assert_array_equal(got[3], px[3])


def test_dicom_ct_rescale_and_window(tmp_path):
    stored = RNG.integers(0, 2500, (16, 16)).astype(np.uint16)
    stored[0, :3] = [0, 1024, 2500]
    common = {"RescaleSlope": 1, "RescaleIntercept": -1024}
    write_dicom(tmp_path / "ct_raw.dcm", stored, modality="CT", extra=common)
    write_dicom(
        tmp_path / "ct_win.dcm",
        stored,
        modality="CT",
        extra={**common, "WindowCenter": 40, "WindowWidth": 400},
    )
    ((_, hu),) = DicomReader().read(tmp_path / "ct_raw.dcm")
    np.testing.assert_allclose(hu, stored.astype(np.float64) - 1024)
    ((_, win),) = DicomReader().read(tmp_path / "ct_win.dcm")
    assert win.dtype == np.float32 and win.min() >= 0 and win.max() <= 1
    # DICOM PS3.3 C.11.2.1.2.1 linear window, mapped to [0, 1]
    x = stored.astype(np.float64) - 1024
    want = np.clip((x - (40 - 0.5)) / (400 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(win, want, atol=2e-3)
    assert win[0, 0] == 0.0 and win[0, 2] == 1.0  # air black, bone white


def test_dicom_monochrome1_inverted(tmp_path):
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 60
    extra = {"WindowCenter": 1900, "WindowWidth": 3800}
    write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", extra=extra)
    write_dicom(tmp_path / "m2.dcm", stored, photometric="MONOCHROME2", extra=extra)
    ((_, m1),) = DicomReader().read(tmp_path / "m1.dcm")
    ((_, m2),) = DicomReader().read(tmp_path / "m2.dcm")
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m2[0, 0] < m2[-1, -1]


def test_dicom_found_by_content_without_suffix(tmp_path):
    write_dicom(tmp_path / "IM0001", np.zeros((4, 4), dtype=np.uint8) + 9)
    (tmp_path / "README").write_text("x" * 200)
    m = discover(tmp_path).manifest
    assert list(m.id) == ["IM0001"]


def test_echo_clip_from_pydicom_data():
    data = pytest.importorskip("pydicom.data")
    path = data.get_testdata_file("color3d_jpeg_baseline.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    found = discover(path)
    m = found.manifest
    assert len(m) == 120
    assert list(m.id) == [f"color3d_jpeg_baseline.dcm#{i}" for i in range(120)]
    assert (m.patient_id == "204").all()
    assert m.clip_id.nunique() == 1 and m.clip_id.iloc[0].startswith("1.2.840.114340")
    frames = frames_of(DicomReader(), path, [0, 60, 119])
    for arr in frames.values():
        assert arr.shape == (480, 640, 3) and arr.dtype == np.uint8
    # decoded (YBR → RGB) ultrasound: mostly dark, with a bright sector, and it moves
    assert 5 < frames[0].mean() < 120
    assert np.abs(frames[0].astype(int) - frames[60]).mean() > 0.5
    stream = read_frames(m, preprocess=Preprocess(), batch_size=50)
    shapes = [(len(ids), x.shape, x.dtype) for ids, x in stream]
    assert [s[0] for s in shapes] == [50, 50, 20]
    assert shapes[0][1] == (50, 64, 64) and shapes[0][2] == np.float32
    assert not stream.skipped


def test_truncated_dicom_is_skipped_with_reason(tmp_path):
    good = write_dicom(tmp_path / "good.dcm", np.ones((32, 32), dtype=np.uint16))
    data = good.read_bytes()
    (tmp_path / "bad.dcm").write_bytes(data[: len(data) - 900])
    found = discover(tmp_path)
    assert list(found.manifest.id) == ["good.dcm"]
    ((path, reason),) = found.skipped.itertuples(index=False)
    assert path.endswith("bad.dcm") and "truncated" in reason


# ---------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_nifti_slices_along_axis(tmp_path, name):
    nib = pytest.importorskip("nibabel")
    vol = RNG.normal(size=(6, 5, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / name))
    m = discover(tmp_path).manifest
    assert list(m.id) == [f"{name}#{k}" for k in range(4)]
    assert set(m.clip_id) == {name}
    got = frames_of(NiftiReader(), tmp_path / name)
    np.testing.assert_allclose(got[2], np.rot90(vol[:, :, 2]))
    m0 = discover(tmp_path, nifti_axis=0).manifest
    assert len(m0) == 6
    got0 = frames_of(NiftiReader(axis=0), tmp_path / name, [5])
    np.testing.assert_allclose(got0[5], np.rot90(vol[5]))
    # streaming uses the same axis when given the discovery's options
    found = discover(tmp_path, nifti_axis=1)
    shapes = {x.shape for _, x in found.read_frames()}
    assert len(found.manifest) == 5 and shapes == {(4, 6)}


def test_nifti_4d_series(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.arange(3 * 4 * 2 * 2, dtype=np.int16).reshape(3, 4, 2, 2)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "fmri.nii"))
    r = NiftiReader()
    assert len(r.count(tmp_path / "fmri.nii")) == 4
    got = frames_of(r, tmp_path / "fmri.nii", [3])  # t=1, slice=1
    np.testing.assert_array_equal(got[3], np.rot90(vol[:, :, 1, 1]))


# ---------------------------------------------------------------- video


@pytest.mark.parametrize(("name", "codec"), [("loop.mp4", "mpeg4"), ("loop.avi", "mjpeg")])
def test_video_every_frame_and_step(tmp_path, name, codec):
    pytest.importorskip("av")
    write_video(tmp_path / name, 7, codec=codec)
    m = discover(tmp_path).manifest
    assert list(m.id) == [f"{name}#{i}" for i in range(7)]
    assert set(m.clip_id) == {name}
    got = frames_of(VideoReader(), tmp_path / name)
    assert len(got) == 7 and got[0].shape == (32, 48, 3) and got[0].dtype == np.uint8
    means = [got[i].mean() for i in range(7)]
    np.testing.assert_allclose(means, [20 + 25 * i for i in range(7)], atol=6)
    m3 = discover(tmp_path, video_step=3).manifest
    assert list(m3.id) == [f"{name}#0", f"{name}#3", f"{name}#6"]
    streamed = dict(read_frames(m3))
    assert abs(streamed[f"{name}#3"].mean() * 255 - (20 + 75)) < 6


def test_video_without_frame_count_is_decoded_to_count(tmp_path):
    av = pytest.importorskip("av")
    write_video(tmp_path / "clip.mkv", 5)
    with av.open(str(tmp_path / "clip.mkv")) as c:
        assert c.streams.video[0].frames == 0  # Matroska stores no frame count
    m = discover(tmp_path, video_step=2).manifest
    assert list(m.id) == ["clip.mkv#0", "clip.mkv#2", "clip.mkv#4"]
    assert [x.shape for _, x in read_frames(m)] == [(32, 48)] * 3


def test_zero_frame_video_is_skipped(tmp_path):
    av = pytest.importorskip("av")
    write_video(tmp_path / "ok.mp4", 2)
    with av.open(str(tmp_path / "empty.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
    assert (tmp_path / "empty.mp4").stat().st_size > 0
    found = discover(tmp_path)
    assert set(found.manifest.id) == {"ok.mp4#0", "ok.mp4#1"}
    ((path, reason),) = found.skipped.itertuples(index=False)
    assert path.endswith("empty.mp4") and ("no video stream" in reason or "no frames" in reason)


# ---------------------------------------------------------------- npz


def test_npz_split_layout(tmp_path):
    imgs = {
        s: RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for s, n in [("train", 5), ("val", 2), ("test", 3)]
    }
    np.savez(
        tmp_path / "pm.npz",
        **{f"{s}_images": a for s, a in imgs.items()},
        **{f"{s}_labels": (np.arange(len(a)) % 2).reshape(-1, 1) for s, a in imgs.items()},
        train_source_index=np.array([f"x{i}" for i in range(5)]),
    )
    m = discover(tmp_path).manifest
    assert list(m.id[:6]) == [f"pm.npz#train/{i}" for i in range(5)] + ["pm.npz#val/0"]
    assert list(m.id[-1:]) == ["pm.npz#test/2"]
    assert list(m.split) == ["train"] * 5 + ["val"] * 2 + ["test"] * 3
    assert list(m.label[:3]) == ["0", "1", "0"]
    assert m.clip_id.isna().all()
    got = dict(read_frames(m, preprocess=lambda x: x))
    np.testing.assert_array_equal(got["pm.npz#val/1"], imgs["val"][1])


def test_npz_single_array_layouts(tmp_path):
    imgs = RNG.integers(0, 256, (4, 10, 12), dtype=np.uint8)
    np.savez(tmp_path / "hc.npz", images=imgs, masks=imgs > 100, subject_id=np.array([3, 3, 8, 9]))
    padded = np.zeros((3, 12, 16), dtype=np.uint8)
    padded[:, :12, :10] = 50
    np.savez(
        tmp_path / "oct.npz",
        images_256=RNG.integers(0, 256, (3, 8, 8), dtype=np.uint8),
        images_native_padded=padded,
        orig_hw=np.array([[12, 10]] * 3),
        labels=np.array([0, 3, 1], dtype=np.uint8),
        patient_id=np.array(["a", "b", "b"]),
    )
    np.savez(tmp_path / "plain.npz", RNG.random((2, 6, 6, 3)))
    found = discover(tmp_path)
    m = found.manifest.set_index("id")
    assert m.loc["hc.npz#1", "patient_id"] == "3" and pd.isna(m.loc["hc.npz#1", "label"])
    assert m.loc["oct.npz#1", "label"] == "3" and m.loc["oct.npz#2", "patient_id"] == "b"
    assert "plain.npz#1" in m.index
    r = NpzReader()
    assert r.read(tmp_path / "oct.npz").__next__()[1].shape == (8, 8)  # images_256 by default
    native = dict(NpzReader(key="images_native_padded").read(tmp_path / "oct.npz"))
    assert native[0].shape == (12, 10)  # cropped back to orig_hw


def test_npz_shipped_pneumoniamnist():
    path = REPO / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
    if not path.exists():
        pytest.skip("data/pneumoniamnist is not in this checkout")
    m = discover(path).manifest
    assert len(m) == 4708 + 524 + 624
    assert m.split.value_counts().to_dict() == {"train": 4708, "test": 624, "val": 524}
    assert set(m.label) == {"0", "1"}
    head = m.iloc[[0, 4708, 5855]]
    out = dict(read_frames(head, preprocess=Preprocess(size=32)))
    assert list(out) == [
        "pneumoniamnist.npz#train/0",
        "pneumoniamnist.npz#val/0",
        "pneumoniamnist.npz#test/623",
    ]
    assert all(v.shape == (32, 32) for v in out.values())


# ---------------------------------------------------------------- CSV manifest


def test_csv_manifest(tmp_path):
    img = RNG.integers(0, 256, (8, 8), dtype=np.uint8)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(img).save(tmp_path / "imgs" / "a.png")
    Image.fromarray(img).save(tmp_path / "imgs" / "b.png")
    write_dicom(
        tmp_path / "imgs" / "c.dcm", np.zeros((3, 4, 4), dtype=np.uint8), patient="FROMFILE"
    )
    pd.DataFrame(
        {
            "path": ["imgs/a.png", "imgs/b.png", "imgs/missing.png", "imgs/c.dcm"],
            "patient_id": ["p1", "p2", "p3", ""],
            "label": ["pneumonia", "normal", "x", "cine"],
            "split": ["train", "test", "train", ""],
            "frame": ["", "", "", "2"],
        }
    ).to_csv(tmp_path / "list.csv", index=False)
    found = discover(tmp_path / "list.csv")
    m = found.manifest
    assert list(m.id) == ["imgs/a.png", "imgs/b.png", "imgs/c.dcm#2"]
    assert list(m.patient_id) == ["p1", "p2", "FROMFILE"]  # empty cells fall back to the file
    assert list(m.label) == ["pneumonia", "normal", "cine"]
    assert list(m.split[:2]) == ["train", "test"]
    ((path, reason),) = found.skipped.itertuples(index=False)
    assert path.endswith("missing.png") and "not found" in reason
    (tmp_path / "bad.csv").write_text("file\nimgs/a.png\n")
    with pytest.raises(EnrichError, match=r"bad\.csv has no 'path' column"):
        discover(tmp_path / "bad.csv")


# ---------------------------------------------------------------- bad input


def test_corrupt_and_truncated_png(tmp_path):
    img = RNG.integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "good.png")
    (tmp_path / "garbage.png").write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    found = discover(tmp_path)
    # the header of trunc.png is fine: found now, skipped when read
    assert list(found.manifest.id) == ["good.png", "trunc.png"]
    ((path, reason),) = found.skipped.itertuples(index=False)
    assert path.endswith("garbage.png") and "UnidentifiedImageError" in reason
    seen: list = []
    stream = read_frames(found.manifest, on_skip=seen.append)
    assert [i for i, _ in stream] == ["good.png"]
    assert stream.n_read == 1 and stream.n_skipped == 1
    (skip,) = stream.skipped
    assert skip.ids == ("trunc.png",) and skip.source_path.endswith("trunc.png") and skip.reason
    assert seen == [skip]
    assert list(stream.skipped_frame().columns) == ["source_path", "reason", "n_images"]
    # decoding at discovery catches it there
    checked = discover(tmp_path, check_pixels=True)
    assert list(checked.manifest.id) == ["good.png"]
    assert len(checked.skipped) == 2


def test_empty_and_unreadable_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(EnrichError, match=r"no images found in .*empty"):
        discover(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(EnrichError, match=r"nothing readable in .*broken: 1 file\(s\) skipped"):
        discover(tmp_path / "broken")
    with pytest.raises(EnrichError, match=r"source .*nope does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(EnrichError, match="no sources"):
        discover([])
    # a file named explicitly with an unknown suffix is skipped, not ignored
    with pytest.raises(
        EnrichError, match=r"nothing readable in .*notes\.txt.*unsupported file type"
    ):
        discover(tmp_path / "empty" / "notes.txt")


def test_duplicate_ids_across_sources(tmp_path):
    img = np.zeros((4, 4), dtype=np.uint8)
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        Image.fromarray(img).save(tmp_path / d / "a.png")
    with pytest.raises(EnrichError, match=r"two images get the id 'a\.png'"):
        discover([tmp_path / "x", tmp_path / "y"])
    # the same file reached twice is one image
    m = discover([tmp_path / "x", tmp_path / "x" / "a.png"]).manifest
    assert list(m.id) == ["a.png"]


@pytest.mark.parametrize(
    ("module", "extra", "maker"),
    [
        ("pydicom", "dicom", lambda p: write_dicom(p / "a.dcm", np.zeros((4, 4), dtype=np.uint8))),
        ("nibabel", "nifti", lambda p: (p / "a.nii").write_bytes(b"\0" * 400)),
        ("av", "video", lambda p: (p / "a.mp4").write_bytes(b"\0" * 400)),
    ],
)
def test_missing_extra(tmp_path, monkeypatch, module, extra, maker):
    maker(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # import now fails
    with pytest.raises(MissingExtraError, match=rf"enrich-imaging\[{extra}\]") as info:
        discover(tmp_path)
    assert info.value.extra == extra


# ---------------------------------------------------------------- streaming


def test_stream_order_batches_and_one_open_per_file(tmp_path, monkeypatch):
    write_dicom(tmp_path / "b_cine.dcm", np.arange(4 * 6 * 6, dtype=np.uint8).reshape(4, 6, 6))
    for i in range(3):
        Image.fromarray(np.full((6, 6), 40 * i, dtype=np.uint8)).save(tmp_path / f"a{i}.png")
    found = discover(tmp_path)
    calls: list[str] = []
    original = DicomReader.read

    def spy(self, path, frames=None):
        calls.append(str(path))
        yield from original(self, path, frames)

    monkeypatch.setattr(DicomReader, "read", spy)
    stream = read_frames(found.manifest, batch_size=3)
    assert calls == []  # lazy: nothing is read before iterating
    batches = list(stream)
    assert len(calls) == 1  # the cine file was opened once for its 4 frames
    ids = [i for b, _ in batches for i in b]
    assert ids == list(found.manifest.id)
    assert [x.shape for _, x in batches] == [(3, 6, 6), (3, 6, 6), (1, 6, 6)]
    assert all(x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1 for _, x in batches)
    # a reordered manifest is streamed in its own order
    rev = found.manifest.iloc[::-1]
    assert [i for i, _ in read_frames(rev)] == list(rev.id)


def test_stream_needs_one_shape_for_batches(tmp_path):
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((7, 6), dtype=np.uint8)).save(tmp_path / "b.png")
    m = discover(tmp_path).manifest
    with pytest.raises(EnrichError, match=r"b\.png has shape \(7, 6\).*Preprocess\(size"):
        list(read_frames(m, batch_size=2))
    assert [x.shape for _, x in read_frames(m, preprocess=Preprocess(size=5), batch_size=2)] == [
        (2, 5, 5)
    ]
    with pytest.raises(EnrichError, match="batch_size=0"):
        read_frames(m, batch_size=0)
    with pytest.raises(EnrichError, match="lacks column"):
        read_frames(m.drop(columns="frame"))


def test_stream_file_deleted_after_discovery(tmp_path):
    for n in ("a", "b"):
        Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / f"{n}.png")
    m = discover(tmp_path).manifest
    (tmp_path / "a.png").unlink()
    stream = read_frames(m)
    assert [i for i, _ in stream] == ["b.png"]
    assert stream.skipped[0].ids == ("a.png",) and "FileNotFoundError" in stream.skipped[0].reason


def test_stream_random_subset_of_npz_decompresses_once(tmp_path, monkeypatch):
    imgs = {s: RNG.integers(0, 256, (30, 6, 6), dtype=np.uint8) for s in ("train", "val", "test")}
    np.savez_compressed(tmp_path / "d.npz", **{f"{s}_images": a for s, a in imgs.items()})
    m = discover(tmp_path).manifest
    shuffled = m.sample(frac=1.0, random_state=np.random.default_rng(0).integers(1 << 30))
    loads: list[str] = []
    original = np.lib.npyio.NpzFile.__getitem__

    def spy(self, key):
        loads.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    got = dict(read_frames(shuffled, preprocess=lambda x: x))
    assert list(got) == list(shuffled.id)  # manifest order, even across runs
    for image_id, img in got.items():
        split, i = image_id.split("#")[1].split("/")
        np.testing.assert_array_equal(img, imgs[split][int(i)])
    assert sorted(k for k in loads if k.endswith("_images")) == [
        "test_images",
        "train_images",
        "val_images",
    ]


def test_stream_file_order_opens_each_video_once(tmp_path, monkeypatch):
    pytest.importorskip("av")
    write_video(tmp_path / "a.mp4", 6)
    write_video(tmp_path / "b.mp4", 4)
    m = discover(tmp_path).manifest
    shuffled = m.iloc[[7, 2, 9, 0, 5, 6, 1]]
    calls: list[str] = []
    original = VideoReader.read

    def spy(self, path, frames=None):
        calls.append(Path(path).name)
        yield from original(self, path, frames)

    monkeypatch.setattr(VideoReader, "read", spy)
    got = dict(read_frames(shuffled, order="file"))
    assert calls == ["b.mp4", "a.mp4"]  # first appearance, once each
    assert list(got) == [
        "b.mp4#0",
        "b.mp4#1",
        "b.mp4#3",
        "a.mp4#0",
        "a.mp4#1",
        "a.mp4#2",
        "a.mp4#5",
    ]
    assert abs(got["a.mp4#5"].mean() * 255 - (20 + 125)) < 6
    calls.clear()
    assert [i for i, _ in read_frames(shuffled)] == list(shuffled.id)  # manifest order
    assert len(calls) == 6  # runs: b#1 | a#2 | b#3 | a#0, a#5 | b#0 | a#1
    with pytest.raises(EnrichError, match="order='random'"):
        read_frames(m, order="random")


def test_dicom_palette_colour_and_rle_from_pydicom_data():
    data = pytest.importorskip("pydicom.data")
    plain = data.get_testdata_file("OBXXXX1A.dcm")
    rle = data.get_testdata_file("OBXXXX1A_rle.dcm")
    if plain is None or rle is None:
        pytest.skip("pydicom-data is not installed")
    ((_, a),) = DicomReader().read(plain)
    ((_, b),) = DicomReader().read(rle)
    assert a.shape == (600, 800, 3) and a.dtype == np.uint8
    assert a.max() > 200 and len(np.unique(a.reshape(-1, 3), axis=0)) > 10  # real colours
    np.testing.assert_array_equal(a, b)  # RLE Lossless decodes to the same pixels


def test_csv_manifest_folder_rows(tmp_path):
    for patient, n in (("P1", 2), ("P2", 1)):
        (tmp_path / "scans" / patient).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((5, 5), i, dtype=np.uint8)).save(
                tmp_path / "scans" / patient / f"{i}.png"
            )
    (tmp_path / "scans" / "empty").mkdir()
    pd.DataFrame(
        {"path": ["scans/P1", "scans/P2", "scans/empty"], "patient_id": ["P1", "P2", "P3"]}
    ).to_csv(tmp_path / "m.csv", index=False)
    found = discover(tmp_path / "m.csv")
    m = found.manifest
    assert list(m.id) == ["scans/P1/0.png", "scans/P1/1.png", "scans/P2/0.png"]
    assert list(m.patient_id) == ["P1", "P1", "P2"]
    assert list(found.skipped.reason) == ["no images in folder (listed in m.csv)"]


def test_discover_exclude_folder(tmp_path):
    img = np.zeros((4, 4), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "scan.png")
    (tmp_path / "ws" / "runs").mkdir(parents=True)
    Image.fromarray(img).save(tmp_path / "ws" / "runs" / "figure.png")
    assert len(discover(tmp_path).manifest) == 2
    assert list(discover(tmp_path, exclude=[tmp_path / "ws"]).manifest.id) == ["scan.png"]

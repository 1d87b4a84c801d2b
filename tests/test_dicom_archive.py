"""DICOM as archives hold it, on the real files of pydicom and pydicom-data.

Enhanced multi-frame pixel transforms (functional groups) against pydicom's own functions,
non-image SOP classes skipped with a reason, modality filter, deflated and preamble-less
files, collected warnings, and skip reasons that say what to do.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from enrich.cli import main
from enrich.io import discover, read_frames
from enrich.io.dicom import DicomReader, frame_view

pydicom = pytest.importorskip("pydicom")
from pydicom.pixels import (  # noqa: E402
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
)


def sample(name: str) -> Path:
    """A file of pydicom's test data or of the pydicom-data package (no download)."""
    from pydicom.data import get_charset_files, get_testdata_file

    path = get_testdata_file(name, download=False) or next(iter(get_charset_files(name)), None)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    return Path(path)


def link(folder: Path, *names: str) -> Path:
    """Symlink real test files into `folder` (no copies); return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(sample(name), folder / name)
    return folder


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR window, onto [0, 1] (written out, not pydicom's)."""
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def skip_reasons(skipped) -> dict[str, str]:
    """file name → reason, from a ``source_path, reason`` table."""
    return {Path(p).name: r for p, r in zip(skipped.source_path, skipped.reason, strict=True)}


def read_all(path: Path) -> dict[int, np.ndarray]:
    return dict(DicomReader().read(path))


# -- enhanced multi-frame: functional groups ---------------------------------------------------
def test_enhanced_ct_shared_groups_rescale_and_window():
    path = sample("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    pvt = shared.PixelValueTransformationSequence[0]
    voi = shared.FrameVOILUTSequence[0]
    # what the issue quotes: the values live only in the shared functional group
    assert (float(pvt.RescaleIntercept), float(pvt.RescaleSlope)) == (-1024.0, 1.0)
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (49.0, 102.0)
    assert "RescaleIntercept" not in ds and "WindowCenter" not in ds
    raw = ds.pixel_array  # (2, 512, 512) uint16, 0..1196
    got = read_all(path)
    assert sorted(got) == [0, 1]
    for i in (0, 1):
        x = got[i]
        assert x.dtype == np.float32 and x.shape == (512, 512)
        hu = raw[i].astype(np.float64) * 1.0 - 1024.0
        np.testing.assert_allclose(x, linear_window(hu, 49.0, 102.0), atol=1e-6)
        # and pydicom's own functions on the same values give the same image
        flat = pydicom.dcmread(path, stop_before_pixels=True)
        flat.RescaleIntercept, flat.RescaleSlope = -1024, 1
        flat.WindowCenter, flat.WindowWidth = 49, 102
        y = apply_voi_lut(apply_modality_lut(raw[i], flat), flat, index=0)
        lo, hi = apply_voi_lut(np.array([-1e12, 1e12]), flat, index=0)
        np.testing.assert_allclose(x, (y - lo) / (hi - lo), atol=1e-6)
        # brain tissue now spans the range instead of a sliver of 0..1196
        assert 0.2 < ((x > 0) & (x < 1)).mean() < 0.6


def test_enhanced_ct_per_frame_groups_override_shared(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(sample("eCT_Supplemental.dcm"))
    item = ds.PerFrameFunctionalGroupsSequence[1]
    pvt, voi = Dataset(), Dataset()
    pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = "-1000", "2", "HU"
    voi.WindowCenter, voi.WindowWidth = "300", "600"
    item.PixelValueTransformationSequence = Sequence([pvt])
    item.FrameVOILUTSequence = Sequence([voi])
    path = tmp_path / "per_frame.dcm"
    ds.save_as(path)
    raw = ds.pixel_array
    got = read_all(path)
    np.testing.assert_allclose(got[0], linear_window(raw[0] - 1024.0, 49.0, 102.0), atol=1e-6)
    np.testing.assert_allclose(
        got[1], linear_window(raw[1] * 2.0 - 1000.0, 300.0, 600.0), atol=1e-6
    )
    # frame_view hands pydicom the frame's values
    for i, (slope, icpt, c, w) in enumerate(((1, -1024, 49, 102), (2, -1000, 300, 600))):
        view = frame_view(ds, i)
        assert (float(view.RescaleSlope), float(view.RescaleIntercept)) == (slope, icpt)
        assert (float(view.WindowCenter), float(view.WindowWidth)) == (c, w)
        y = apply_voi_lut(apply_modality_lut(raw[i], view), view, index=0)
        lo, hi = apply_voi_lut(np.array([-1e12, 1e12]), view, index=0)
        np.testing.assert_allclose(got[i], (y - lo) / (hi - lo), atol=1e-6)
    # reading a subset of frames uses each frame's own values
    ((k, only),) = DicomReader().read(path, [1])
    assert k == 1
    np.testing.assert_array_equal(only, got[1])


def test_voi_lut_sequence_is_applied():
    # vlut_04.dcm: 8-bit pixels through a 256-entry, 16-bit VOI LUT (no window)
    path = sample("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ((_, x),) = DicomReader().read(path)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    y = apply_voi_lut(ds.pixel_array, ds, index=0).astype(np.float64)
    np.testing.assert_allclose(x, (y - lut.min()) / (lut.max() - lut.min()), atol=1e-6)
    np.testing.assert_allclose(x, lut[ds.pixel_array] / lut.max(), atol=1e-6)  # lut.min() == 0


def test_classic_ct_top_level_rescale_still_applies():
    path = sample("CT_small.dcm")
    ds = pydicom.dcmread(path)
    ((_, x),) = DicomReader().read(path)
    np.testing.assert_allclose(x, apply_modality_lut(ds.pixel_array, ds), atol=1e-4)


# -- non-image SOP classes and the modality filter ----------------------------------------------
NON_IMAGES = ("liver.dcm", "liver_1frame.dcm", "rtdose.dcm", "rtdose_1frame.dcm")


def test_seg_and_rtdose_are_skipped_with_the_reason(tmp_path):
    folder = link(tmp_path / "in", "CT_small.dcm", "MR_small.dcm", *NON_IMAGES)
    found = discover(folder)
    m = found.manifest
    assert sorted(m.id) == ["CT_small.dcm", "MR_small.dcm"]
    assert dict(zip(m.id, m.modality, strict=True)) == {"CT_small.dcm": "CT", "MR_small.dcm": "MR"}
    assert set(m.sop_class) == {"CT Image Storage", "MR Image Storage"}
    reasons = skip_reasons(found.skipped)
    assert sorted(reasons) == sorted(NON_IMAGES)
    for name in ("liver.dcm", "liver_1frame.dcm"):
        assert reasons[name].startswith("Segmentation Storage (SEG) is a segmentation")
        assert "--include-sop SEG" in reasons[name]
    for name in ("rtdose.dcm", "rtdose_1frame.dcm"):
        assert reasons[name].startswith("RT Dose Storage (RTDOSE)")
        assert "--include-sop RTDOSE" in reasons[name]

    both = discover(folder, include_sop="seg,RTDOSE")
    mods = both.manifest.groupby("modality").size().to_dict()
    # liver.dcm has 3 frames, liver_1frame 1; rtdose.dcm 15, rtdose_1frame 1
    assert mods == {"CT": 1, "MR": 1, "SEG": 4, "RTDOSE": 16}
    assert len(both.skipped) == 0
    only_seg = discover(folder, include_sop=["SEG"])
    assert set(only_seg.manifest.modality) == {"CT", "MR", "SEG"}
    everything = discover(folder, include_sop="all")
    assert len(everything.manifest) == len(both.manifest)


def test_objects_without_pixels_say_there_is_nothing_to_embed(tmp_path):
    folder = link(tmp_path / "in", "CT_small.dcm", "rtplan.dcm", "test-SR.dcm", "rtstruct.dcm")
    found = discover(folder, include_sop="all")
    assert list(found.manifest.id) == ["CT_small.dcm"]
    reasons = skip_reasons(found.skipped)
    assert reasons["rtplan.dcm"].startswith("RT Plan Storage (RTPLAN)")
    assert reasons["test-SR.dcm"].startswith("Comprehensive SR Storage (SR)")
    # rtstruct.dcm has no preamble: read with force, then recognised
    assert reasons["rtstruct.dcm"].startswith("RT Structure Set Storage (RTSTRUCT)")
    assert all(r.endswith("nothing to embed") for r in reasons.values())


def test_unknown_include_sop_code_is_one_clear_error(tmp_path):
    from enrich.errors import EnrichError

    folder = link(tmp_path / "in", "CT_small.dcm")
    with pytest.raises(EnrichError, match="include_sop SEGG: expected codes among SEG"):
        discover(folder, include_sop="SEGG")
    with pytest.raises(EnrichError, match="modality=' , ': expected DICOM modalities"):
        discover(folder, modality=" , ")


def test_modality_filter(tmp_path):
    folder = link(tmp_path / "in", "CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "photo.png")
    found = discover(folder, modality="ct, mr")
    assert sorted(found.manifest.id) == ["CT_small.dcm", "MR_small.dcm"]
    reasons = skip_reasons(found.skipped)
    assert reasons == {
        "JPEG2000.dcm": "modality NM is not in --modality CT,MR: left out (add NM to embed it)",
        "photo.png": "no DICOM modality (not DICOM, or no Modality tag): left out by --modality "
        "CT,MR (drop the option to embed it)",
    }
    assert len(discover(folder).manifest) == 4


# -- deflated, preamble-less, warnings, reasons --------------------------------------------------
def test_deflated_and_preamble_less_files_are_read(tmp_path):
    folder = link(tmp_path / "in", "image_dfl.dcm", "OT-PAL-8-face.dcm", "no_meta.dcm")
    # the same preamble-less file without a suffix is found by its content
    (folder / "IM0001").write_bytes(sample("OT-PAL-8-face.dcm").read_bytes())
    found = discover(folder)
    assert sorted(found.manifest.id) == ["IM0001", "OT-PAL-8-face.dcm", "image_dfl.dcm"]
    (nm,) = found.skipped.source_path
    assert Path(nm).name == "no_meta.dcm"  # starts with a stray byte: not plausibly DICOM
    assert found.skipped.reason[0].startswith("not a DICOM file: no 'DICM' marker")

    ((_, dfl),) = DicomReader().read(folder / "image_dfl.dcm")
    np.testing.assert_array_equal(dfl, pydicom.dcmread(folder / "image_dfl.dcm").pixel_array)
    ds = pydicom.dcmread(folder / "OT-PAL-8-face.dcm", force=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    want = apply_color_lut(ds.pixel_array, ds)  # 16-bit palette entries → 8 bits
    want = (want.astype(np.float32) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    ((_, face),) = DicomReader().read(folder / "OT-PAL-8-face.dcm")
    assert face.shape == (480, 640, 3) and face.dtype == np.uint8
    np.testing.assert_array_equal(face, want)
    stream = read_frames(found.manifest)
    assert len(list(stream)) == 3 and not stream.skipped


def test_pydicom_warnings_are_collected_not_printed(tmp_path):
    folder = link(tmp_path / "in", "bad_sequence.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        found = discover(folder)
        stream = read_frames(found.manifest)
        got = [i for i, _ in stream]
    assert got == ["bad_sequence.dcm"]
    noted = [
        w
        for p, w in found.warnings[["source_path", "warning"]].itertuples(index=False)
        if Path(p).name == "bad_sequence.dcm"
    ]
    assert any("Invalid value for VR UI" in m for m in noted)
    (skip,) = stream.skipped
    assert Path(skip.source_path).name == "emri_small_jpeg_2k_lossless_too_short.dcm"
    assert len(skip.ids) == 10
    assert skip.reason.startswith("the file ends before or inside its pixel data")
    assert "re-export" in skip.reason and "(pydicom warned: End of file reached" in skip.reason


def test_skip_reasons_say_what_to_do(tmp_path):
    folder = link(
        tmp_path / "in",
        "MR_truncated.dcm",
        "badVR.dcm",
        "JPEG-lossy.dcm",
        "liver_1frame.dcm",
        "waveform_ecg.dcm",
        "chrJapMulti.dcm",
        "CT_small.dcm",
    )
    found = discover(
        folder, include_sop="RTDOSE"
    )  # badVR.dcm is an RT dose with NumberOfFrames '1A'
    stream = read_frames(found.manifest)
    list(stream)
    reasons = skip_reasons(found.skipped)
    reasons.update({Path(s.source_path).name: s.reason for s in stream.skipped})
    assert sorted(reasons) == sorted(
        ["MR_truncated.dcm", "badVR.dcm", "JPEG-lossy.dcm", "liver_1frame.dcm", "waveform_ecg.dcm",
         "chrJapMulti.dcm"]
    )  # fmt: skip
    assert "truncated DICOM" in reasons["MR_truncated.dcm"]
    assert "malformed value in the DICOM header" in reasons["badVR.dcm"]
    assert "cannot decode the JPEG Extended" in reasons["JPEG-lossy.dcm"]
    assert "no Pixel Data" in reasons["chrJapMulti.dcm"]
    actions = ("re-export", "install", "--include-sop", "nothing to embed", "dcmodify")
    for name, reason in reasons.items():
        assert any(a in reason for a in actions), (name, reason)
        assert not reason.startswith(("ValueError", "RuntimeError", "InvalidDicomError")), reason


def test_embed_cli_modality_and_include_sop(tmp_path, capsys):
    folder = link(tmp_path / "in", "CT_small.dcm", "MR_small.dcm", "liver_1frame.dcm")
    (folder / "MR_copy.dcm").write_bytes(sample("MR_small.dcm").read_bytes())
    ws = tmp_path / "ws"
    args = ["embed", str(folder), "-w", str(ws), "--embedder", "pixels", "--latent-dim", "2"]
    assert main([*args, "--modality", "MR,SEG", "--include-sop", "SEG"]) == 0
    capsys.readouterr()
    import pandas as pd

    m = pd.read_parquet(ws / "manifest.parquet")
    assert sorted(m.id) == ["MR_copy.dcm", "MR_small.dcm", "liver_1frame.dcm"]
    assert sorted(m.modality) == ["MR", "MR", "SEG"]
    skipped = pd.read_csv(ws / "skipped.csv")
    assert [Path(p).name for p in skipped.source_path] == ["CT_small.dcm"]
    assert main([*args, "--include-sop", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "include_sop NONSENSE: expected codes among SEG" in err and "Traceback" not in err


@pytest.mark.slow
def test_every_pydicom_test_file(tmp_path):
    """Discover and read every DICOM file of pydicom and pydicom-data: nothing crashes, every
    skip says what to do, no warning escapes, and no SEG or RTDOSE object is embedded."""
    roots = [Path(sample("CT_small.dcm")).parent.parent, sample("eCT_Supplemental.dcm").parent]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = discover(roots)
        stream = read_frames(found.manifest)
        ids = [i for i, _ in stream]
    assert len(ids) > 300
    assert not {"SEG", "RTDOSE"} & set(found.manifest.modality.dropna())
    reasons = list(found.skipped.reason) + [s.reason for s in stream.skipped]
    actions = ("re-export", "install", "--include-sop", "nothing to embed", "dcmodify", "run the")
    for reason in reasons:
        assert any(a in reason for a in actions), reason
    names = {Path(p).name for p in found.manifest.source_path}
    assert {"image_dfl.dcm", "OT-PAL-8-face.dcm", "eCT_Supplemental.dcm"} <= names


def test_embed_cli_prints_one_line_for_pydicom_warnings(tmp_path, capsys):
    import json

    folder = link(tmp_path / "in", "bad_sequence.dcm", "CT_small.dcm", "MR_small.dcm")
    ws = tmp_path / "ws"
    args = ["embed", str(folder), "-w", str(ws), "--embedder", "pixels", "--latent-dim", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(args) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "warned" in line]
    assert len(notes) == 1 and "about 1 file(s)" in notes[0], err
    assert "UserWarning:" not in err.replace(notes[0], "")
    info = json.loads((ws / "embeddings.json").read_text())
    paths = {Path(r["source_path"]).name for r in info["reader_warnings"]}
    assert paths == {"bad_sequence.dcm"}
    assert any("Invalid value for VR UI" in r["warning"] for r in info["reader_warnings"])

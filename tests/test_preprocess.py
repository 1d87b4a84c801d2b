"""Preprocessing steps, each on a real image (OCT, echo, chest X-ray, CT)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from enrich.errors import EnrichError
from enrich.preprocess import (
    Preprocess,
    autocrop_borders,
    center_crop,
    remove_oct_white_edge,
    rescale_intensity,
    resize,
    to_grayscale,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "data" / "io"
SHARED_OCT = REPO.parent / "shared" / "data" / "oct_kermany_val32" / "oct_kermany_val32.npz"


def oct_png(name: str) -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / f"{name}.png"))


@pytest.fixture(scope="module")
def echo_frame() -> np.ndarray:
    """Frame 0 of the real 120-frame echo clip in pydicom-data: (480, 640, 3) uint8."""
    data = pytest.importorskip("pydicom.data")
    path = data.get_testdata_file("color3d_jpeg_baseline.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    from enrich.io import DicomReader

    ((_, frame),) = DicomReader().read(path, [0])
    return frame


@pytest.fixture(scope="module")
def xray() -> np.ndarray:
    """A real 28×28 chest X-ray from the shipped PneumoniaMNIST."""
    path = REPO / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
    if not path.exists():
        pytest.skip("data/pneumoniamnist is not in this checkout")
    with np.load(path) as z:
        return z["train_images"][10]


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    """The real CT slice that ships with pydicom, in Hounsfield units (float)."""
    from pydicom.data import get_testdata_file

    from enrich.io import DicomReader

    ((_, hu),) = DicomReader().read(get_testdata_file("CT_small.dcm"))
    return hu


# ---------------------------------------------------------------- to_grayscale


def test_to_grayscale_matches_bt601_on_echo(echo_frame):
    gray = to_grayscale(echo_frame)
    assert gray.shape == echo_frame.shape[:2] and gray.dtype == np.float32
    # Pillow's "L" conversion uses the same ITU-R 601 weights as OpenCV (the paper's tool)
    pil = np.asarray(Image.fromarray(echo_frame).convert("L"), dtype=np.float32)
    assert np.abs(gray - pil).max() <= 1.0
    # the green marker dot is not equally bright in every channel: weights matter
    assert not np.allclose(gray, echo_frame.mean(axis=2), atol=1.0)


def test_to_grayscale_is_the_same_bits_on_every_cpu(echo_frame):
    """Elementwise float64, rounded once: no BLAS product whose rounding depends on the CPU
    (a colour model's data fingerprint must match on every machine)."""
    rng = np.random.default_rng(0)
    for img in (echo_frame, rng.random((37, 41, 3), dtype=np.float32) * 1000):
        x = img.astype(np.float64)
        want = (x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114).astype(np.float32)
        np.testing.assert_array_equal(to_grayscale(img), want)


def test_to_grayscale_passes_gray_through(xray):
    assert to_grayscale(xray) is xray
    np.testing.assert_array_equal(to_grayscale(xray[..., None]), xray)
    with pytest.raises(EnrichError, match=r"shape \(28,\)"):
        to_grayscale(xray[0])


# ---------------------------------------------------------------- crops


def test_center_crop_on_oct():
    img = oct_png("oct_no_wedge")  # 496 × 768
    sq = center_crop(img)
    assert sq.shape == (496, 496)
    np.testing.assert_array_equal(sq, img[:, 136:632])
    assert center_crop(img, (100, 50)).shape == (100, 50)
    assert center_crop(img, 1000).shape == img.shape  # larger than the image: whole axis
    with pytest.raises(EnrichError, match="crop size"):
        center_crop(img, 0)


def test_autocrop_recovers_a_padded_xray(xray):
    # the X-ray's own edge rows are not black, so the padding is all that is removed
    assert xray[0].max() > 20 and xray[:, 0].max() > 20
    padded = np.pad(xray, ((5, 3), (7, 2)), constant_values=0)
    np.testing.assert_array_equal(autocrop_borders(padded), xray)
    letterbox = np.pad(xray, ((4, 4), (0, 0)), constant_values=255)
    np.testing.assert_array_equal(autocrop_borders(letterbox), xray)


def test_autocrop_on_echo_removes_only_background(echo_frame):
    gray = to_grayscale(echo_frame)
    cropped = autocrop_borders(echo_frame)
    h, w = cropped.shape[:2]
    assert h < gray.shape[0] or w < gray.shape[1]
    # everything outside the crop is black background (in every channel)
    content = echo_frame.max(axis=2) > 0.02 * 255
    rows = np.flatnonzero(content.any(axis=1))
    cols = np.flatnonzero(content.any(axis=0))
    assert (h, w) == (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    # an image with no border is returned whole
    assert autocrop_borders(cropped).shape == cropped.shape


# ---------------------------------------------------------------- resize


def test_resize_oct_to_64(tmp_path):
    img = oct_png("oct_top_wedge")
    small = resize(img)
    assert small.shape == (64, 64) and small.dtype == np.float32
    # antialiased: the mean brightness survives an 8× reduction
    assert abs(small.mean() - img.mean()) < 0.02 * 255
    skimage = pytest.importorskip("skimage.transform")
    # and it agrees with scikit-image's antialiased resize (what the paper used)
    ref = skimage.resize(img.astype(np.float32), (64, 64), anti_aliasing=True, preserve_range=True)
    assert np.abs(small - ref).mean() < 0.03 * 255
    rgb = resize(np.stack([img, img, img], axis=-1), (32, 48))
    assert rgb.shape == (32, 48, 3)
    with pytest.raises(EnrichError, match="resize size"):
        resize(img, (0, 4))


# ---------------------------------------------------------------- OCT white edge


@pytest.mark.parametrize("name", ["oct_top_wedge", "oct_bottom_wedge"])
def test_remove_oct_white_edge_on_real_scans(name):
    img = oct_png(name)
    white_before = (img >= 250).mean()
    assert white_before > 0.02  # the fixture really has a wedge
    out = remove_oct_white_edge(img)
    assert out.dtype == img.dtype
    assert img.shape[1] - 4 <= out.shape[1] <= img.shape[1]  # at most a white side column
    assert out.shape[0] < img.shape[0]  # mostly-white edge rows were cut
    assert (out >= 250).mean() < 0.005
    assert out[0].mean() < 200 and out[-1].mean() < 200  # no white band left at the edges
    # the retina (bright, thin layers) is kept: the brightest rows are still there
    assert np.percentile(out, 99) > 100


def test_remove_oct_white_edge_leaves_clean_scan_alone():
    img = oct_png("oct_no_wedge")
    np.testing.assert_array_equal(remove_oct_white_edge(img), img)
    # floats in [0, 1] work the same way
    flt = remove_oct_white_edge(oct_png("oct_top_wedge").astype(np.float32) / 255)
    assert (flt >= 250 / 255).mean() < 0.005
    with pytest.raises(EnrichError, match="trim"):
        remove_oct_white_edge(img, trim=0)


def test_remove_oct_white_edge_on_all_shared_scans():
    if not SHARED_OCT.exists():
        pytest.skip("../shared/data is not beside this checkout")
    with np.load(SHARED_OCT) as z:
        imgs, hw = z["images_native_padded"], z["orig_hw"]
    for i in range(len(imgs)):
        h, w = hw[i]
        out = remove_oct_white_edge(imgs[i, :h, :w])
        assert (out >= 250).mean() < 0.01, i


# ---------------------------------------------------------------- intensity


def test_rescale_intensity_on_real_ct(ct):
    assert ct.dtype == np.float32 and ct.min() < 0  # Hounsfield units
    x = rescale_intensity(ct)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    # monotone: the order of intensities is kept
    flat, ref = x.ravel(), ct.ravel()
    order = np.argsort(ref, kind="stable")
    assert np.all(np.diff(flat[order]) >= -1e-6)
    p = rescale_intensity(ct, mode="percentile", percentiles=(1, 99))
    assert 0.005 < (p == 1.0).mean() < 0.03 and 0.005 < (p == 0.0).mean() < 0.03


def test_rescale_intensity_16bit_and_8bit(xray):
    x16 = xray.astype(np.uint16) * 16  # a 12-bit image in a 16-bit container
    auto = rescale_intensity(x16)
    assert auto.max() == 1.0  # min–max, not /65535 (which would be nearly black)
    np.testing.assert_allclose(rescale_intensity(x16, mode="dtype"), x16 / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(rescale_intensity(xray), xray / 255.0, rtol=1e-6)
    assert np.all(rescale_intensity(np.full((4, 4), 7, dtype=np.uint16)) == 0)
    with pytest.raises(EnrichError, match="intensity mode 'bogus'"):
        rescale_intensity(xray, mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(EnrichError, match="percentiles"):
        rescale_intensity(xray, mode="percentile", percentiles=(50, 10))


@settings(max_examples=40, deadline=None)
@given(
    img=arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.float32]),
        shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    ),
    mode=st.sampled_from(["auto", "dtype", "minmax", "percentile"]),
)
def test_rescale_intensity_always_in_unit_range(img, mode):
    out = rescale_intensity(img, mode=mode)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0


# ---------------------------------------------------------------- Preprocess


def test_preprocess_on_echo_and_oct(echo_frame):
    out = Preprocess()(echo_frame)
    assert out.shape == (64, 64) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.std() > 0.02
    auto = Preprocess(crop="auto", size=32)(echo_frame)
    assert auto.shape == (32, 32)
    color = Preprocess(grayscale=False, size=16)(echo_frame)
    assert color.shape == (16, 16, 3)
    img = oct_png("oct_top_wedge")
    plain = Preprocess(crop=None)(img)
    clean = Preprocess(crop=None, oct_white_edge=True)(img)
    assert plain[0].mean() > 0.9  # the white wedge fills the top row
    assert clean[0].mean() < 0.5


def test_preprocess_config_round_trip_and_errors():
    p = Preprocess(crop="auto", size=80, oct_white_edge=True, intensity="percentile")
    d = json.loads(json.dumps(p.to_dict()))
    assert Preprocess.from_dict(d) == p
    assert Preprocess.from_dict({}) == Preprocess()
    with pytest.raises(EnrichError, match="unknown preprocessing option"):
        Preprocess.from_dict({"sise": 64})
    with pytest.raises(EnrichError, match="crop='middle'"):
        Preprocess(crop="middle")  # type: ignore[arg-type]
    with pytest.raises(EnrichError, match="size=0"):
        Preprocess(size=0)
    with pytest.raises(EnrichError, match="percentiles"):
        Preprocess(percentiles=(99.0, 1.0))
    with pytest.raises(EnrichError, match="expected a non-empty image"):
        Preprocess()(np.zeros((0, 5)))

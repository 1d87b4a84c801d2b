"""The embedders: the β-VAE (Burgess et al. 2018) and the pixels/PCA baseline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from enrich.embed import (  # noqa: E402
    EMBEDDERS,
    BetaVAEEmbedder,
    Embedder,
    PixelsEmbedder,
    load_embedder,
    make_embedder,
)
from enrich.embed.base import check_images, data_fingerprint  # noqa: E402
from enrich.embed.betavae import BetaVAE, betavae_loss  # noqa: E402
from enrich.embed.pixels import downsample  # noqa: E402
from enrich.embed.train import encode, resolve_device, train_betavae  # noqa: E402
from enrich.errors import EnrichError  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.fixture(scope="module")
def xray() -> np.ndarray:
    """300 real chest X-rays from PneumoniaMNIST, resized 28→64 like the pipeline does."""
    from enrich.preprocess import resize

    with np.load(DATA) as data:
        raw = data["train_images"]
    # Every 15th image: both classes (the file has normals first, then pneumonia).
    pick = raw[::15][:300].astype(np.float32) / 255.0
    return np.stack([resize(im, 64) for im in pick]).clip(0, 1).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_vae(**kw) -> BetaVAEEmbedder:
    opts = {
        "latent_dim": 8,
        "max_epochs": 2,
        "min_epoch_images": 0,  # one pass per epoch: these tests check plumbing, not quality
        "progress": False,
        "device": "cpu",
        "seed": 0,
    }
    opts.update(kw)
    return BetaVAEEmbedder(**opts)


# -- the model --------------------------------------------------------------------------------
@pytest.mark.parametrize("latent", [128, 10])
def test_betavae_shapes(latent: int) -> None:
    model = BetaVAE(latent, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 1, 64, 64)
    logits, mu, logvar = model(x, generator=torch.Generator().manual_seed(1))
    assert logits.shape == (3, 1, 64, 64)
    assert mu.shape == logvar.shape == (3, latent)
    # The encoder halves 64 four times, to 32 channels of 4×4, as Burgess et al.
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 32, 32]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    h = x
    for m in model.encoder[:8]:
        h = m(h)
    assert h.shape == (3, 32, 4, 4)
    fcs = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert [f.out_features for f in fcs] == [256, 256]
    assert model.to_latent.out_features == 2 * latent
    deconvs = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [d.out_channels for d in deconvs] == [32, 32, 32, 1]
    loss, recon, kl = betavae_loss(logits, x, mu, logvar, beta=4.0)
    loss, recon, kl = loss.detach(), recon.detach(), kl.detach()
    assert loss.ndim == 0 and float(recon) > 0 and float(kl) >= 0
    assert float(loss) == pytest.approx(float(recon) + 4.0 * float(kl), rel=1e-5)


def test_eval_mode_uses_the_mean() -> None:
    model = BetaVAE(6, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.rand(2, 1, 64, 64)
    a, mu, _ = model(x)
    b, _, _ = model(x)
    assert torch.equal(a, b)
    assert torch.equal(a, model.decode(mu))


def test_kl_is_zero_at_the_prior() -> None:
    x = torch.full((2, 1, 64, 64), 0.5)
    zeros = torch.zeros(2, 5)
    _, _, kl = betavae_loss(torch.zeros(2, 1, 64, 64), x, zeros, zeros, beta=1.0)
    assert float(kl) == 0.0
    _, _, kl2 = betavae_loss(torch.zeros(2, 1, 64, 64), x, zeros + 1, zeros, beta=1.0)
    assert float(kl2) == pytest.approx(0.5 * 5)  # 0.5·Σμ² per image


def test_gaussian_reconstruction_is_the_calibrated_nll() -> None:
    # Every pixel off by e: the maximum-likelihood σ is e, and each pixel costs
    # ½ + log e + ½ log 2π nats.
    x = torch.full((2, 1, 64, 64), 0.25)
    logits = torch.logit(torch.full_like(x, 0.35))
    zeros = torch.zeros(2, 3)
    _, recon, _ = betavae_loss(logits, x, zeros, zeros, beta=4.0, likelihood="gaussian")
    e = 0.1
    per_pixel = 0.5 + math.log(e) + 0.5 * math.log(2 * math.pi)
    assert float(recon) == pytest.approx(64 * 64 * per_pixel, rel=1e-4)
    # A perfect reconstruction is floored at σ = e^-6, not -inf.
    _, recon0, _ = betavae_loss(torch.logit(x), x, zeros, zeros, beta=4.0, likelihood="gaussian")
    assert float(recon0) == pytest.approx(64 * 64 * (-6.0 + 0.5 * math.log(2 * math.pi)), rel=1e-4)
    # The Bernoulli term is the summed binary cross-entropy.
    _, bce, _ = betavae_loss(logits, x, zeros, zeros, beta=4.0, likelihood="bernoulli")
    expected = -(0.25 * math.log(0.35) + 0.75 * math.log(0.65)) * 64 * 64
    assert float(bce) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="likelihood='poisson'"):
        betavae_loss(logits, x, zeros, zeros, beta=4.0, likelihood="poisson")
    with pytest.raises(EnrichError, match="likelihood='poisson': expected one of gaussian"):
        train_betavae(x[:, 0].numpy(), likelihood="poisson", progress=False)


@pytest.mark.slow
def test_loss_decreases_on_real_xrays(xray: np.ndarray) -> None:
    model, result = train_betavae(
        xray,
        latent_dim=16,
        seed=0,
        max_epochs=6,
        patience=10,
        min_epoch_images=0,
        device="cpu",
        progress=False,
        lr=1e-3,
    )
    val = [h["val_loss"] for h in result.history]
    train = [h["train_loss"] for h in result.history]
    assert len(val) == 6 and result.stopped == "max_epochs"
    assert val[-1] < val[0] and train[-1] < train[0]
    assert result.best_val_loss == min(val)
    assert result.n_fit + result.n_val == len(xray)
    # The returned model is the best epoch's: its validation loss is the best one.
    assert not model.training and next(model.parameters()).device.type == "cpu"


@pytest.mark.slow
def test_gaussian_decoder_keeps_the_code_informative(xray: np.ndarray) -> None:
    # The regression behind the default: with the same steps on real X-rays, the Bernoulli
    # term leaves the latent code nearly empty (~1 nat; at β = 4 it collapses), while the
    # calibrated Gaussian decoder's code already carries several times more information.
    kl = {}
    for likelihood in ("bernoulli", "gaussian"):
        _, result = train_betavae(
            xray,
            latent_dim=16,
            likelihood=likelihood,
            max_epochs=2,
            patience=10,
            min_epoch_images=2048,  # 2 epochs of 32 steps each, 10 passes over 270 images
            device="cpu",
            progress=False,
        )
        assert result.n_fit == 270 and result.epochs == 2
        kl[likelihood] = result.history[-1]["val_kl"]
    assert kl["gaussian"] > 5.0, kl
    assert kl["gaussian"] > 4 * kl["bernoulli"], kl


def test_early_stopping_and_time_limit(xray: np.ndarray) -> None:
    # lr=0: the validation loss never improves, so patience=1 stops after epoch 2.
    _, result = train_betavae(
        xray[:40],
        latent_dim=4,
        max_epochs=10,
        patience=1,
        lr=0.0,
        min_epoch_images=0,
        device="cpu",
        progress=False,
    )
    assert result.stopped == "early_stopping" and result.epochs == 2 and result.best_epoch == 1
    _, result = train_betavae(
        xray[:40],
        latent_dim=4,
        max_epochs=10,
        max_seconds=0.0,
        min_epoch_images=0,
        device="cpu",
        progress=False,
    )
    assert result.stopped == "time_limit" and result.epochs == 1


def test_same_seed_same_embeddings(xray: np.ndarray) -> None:
    x = xray[:120]
    a = tiny_vae(seed=3).fit(x).transform(x)
    b = tiny_vae(seed=3).fit(x).transform(x)
    c = tiny_vae(seed=4).fit(x).transform(x)
    assert a.shape == (120, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_training_leaves_global_rng_alone(xray: np.ndarray) -> None:
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    tiny_vae(max_epochs=1).fit(xray[:30])
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


def test_betavae_save_load_round_trip(xray: np.ndarray, tmp_path: Path) -> None:
    x = xray[:100]
    model = tiny_vae(seed=1).fit(x, ids=[f"i{k}" for k in range(100)])
    before = model.transform(x)
    model.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} == {"config.json", "betavae.pt"}
    loaded = load_embedder(tmp_path / "model", device="cpu")
    assert isinstance(loaded, BetaVAEEmbedder)
    assert loaded.params() == model.params()
    assert loaded.data_fingerprint_ == model.data_fingerprint_
    np.testing.assert_array_equal(loaded.transform(x), before)
    with pytest.raises(EnrichError, match="holds a 'betavae' model, expected 'pixels'"):
        PixelsEmbedder.load(tmp_path / "model")


def test_corrupt_weights_are_an_enrich_error(xray: np.ndarray, tmp_path: Path) -> None:
    tiny_vae(max_epochs=1).fit(xray[:20]).save(tmp_path)
    (tmp_path / "betavae.pt").write_bytes(b"not a torch file")
    with pytest.raises(EnrichError, match=r"betavae\.pt: cannot read"):
        load_embedder(tmp_path)
    with pytest.raises(EnrichError, match="no saved model"):
        load_embedder(tmp_path / "nothing")


def test_embedding_is_the_latent_mean(xray: np.ndarray) -> None:
    model = tiny_vae(max_epochs=1).fit(xray[:40])
    assert model.model_ is not None
    with torch.no_grad():
        mu, _ = model.model_.encode(torch.from_numpy(xray[:5]).unsqueeze(1))
    np.testing.assert_allclose(model.transform(xray[:5]), mu.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(EMBEDDERS))
def test_transform_batches_streams_into_one_array(
    name: str, xray: np.ndarray, tmp_path: Path
) -> None:
    opts = {"latent_dim": 6, "seed": 0}
    if name == "betavae":
        opts.update(max_epochs=1, min_epoch_images=0, progress=False, device="cpu")
    model = make_embedder(name, **opts).fit(xray[:60])
    full = model.transform(xray)
    batches = (xray[i : i + 37] for i in range(0, len(xray), 37))
    np.testing.assert_allclose(model.transform_batches(batches, n=len(xray)), full, atol=1e-5)
    unsized = model.transform_batches(xray[i : i + 50] for i in range(0, len(xray), 50))
    np.testing.assert_allclose(unsized, full, atol=1e-5)
    out = np.lib.format.open_memmap(tmp_path / "v.npy", "w+", np.float32, (len(xray), 6))
    got = model.transform_batches((xray[i : i + 64] for i in range(0, len(xray), 64)), out=out)
    assert np.shares_memory(got, out)
    np.testing.assert_allclose(out, full, atol=1e-5)
    with pytest.raises(EnrichError, match="more than n=10 images"):
        model.transform_batches(iter([xray[:8], xray[:8]]), n=10)


# -- pixels -----------------------------------------------------------------------------------
def test_pixels_embedder(xray: np.ndarray, tmp_path: Path) -> None:
    model = PixelsEmbedder(latent_dim=16).fit(xray[:200])
    v = model.transform(xray)
    assert v.shape == (300, 16) and v.dtype == np.float32
    assert model.components_ is not None and model.mean_ is not None
    # Orthonormal components; the training images' projections are centred.
    np.testing.assert_allclose(model.components_ @ model.components_.T, np.eye(16), atol=1e-5)
    np.testing.assert_allclose(v[:200].mean(axis=0), 0, atol=1e-4)
    # Variance of the projections decreases component by component (PCA order).
    var = v[:200].var(axis=0)
    assert np.all(np.diff(var) <= 1e-6)
    assert 0.5 < model.fit_info_["explained_variance_ratio"] <= 1.0
    model.save(tmp_path)
    loaded = load_embedder(tmp_path)
    assert isinstance(loaded, PixelsEmbedder)
    np.testing.assert_array_equal(loaded.transform(xray), v)


def test_pixels_matches_a_reference_pca(xray: np.ndarray) -> None:
    model = PixelsEmbedder(latent_dim=5, size=8).fit(xray)
    X = xray.reshape(300, 8, 8, 8, 8).mean(axis=(2, 4)).reshape(300, 64).astype(np.float64)
    Xc = X - X.mean(axis=0)
    _, evecs = np.linalg.eigh(Xc.T @ Xc)
    ref = Xc @ evecs[:, ::-1][:, :5]
    got = model.transform(xray)
    # Same subspace, components equal up to sign.
    for k in range(5):
        c = np.corrcoef(ref[:, k], got[:, k])[0, 1]
        assert abs(c) > 0.999


def test_pixels_dim_is_capped_by_the_training_set(xray: np.ndarray) -> None:
    model = PixelsEmbedder(latent_dim=128).fit(xray[:10])
    assert model.dim == 10 and model.transform(xray[:3]).shape == (3, 10)
    assert downsample(np.ones((1, 64, 64), np.float32), 4).shape == (1, 16)
    with pytest.raises(EnrichError, match="size=5"):
        downsample(np.ones((1, 64, 64), np.float32), 5)


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EMBEDDERS))
def test_bad_inputs(name: str, xray: np.ndarray) -> None:
    opts = {"progress": False} if name == "betavae" else {}
    model = make_embedder(name, latent_dim=4, **opts)
    with pytest.raises(EnrichError, match="not fitted"):
        model.transform(xray[:2])
    with pytest.raises(EnrichError, match=r"expected \(n_images, 64, 64\)"):
        model.fit(np.zeros((5, 32, 32), np.float32))
    with pytest.raises(EnrichError, match="need at least 2"):
        model.fit(xray[:1])
    bad = xray[:4].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(EnrichError, match="NaN"):
        model.fit(bad)
    with pytest.raises(EnrichError, match="latent_dim=0"):
        make_embedder(name, latent_dim=0, **opts).fit(xray[:10])


def test_registry_and_devices() -> None:
    assert set(EMBEDDERS) == {"betavae", "pixels"}
    assert all(issubclass(c, Embedder) for c in EMBEDDERS.values())
    with pytest.raises(EnrichError, match="embedder 'umap' is unknown; expected one of"):
        make_embedder("umap")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(EnrichError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(EnrichError, match="expected 'auto', 'cpu' or 'cuda'"):
        resolve_device("tpu")


def test_helpers() -> None:
    x = np.zeros((2, 64, 64))
    assert check_images(x).dtype == np.float32
    assert data_fingerprint(x) == data_fingerprint(x.astype(np.float32))
    assert data_fingerprint(x, ["a", "b"]) != data_fingerprint(x, ["a", "c"])
    model = BetaVAE(3, generator=torch.Generator().manual_seed(0)).eval()
    assert encode(model, np.zeros((5, 64, 64), np.float32), batch_size=2).shape == (5, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_embeddings_match_cpu(xray: np.ndarray) -> None:
    model = tiny_vae(max_epochs=1).fit(xray[:50])
    cpu = model.transform(xray[:50])
    model.device = "cuda"
    assert model.model_ is not None
    model._set_model(model.model_)
    np.testing.assert_allclose(model.transform(xray[:50]), cpu, atol=1e-3)

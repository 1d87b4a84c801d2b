"""The β-VAE of Burgess et al. (2018), "Understanding disentangling in β-VAE", in plain torch.

The ENRICH paper embeds each 64×64 grayscale image with the mean of this model's
128-d latent posterior (Chinn et al., JAMIA 2023, Methods → "Embeddings from autoencoders").

Architecture (Burgess et al. 2018, appendix A.1), for a ``(B, 1, 64, 64)`` input:

- encoder: 4 conv layers, 32 channels, 4×4 kernels, stride 2 (64→32→16→8→4), ReLU;
  FC 256, FC 256 (ReLU); one linear layer to the latent mean and log-variance;
- decoder: the mirror: FC 256, FC 256, FC 32·4·4 (ReLU); 4 transposed conv layers
  (4×4, stride 2; 32, 32, 32, 1 channels), returning Bernoulli logits ``(B, 1, 64, 64)``.

Loss: a reconstruction term plus β times the KL divergence to the unit Gaussian prior,
averaged over the batch. The paper says only "reconstruction loss and Kullback-Leibler
divergence"; two reconstruction terms are offered:

- ``"gaussian"`` (default): the negative log-likelihood of a Gaussian decoder with mean
  ``sigmoid(logits)`` and one variance shared by every pixel of the batch, set to its
  maximum-likelihood value, the batch's mean squared error (the "calibrated decoder" of
  Rybkin, Daniilidis & Levine 2021, "Simple and effective VAE training with calibrated
  decoders"). The variance follows the reconstruction error down, so the reconstruction term
  keeps its weight against β·KL as training goes on.
- ``"bernoulli"``: binary cross-entropy with logits, summed over pixels (Burgess et al.'s
  choice for binary dSprites). On grayscale medical images it is weak: the whole gain from a
  perfect code is ~150 nats per PneumoniaMNIST image (mean-image BCE minus the targets' own
  entropy), so at β = 4 the optimum spends only ~2 nats on the latent code and the latent
  means collapse onto one direction (every cosine similarity ≈ 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IMAGE_SIZE", "LIKELIHOODS", "BetaVAE", "betavae_loss"]

IMAGE_SIZE = 64
_CHANNELS = 32
_HIDDEN = 256
LIKELIHOODS = ("gaussian", "bernoulli")
# Floor on the calibrated decoder's log standard deviation (σ ≥ e^-6 ≈ 0.0025, a 1/400 step
# of the [0, 1] intensity range), so a near-perfect reconstruction cannot drive the loss to -inf.
_MIN_LOG_SIGMA = -6.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class BetaVAE(nn.Module):
    """The Burgess et al. (2018) β-VAE for 64×64 single-channel images.

    Parameters
    ----------
    latent_dim : int
        Size of the latent code (the paper used 128).
    generator : torch.Generator, optional
        Source of randomness for the initial weights, so that a seed gives the same model
        without touching torch's global random state.

    Examples
    --------
    >>> model = BetaVAE(latent_dim=8, generator=torch.Generator().manual_seed(0))
    >>> logits, mu, logvar = model(torch.rand(2, 1, 64, 64))
    >>> tuple(logits.shape), tuple(mu.shape)
    ((2, 1, 64, 64), (2, 8))
    """

    def __init__(self, latent_dim: int = 128, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim={latent_dim}: expected a positive integer")
        self.latent_dim = int(latent_dim)
        c, h = _CHANNELS, _HIDDEN
        # The layers' constructors draw default weights from torch's global generator;
        # fork_rng restores it, and reset_parameters redraws everything from `generator`.
        with torch.random.fork_rng(devices=[]):
            self._build(c, h)
        self.reset_parameters(generator)

    def _build(self, c: int, h: int) -> None:
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),  # (B, 32, 32, 32)
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 4, stride=2, padding=1),  # (B, 32, 16, 16)
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 4, stride=2, padding=1),  # (B, 32, 8, 8)
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 4, stride=2, padding=1),  # (B, 32, 4, 4)
            nn.ReLU(inplace=True),
            nn.Flatten(),  # (B, 512)
            nn.Linear(c * 4 * 4, h),
            nn.ReLU(inplace=True),
            nn.Linear(h, h),
            nn.ReLU(inplace=True),
        )
        self.to_latent = nn.Linear(h, 2 * self.latent_dim)  # (B, 2·latent): mean, log-variance
        self.decoder = nn.Sequential(
            nn.Linear(self.latent_dim, h),
            nn.ReLU(inplace=True),
            nn.Linear(h, h),
            nn.ReLU(inplace=True),
            nn.Linear(h, c * 4 * 4),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (c, 4, 4)),  # (B, 32, 4, 4)
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1),  # (B, 32, 8, 8)
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1),  # (B, 32, 16, 16)
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1),  # (B, 32, 32, 32)
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 64, 64) logits
        )

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw all weights with torch's default layer initialisation, from `generator`."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                # The same scheme as the layers' own reset_parameters, with our generator.
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance ``(B, latent_dim)`` of images ``(B, 1, 64, 64)``."""
        stats = self.to_latent(self.encoder(x))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits ``(B, 1, 64, 64)`` for latent codes ``(B, latent_dim)``."""
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample with the reparameterisation trick, decode.

        Returns the reconstruction logits ``(B, 1, 64, 64)``, the mean and the log-variance
        ``(B, latent_dim)``. In eval mode the decoder sees the mean (no sampling).
        """
        mu, logvar = self.encode(x)
        if self.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decode(z), mu, logvar


def betavae_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    beta: float,
    likelihood: str = "gaussian",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """β-VAE loss, averaged over the batch: reconstruction + β·KL.

    Parameters
    ----------
    logits : Tensor of shape (B, 1, 64, 64)
        Decoder output; ``sigmoid(logits)`` is the reconstructed image.
    x : Tensor of shape (B, 1, 64, 64)
        Target images in [0, 1].
    mu, logvar : Tensor of shape (B, latent_dim)
        Posterior mean and log-variance.
    beta : float
        Weight of the KL term.
    likelihood : {"gaussian", "bernoulli"}
        The reconstruction term (see the module docstring).

    Returns
    -------
    loss, reconstruction, kl : scalar Tensors
        Per-image means in nats; ``loss = reconstruction + beta * kl``.
    """
    n = x.shape[0]
    if likelihood == "gaussian":
        sq = (torch.sigmoid(logits) - x).pow(2)
        # maximum-likelihood shared σ: log σ = ½ log(mean squared error), floored
        log_sigma = (0.5 * torch.log(sq.mean())).clamp(min=_MIN_LOG_SIGMA)
        nll = sq * (0.5 * torch.exp(-2.0 * log_sigma)) + (log_sigma + _HALF_LOG_2PI)
        recon = nll.sum() / n
    elif likelihood == "bernoulli":
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
    else:
        raise ValueError(f"likelihood={likelihood!r}: expected one of {LIKELIHOODS}")
    kl = 0.5 * torch.sum(mu.pow(2) + logvar.exp() - logvar - 1.0) / n
    return recon + beta * kl, recon, kl

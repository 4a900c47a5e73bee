"""The autoencoders: the user's seed design and a variant with a real bottleneck."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ARCHS



def _down(cin: int, cout: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), act)


def _up(cin: int, cout: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), act)


class SeedAutoencoder(nn.Module):
    """The original design: conv 32/64/128/256 (each halving, BN+ReLU), transposed conv 128/64/32/C, Sigmoid.

    Its bottleneck (256 x H/16 x W/16) holds as many numbers as the input has pixels, so it can learn to copy.
    """

    def __init__(self, channels: int = 1):
        super().__init__()
        relu = nn.ReLU(inplace=True)
        self.encoder = nn.Sequential(_down(channels, 32, relu), _down(32, 64, relu), _down(64, 128, relu),
                                     _down(128, 256, relu))
        self.decoder = nn.Sequential(_up(256, 128, relu), _up(128, 64, relu), _up(64, 32, relu),
                                     nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class BottleneckAutoencoder(nn.Module):
    """Conv 32/64/128/64 down to 1/16, a dense latent of ``latent`` numbers, and back: it cannot copy its input,
    so it can only redraw what good parts look like. ``width`` scales every channel count."""

    def __init__(self, input_size: tuple[int, int], channels: int = 1, latent: int = 256, width: float = 1.0):
        super().__init__()
        act = nn.LeakyReLU(0.2, inplace=True)
        c32, c64, c128 = (max(4, round(c * width)) for c in (32, 64, 128))
        self.grid = (c64, input_size[0] // 16, input_size[1] // 16)
        flat = self.grid[0] * self.grid[1] * self.grid[2]
        self.encoder = nn.Sequential(_down(channels, c32, act), _down(c32, c64, act), _down(c64, c128, act),
                                     _down(c128, c64, act), nn.Flatten(), nn.Linear(flat, latent))
        self.expand = nn.Sequential(nn.Linear(latent, flat), act)
        self.decoder = nn.Sequential(_up(c64, c128, act), _up(c128, c64, act), _up(c64, c32, act),
                                     nn.ConvTranspose2d(c32, channels, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.expand(self.encoder(x))
        return self.decoder(z.view(-1, *self.grid))


def build_model(arch: str, input_size: tuple[int, int], channels: int = 1, width: float = 1.0) -> nn.Module:
    """The named architecture for inputs of (height, width), both multiples of 16; ``width`` is for bottleneck."""
    if input_size[0] % 16 or input_size[1] % 16:
        raise ValueError(f"input size {input_size} must be multiples of 16")
    if arch == "seed":
        return SeedAutoencoder(channels)
    if arch == "bottleneck":
        return BottleneckAutoencoder(tuple(input_size), channels, width=width)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 2-D Gaussian kernel (1, 1, k, k) with k = 2 * ceil(3 sigma) + 1."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2.0 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


class AnomalyMapper(nn.Module):
    """The exported graph: autoencoder, squared error, light blur, then per-pixel standardisation.

    ``mean`` and ``scale`` are the error's per-pixel mean and spread on good training images, so a pixel
    that is always hard to redraw (a thread edge) does not outshout a real defect. With mean 0 and scale 1
    the map is the plain squared error. Returns (anomaly_map, reconstruction), both (batch, 1, h, w).
    """

    def __init__(self, autoencoder: nn.Module, input_size: tuple[int, int], pre_sigma: float = 2.0):
        super().__init__()
        self.autoencoder = autoencoder
        kernel = gaussian_kernel(pre_sigma) if pre_sigma > 0 else torch.ones(1, 1, 1, 1)
        self.pad = kernel.shape[-1] // 2
        self.register_buffer("kernel", kernel)
        self.register_buffer("mean", torch.zeros(1, 1, *input_size))
        self.register_buffer("scale", torch.ones(1, 1, *input_size))

    def error(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The blurred squared error before standardisation, and the reconstruction."""
        reconstruction = self.autoencoder(x)
        error = torch.mean((x - reconstruction) ** 2, dim=1, keepdim=True)
        if self.pad:
            error = F.conv2d(F.pad(error, (self.pad,) * 4, mode="reflect"), self.kernel)
        return error, reconstruction

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        error, reconstruction = self.error(x)
        return (error - self.mean) / self.scale, reconstruction

    @torch.no_grad()
    def standardise_on(self, batches, spread_quantile: float = 0.9) -> None:
        """Set mean and scale from the errors on good images; the scale's floor (a quantile of the per-pixel
        spread) keeps flat background pixels from blowing up."""
        errors = torch.cat([self.error(batch)[0] for batch in batches])
        spread = errors.std(dim=0, keepdim=True)
        self.mean.copy_(errors.mean(dim=0, keepdim=True))
        self.scale.copy_(spread + torch.quantile(spread.flatten(), spread_quantile))

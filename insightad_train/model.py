"""The autoencoders: the user's seed design and a variant with a real bottleneck."""
from __future__ import annotations

import torch
from torch import nn

ARCHS = ("seed", "bottleneck")


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
    so it can only redraw what good parts look like."""

    def __init__(self, input_size: tuple[int, int], channels: int = 1, latent: int = 256):
        super().__init__()
        act = nn.LeakyReLU(0.2, inplace=True)
        self.grid = (64, input_size[0] // 16, input_size[1] // 16)
        flat = self.grid[0] * self.grid[1] * self.grid[2]
        self.encoder = nn.Sequential(_down(channels, 32, act), _down(32, 64, act), _down(64, 128, act),
                                     _down(128, 64, act), nn.Flatten(), nn.Linear(flat, latent))
        self.expand = nn.Sequential(nn.Linear(latent, flat), act)
        self.decoder = nn.Sequential(_up(64, 128, act), _up(128, 64, act), _up(64, 32, act),
                                     nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.expand(self.encoder(x))
        return self.decoder(z.view(-1, *self.grid))


def build_model(arch: str, input_size: tuple[int, int], channels: int = 1) -> nn.Module:
    """The named architecture for inputs of (height, width), both multiples of 16."""
    if input_size[0] % 16 or input_size[1] % 16:
        raise ValueError(f"input size {input_size} must be multiples of 16")
    if arch == "seed":
        return SeedAutoencoder(channels)
    if arch == "bottleneck":
        return BottleneckAutoencoder(tuple(input_size), channels)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHS}")

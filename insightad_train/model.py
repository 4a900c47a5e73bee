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


class PatchKNN(nn.Module):
    """How far each local patch is from its nearest patch in the good images: the distance map itself.

    No gradient training: ``fit_on`` learns a PCA of the good images' patches (applied as one convolution)
    and keeps a memory bank of their projections, thinned by greedy k-centre selection. Each patch is
    described by its PCA coordinates, the part of it the PCA cannot express (what no good patch has), and,
    for aligned parts, its place (weighted by ``place``), so a thread is compared with threads where threads
    are. It copes with parts whose texture shifts between shots, which an autoencoder cannot redraw.
    With ``context``, the same at twice the extent, in a bank of its own, adds (so weighted) how far the
    patch's surroundings are from any good surroundings: a label that is right alone but wrong next to that fill.
    """

    def __init__(self, input_size: tuple[int, int], channels: int = 1, patch: int = 7, stride: int = 2,
                 dims: int = 24, bank: int = 1024, place: float = 0.0, context: float = 0.0):
        super().__init__()
        self.stride, self.patch, self.place_weight, self.context_weight = stride, patch, place, context
        grid = (input_size[0] // stride, input_size[1] // stride)
        self.project = nn.Conv2d(channels, dims, patch, padding=patch // 2)
        self.register_buffer("patch_mean", torch.zeros(1, channels, patch, patch))
        self.register_buffer("bank", torch.zeros(bank, dims + 3))
        ys, xs = torch.meshgrid(torch.linspace(0, 1, grid[0]), torch.linspace(0, 1, grid[1]), indexing="ij")
        self.register_buffer("place", torch.stack([xs, ys])[None])
        self.register_buffer("place_scale", torch.zeros(1))
        self.register_buffer("unit", torch.ones(1))  # features in units of their spread: distances near 1
        if context:  # a model without it has the state it had before it existed
            self.context_project = nn.Conv2d(channels, dims, patch, padding=patch // 2)
            self.register_buffer("context_patch_mean", torch.zeros(1, channels, patch, patch))
            self.register_buffer("context_bank", torch.zeros(bank, dims + 1))
            self.register_buffer("context_unit", torch.ones(1))
        self.input_size = tuple(input_size)

    def scales(self) -> list[tuple[int, nn.Conv2d, torch.Tensor, torch.Tensor]]:
        """(stride, projection, mean patch, unit) of the patch, and of its surroundings if they count."""
        scales = [(self.stride, self.project, self.patch_mean, self.unit)]
        if self.context_weight:
            scales.append((2 * self.stride, self.context_project, self.context_patch_mean, self.context_unit))
        return scales

    def described(self, x: torch.Tensor, scale) -> torch.Tensor:
        """(batch, dims + 1, h / stride, w / stride): the patches' PCA coordinates and residual at one scale."""
        stride, project, patch_mean, unit = scale
        pooled = F.avg_pool2d(x, stride)
        coords = project(pooled)
        pad = self.patch // 2
        centred_sq = (F.conv2d(pooled * pooled, torch.ones_like(patch_mean), padding=pad)
                      - 2 * F.conv2d(pooled, patch_mean, padding=pad) + (patch_mean ** 2).sum())
        residual = torch.sqrt(torch.clamp(centred_sq - (coords ** 2).sum(dim=1, keepdim=True), min=0.0))
        return torch.cat([coords, residual], dim=1) * unit

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, dims + 3, h / stride, w / stride): PCA coordinates, residual, place."""
        place = (self.place * self.place_scale).expand(x.shape[0], -1, -1, -1)
        return torch.cat([self.described(x, self.scales()[0]), place], dim=1)

    def context_features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, dims + 1, h / 2 stride, w / 2 stride): the surroundings' PCA coordinates and residual (the
        place counts once, with the patch)."""
        return self.described(x, self.scales()[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The distance map (batch, 1, h, w): squared distance of each patch to its nearest good patch, plus
        (weighted) that of its surroundings."""
        nearest = nearest_distance(self.features(x), self.bank)
        if self.context_weight:
            around = nearest_distance(self.context_features(x), self.context_bank)
            nearest = nearest + self.context_weight * F.interpolate(around, size=nearest.shape[-2:], mode="bilinear",
                                                                    align_corners=False)
        return F.interpolate(nearest, size=self.input_size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def fit_on(self, inputs: torch.Tensor, seed: int = 0, candidates: int = 30000) -> None:
        """Learn the PCAs and fill the memory banks from good images' inputs (n, channels, h, w)."""
        generator = torch.Generator().manual_seed(seed)
        for scale in self.scales():
            stride, project, patch_mean, unit = scale
            pooled = F.avg_pool2d(inputs, stride)
            patches = F.unfold(pooled, self.patch, padding=self.patch // 2).transpose(1, 2).reshape(
                -1, pooled.shape[1] * self.patch ** 2)
            sample = patches[torch.randperm(len(patches), generator=generator)[:candidates]]
            mean = sample.mean(dim=0)
            _, _, vh = torch.linalg.svd(sample - mean, full_matrices=False)
            basis = vh[:project.out_channels]
            project.weight.copy_(basis.reshape(project.weight.shape))
            project.bias.copy_(-(basis @ mean))
            patch_mean.copy_(mean.reshape(patch_mean.shape))
            unit.fill_(1.0)
            described = torch.cat([self.described(batch, scale) for batch in inputs.split(16)])
            unit.fill_(1.0 / max(float(described.std(dim=(0, 2, 3)).norm()), 1e-6))
        self.place_scale.fill_(self.place_weight)
        self.bank.copy_(_thinned(self.features, inputs, len(self.bank), generator, candidates))
        if self.context_weight:
            self.context_bank.copy_(_thinned(self.context_features, inputs, len(self.context_bank), generator,
                                             candidates))


def nearest_distance(features: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(batch, 1, h, w): each place's squared distance to its nearest row of ``bank``. One product of
    [f, 1] with [-2 b, |b|^2] then the minimum: the (places x bank) matrix is passed over once, not three times."""
    height, width = features.shape[-2:]
    patches = features.flatten(2).transpose(1, 2)  # (batch, places, dims): the minimum then runs along memory
    ones = torch.ones_like(patches[..., :1])
    memory = torch.cat([-2 * bank, (bank ** 2).sum(dim=1, keepdim=True)], dim=1)
    nearest = (torch.cat([patches, ones], dim=2) @ memory.T).min(dim=2).values + (patches ** 2).sum(dim=2)
    return torch.clamp(nearest, min=0.0).reshape(-1, 1, height, width)


def _thinned(describe, inputs: torch.Tensor, count: int, generator: torch.Generator, candidates: int) -> torch.Tensor:
    """A memory bank of ``count`` of the good images' described patches (a random pool of ``candidates``)."""
    every = torch.cat([describe(batch) for batch in inputs.split(16)])
    every = every.permute(0, 2, 3, 1).reshape(-1, every.shape[1])
    pool = every[torch.randperm(len(every), generator=generator)[:candidates]]
    return k_centres(pool, count, generator)


def k_centres(points: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` points chosen greedily, each the farthest from those chosen before: covers rare patches too."""
    if len(points) <= count:
        return torch.cat([points, points[torch.randint(len(points), (count - len(points),), generator=generator)]])
    chosen = [int(torch.randint(len(points), (1,), generator=generator))]
    nearest = ((points - points[chosen[0]]) ** 2).sum(dim=1)
    for _ in range(count - 1):
        index = int(torch.argmax(nearest))
        chosen.append(index)
        nearest = torch.minimum(nearest, ((points - points[index]) ** 2).sum(dim=1))
    return points[chosen]


def build_model(arch: str, input_size: tuple[int, int], channels: int = 1, width: float = 1.0,
                place: float = 0.0, context: float = 0.0) -> nn.Module:
    """The named architecture for inputs of (height, width), both multiples of 16; ``width`` is for bottleneck,
    ``place`` (the weight of a patch's position) for patchknn."""
    if input_size[0] % 16 or input_size[1] % 16:
        raise ValueError(f"input size {input_size} must be multiples of 16")
    if arch == "seed":
        return SeedAutoencoder(channels)
    if arch == "bottleneck":
        return BottleneckAutoencoder(tuple(input_size), channels, width=width)
    if arch == "patchknn":  # about 64 x 64 patch positions whatever the input size
        stride = max(2, round(math.sqrt(input_size[0] * input_size[1]) / 64))
        return PatchKNN(tuple(input_size), channels, stride=stride, place=place, context=context)
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
        self.register_buffer("kernel", kernel)  # kept in trained runs' state; the graph uses its two factors:
        # the Gaussian is separable, so a row pass then a column pass (2k multiplies a pixel, not k^2)
        self.register_buffer("row", kernel.sum(dim=2, keepdim=True), persistent=False)
        self.register_buffer("column", kernel.sum(dim=3, keepdim=True), persistent=False)
        self.register_buffer("mean", torch.zeros(1, 1, *input_size))
        self.register_buffer("scale", torch.ones(1, 1, *input_size))

    def raw_error(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The squared error per pixel, and the reconstruction (a patch scorer has none: its distance map is the
        error, and the input stands in for the reconstruction)."""
        if isinstance(self.autoencoder, PatchKNN):
            return self.autoencoder(x), x
        reconstruction = self.autoencoder(x)
        return torch.mean((x - reconstruction) ** 2, dim=1, keepdim=True), reconstruction

    def error(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw error, lightly blurred, before standardisation; and the reconstruction."""
        error, reconstruction = self.raw_error(x)
        if self.pad:
            error = F.conv2d(F.conv2d(F.pad(error, (self.pad,) * 4, mode="reflect"), self.row), self.column)
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
        floor = torch.quantile(spread.flatten(), spread_quantile).clamp(min=1e-6)  # never 0: no 0/0 on flat data
        self.scale.copy_(spread + floor)

"""The training loss: (1 - alpha) * MSE + alpha * (1 - SSIM), SSIM from pytorch-msssim."""
from __future__ import annotations

import torch
from pytorch_msssim import ssim
from torch import nn


class HybridLoss(nn.Module):
    """MSE keeps the gray levels right, SSIM keeps the structure; alpha = 0.84 weighs SSIM as the design asks."""

    def __init__(self, alpha: float = 0.84):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha {alpha} must lie in [0, 1]")
        self.alpha = alpha

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = torch.mean((reconstruction - target) ** 2)
        window = min(11, min(target.shape[-2:]) // 2 * 2 - 1)
        structural = ssim(reconstruction, target, data_range=1.0, size_average=True, win_size=window)
        return (1.0 - self.alpha) * mse + self.alpha * (1.0 - structural)

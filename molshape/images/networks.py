"""Convolutional encoder and decoder of the public GMM-DAE image code, with a width multiplier.

Encoder: 4 convolutions (kernel 4, stride 2, padding 1) of ``128w, 256w, 512w, 1024w``
channels, each followed by batch norm and ReLU, flattened to a feature ``h``; the
latent objective's ``head`` then maps ``h`` linearly to the latent (the public code's
``fc1``). Decoder: linear from the latent to ``1024w x s x s`` (s = side / 16) with
ReLU, three transposed convolutions halving the channels with batch norm and ReLU, and
a last transposed convolution to the image channels with a sigmoid. ``width = 1`` is the
paper's network; ``width = 0.125`` (16-32-64-128 channels) trains on a CPU.
"""

from __future__ import annotations

from torch import Tensor, nn

BASE_CHANNELS = (128, 256, 512, 1024)


def channels_for(width: float) -> tuple[int, ...]:
    """Channel counts scaled by ``width`` (at least 4 each)."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return tuple(max(4, int(round(c * width))) for c in BASE_CHANNELS)


def _check_size(size: int) -> int:
    if size < 16 or size % 16:
        raise ValueError(f"image side must be a multiple of 16 (4 stride-2 layers), got {size}")
    return size // 16


class ConvEncoder(nn.Module):
    """``[B x C x S x S]`` images in [0, 1] -> ``[B x feature_dim]`` features.

    Args:
        channels: image channels C (1 or 3).
        size: image side S (32 or 64).
        width: channel multiplier of the 128-256-512-1024 stack.
    """

    def __init__(self, channels: int, size: int, width: float = 1.0) -> None:
        super().__init__()
        side = _check_size(size)
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in channels_for(width):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.feature_dim = c_in * side * side

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)  # [B, C', S/16, S/16] -> [B, H]


class ConvDecoder(nn.Module):
    """``[B x d]`` latents -> ``[B x C x S x S]`` images in (0, 1).

    Args:
        latent_dim: d.
        channels: image channels C.
        size: image side S.
        width: channel multiplier (mirrors the encoder).
    """

    def __init__(self, latent_dim: int, channels: int, size: int, width: float = 1.0) -> None:
        super().__init__()
        self.side = _check_size(size)
        chans = channels_for(width)[::-1]  # 1024w, 512w, 256w, 128w
        self.top = chans[0]
        self.fc = nn.Sequential(nn.Linear(latent_dim, self.top * self.side * self.side), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(chans[-1], channels, 4, 2, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).view(z.shape[0], self.top, self.side, self.side)  # [B, 1024w, S/16, S/16]
        return self.net(h)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


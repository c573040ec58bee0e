"""PNG image grids (Pillow only): samples per mixture component, interpolations, reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def tile(images: Tensor, rows: int, pad: int = 2) -> np.ndarray:
    """``[rows * cols x C x S x S]`` images in [0, 1] -> one ``H x W x 3`` uint8 mosaic (row-major)."""
    n, c, s, _ = images.shape
    if n % rows:
        raise ValueError(f"{n} images do not fill {rows} rows")
    cols = n // rows
    x = (images.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    if c == 1:
        x = np.repeat(x, 3, axis=1)
    out = np.full((rows * (s + pad) + pad, cols * (s + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = pad + r * (s + pad), pad + k * (s + pad)
        out[top:top + s, left:left + s] = x[i].transpose(1, 2, 0)
    return out


def save_grid(images: Tensor, rows: int, path: Path, scale: int = 2) -> Path:
    """Write :func:`tile`'s mosaic as a PNG, upscaled ``scale`` times (nearest) for viewing."""
    from PIL import Image

    im = Image.fromarray(tile(images, rows))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def interpolation_latents(z_a: Tensor, z_b: Tensor, steps: int) -> Tensor:
    """``[P x d]`` start and end latents -> ``[P * steps x d]`` (row p: z_a[p] to z_b[p] linearly)."""
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype, device=z_a.device).view(1, steps, 1)
    return (z_a.unsqueeze(1) * (1 - t) + z_b.unsqueeze(1) * t).reshape(-1, z_a.shape[1])

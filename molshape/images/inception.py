"""Optional Inception features for the standard FID (``pip install molshape[fid]``).

pytorch-fid ships the FID Inception network definition and downloads its weights on
first use. When the package or its weights are missing, :func:`inception_extractor`
returns a one-line reason instead, and the evaluation reports only the offline FID.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from torch import Tensor

UNAVAILABLE = "inception FID unavailable: pip install molshape[fid]"


def inception_extractor(device: torch.device) -> tuple[Callable[[Tensor], Tensor] | None, str]:
    """``(features fn, "ok")`` or ``(None, reason)``.

    The function maps ``[N x C x S x S]`` images (uint8 or [0, 1] float, C = 1 or 3) to
    ``[N x 2048]`` float64 pool features; grey images are repeated to 3 channels.
    """
    if importlib.util.find_spec("pytorch_fid") is None:
        return None, UNAVAILABLE
    try:
        from pytorch_fid.inception import InceptionV3

        net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
    except Exception as e:  # weights download failed (offline) or incompatible version
        return None, f"inception FID unavailable: pytorch-fid could not load its weights ({type(e).__name__}: {e})"

    @torch.no_grad()
    def features(images: Tensor, batch_size: int = 200) -> Tensor:
        out = []
        for s in range(0, images.shape[0], batch_size):
            x = images[s:s + batch_size].to(device)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            out.append(net(x)[0].flatten(1).double().cpu())  # resizes to 299 internally
        return torch.cat(out)

    return features, "ok"

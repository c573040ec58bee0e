"""The ex-post Gaussian mixture (RAE): a full-covariance GMM fitted to latents after training,
used by grammar and image models alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class ExPostGMM:
    """A full-covariance Gaussian mixture fitted to latents after training (RAE).

    Attributes:
        weights: ``K`` mixture weights; means: ``K x d``; covariances: ``K x d x d``.
    """

    weights: Tensor
    means: Tensor
    covariances: Tensor

    @classmethod
    def fit(cls, z: Tensor, n_components: int = 10, seed: int = 0) -> "ExPostGMM":
        """Fit with scikit-learn (EM, k-means initialisation) to ``z [N x d]``."""
        from sklearn.mixture import GaussianMixture  # scikit-learn is slow to import: only when fitting

        if len(z) < n_components:
            raise ValueError(f"cannot fit {n_components} components to {len(z)} latents")
        gmm = GaussianMixture(n_components, covariance_type="full", random_state=seed, reg_covar=1e-5)
        gmm.fit(z.double().numpy())
        t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
        return cls(t(gmm.weights_), t(gmm.means_), t(gmm.covariances_))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n x d`` float32 latents: a component by weight, then mean + L eps."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], 1, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covariances)  # [K, d, d]
        return (self.means[k] + (chol[k] @ eps).squeeze(-1)).float()

    def predict(self, z: Tensor) -> np.ndarray:
        """Most responsible component ``[N]`` of each latent of ``z [N x d]``."""
        z = torch.as_tensor(z, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covariances)  # [K, d, d]
        diff = (z[:, None, :] - self.means[None]).unsqueeze(-1)  # [N, K, d, 1]
        sol = torch.linalg.solve_triangular(chol[None], diff, upper=False).squeeze(-1)  # [N, K, d]
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [K]
        score = torch.log(self.weights) - 0.5 * (log_det + (sol ** 2).sum(-1))  # [N, K], shared constants dropped
        return score.argmax(dim=1).numpy()

    def to_dict(self) -> dict[str, Tensor]:
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

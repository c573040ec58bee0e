"""Latent spaces: the Gaussian-mixture prior and its KS / covariance regularizer, the
latent objectives (gmm, vae, rae, ae) and latent diagnostics. No grammar, chemistry or images."""

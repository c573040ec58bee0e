"""Bayesian optimisation in a latent space: the loop, GP surrogates, the trust region, the
problem built from a model, parallel seeds and the report."""

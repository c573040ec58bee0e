"""Bayesian optimisation in a latent space: the seed state and its pure step, GP surrogates,
the trust region, the problem built from a model, the run folder, parallel seeds and the report."""

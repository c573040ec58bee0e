"""Foundations every layer may use: atomic files, checkpoints, run folders, caches, devices, seeds."""

"""Inference engines for sutro-local."""

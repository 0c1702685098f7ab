"""Discrete Latent Codes."""

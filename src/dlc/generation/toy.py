"""The Section 3 study's denoiser: an MLP and its Gaussian process built from the toy params,
a trained run loaded back, and samples drawn from it (by toy-train and toy-eval).

Every random stream is seeded by (toy.seed, K, purpose), so runs and evaluations reproduce.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from dlc import io as dio
from dlc.config import ToyConfig
from dlc.data.gaussian_grid import GaussianGrid
from dlc.diffusion.gaussian import GaussianDiffusion
from dlc.models.mlp import MLPDenoiser
from dlc.train import checkpoint

VARIANTS = ("unconditional", "oracle", "gmm")


def seed_stream(cfg: ToyConfig, modes: int, purpose: str) -> np.random.SeedSequence:
    """Independent, reproducible streams per (seed, K, purpose)."""
    purpose_key = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    return np.random.SeedSequence([cfg.seed, modes, purpose_key])


def build_model(cfg: ToyConfig, modes: int, variant: str) -> MLPDenoiser:
    return MLPDenoiser(data_dim=2, width=cfg.model.width, depth=cfg.model.depth,
                       num_classes=0 if variant == "unconditional" else modes,
                       learn_sigma=cfg.diffusion.learn_sigma, style=cfg.model.style)


def build_diffusion(cfg: ToyConfig) -> GaussianDiffusion:
    return GaussianDiffusion.from_schedule(
        cfg.diffusion.schedule, cfg.diffusion.steps, learn_sigma=cfg.diffusion.learn_sigma,
        vlb_weight=cfg.diffusion.vlb_weight, decoder="gaussian")


def load_trained(cfg: ToyConfig, model_dir: str | Path):
    """(EMA model, meta) of a trained run; fails naming the folder if it does not match cfg."""
    model_dir = Path(model_dir)
    meta = dio.read_json(model_dir / "meta.json")
    model = build_model(cfg, meta["modes"], meta["variant"])
    weights = model_dir / "model.safetensors"
    return checkpoint.load_weights(model, weights, "toy.model in the params"), meta


@torch.no_grad()
def sample(cfg: ToyConfig, model: MLPDenoiser, meta: dict, n: int,
           seed: np.random.SeedSequence) -> np.ndarray:
    """n points from a trained model (mode index drawn from its prior), in data units."""
    label_rng = np.random.default_rng(seed.spawn(1)[0])
    generator = torch.Generator().manual_seed(int(seed.generate_state(1)[0]))
    kwargs = {}
    if meta["variant"] == "oracle":
        kwargs["y"] = torch.from_numpy(label_rng.integers(0, meta["modes"], size=n))
    elif meta["variant"] == "gmm":
        weights = np.array(meta["gmm"]["weights"])
        labels = label_rng.choice(len(weights), size=n, p=weights / weights.sum())
        kwargs["y"] = torch.from_numpy(labels)
    process = build_diffusion(cfg).respaced(cfg.eval.sampling_steps)
    # Predicted x_0 is bounded by the data's support (every centre plus 6 std), in model units.
    grid = GaussianGrid(meta["modes"], cfg.std, cfg.spacing)
    support = (np.abs(grid.centres).max() + 6 * cfg.std) / meta["data_scale"]
    x = process.p_sample_loop(model, (n, 2), generator=generator, clip_x0=support, **kwargs)
    return x.double().numpy() * meta["data_scale"]

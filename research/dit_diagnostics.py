"""Why a trained tiny DiT ignores its code: the numbers behind docs/dit_tiny_study.md.

    .venv/bin/python research/dit_diagnostics.py results/dit_fidelity/init023 \\
        dit.code_init_std=0.226 [--latents results/tiny/latents/train --vae results/tiny/vae]

prints (1) the norms of the timestep and code embeddings (how much of the condition is the
code), (2) the epsilon (or v) MSE on training pairs at a few timesteps with the true code, the
null code and a shuffled code, and writes (3) a grid of training latents decoded as they are,
with Gaussian noise added, and smoothed by a 2x2 average (`--grid`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from dlc import io
from dlc.data.codes import read_codes
from dlc.data.latents import LatentCache, LatentCodePairs
from dlc.diffusion.gaussian import build_process
from dlc.models.dit import build_dit
from dlc.models.vae import decode, load_vae
from dlc.viz import image_grid, save_image

sys.path.insert(0, str(Path(__file__).resolve().parent / "sem"))
from sem_probe_sweep import overridden  # noqa: E402


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a train-dit run folder")
    parser.add_argument("overrides", nargs="*", help="the run's dit overrides (KEY=VALUE)")
    parser.add_argument("--results", type=Path, default=Path("results/tiny"))
    parser.add_argument("--grid", type=Path, default=Path("results/dit_diagnostics.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = overridden(yaml.safe_load(Path("params.yaml").read_text()), "tiny", args.overrides)
    meta = io.read_json(args.run / "meta.json")
    model = build_dit(cfg.dit, meta["latent_shape"], meta["L"], meta["V"])
    model.load_state_dict(load_file(args.run / "model.safetensors"))
    model.eval()
    pairs = LatentCodePairs(LatentCache(args.results / "latents" / "train"),
                            read_codes(args.results / "codes" / "train"))
    latents, codes = pairs.batch(np.arange(512))

    code = model.code_embedder(codes)
    time = model.t_embedder(torch.arange(0, 1000, 2))
    print(f"code embedding: deviation between codes {(code - code.mean(0)).norm(dim=1).mean():.3f}"
          f" (norm {code.norm(dim=1).mean():.3f}); timestep embedding: norm "
          f"{time.norm(dim=1).mean():.2f}, deviation between timesteps "
          f"{(time - time.mean(0)).norm(dim=1).mean():.2f}; table std "
          f"{model.code_embedder.table.weight.std():.4f}")

    process = build_process(cfg.dit)
    generator = torch.Generator().manual_seed(1)
    shuffled = codes[torch.randperm(len(codes), generator=generator)]
    for t in (100, 300, 500, 700, 900):
        steps = torch.full((len(latents),), t)
        noise = torch.randn(latents.shape, generator=generator)
        mse = {name: process.training_losses(model, latents, steps, noise=noise,
                                             codes=given)["mse"].mean().item()
               for name, given in (("code", codes), ("null", model.null_codes(len(codes))),
                                   ("shuffled", shuffled))}
        print(f"t={t}: MSE with its code {mse['code']:.4f}, the null code {mse['null']:.4f}, "
              f"a shuffled code {mse['shuffled']:.4f}")

    vae = load_vae(args.results / "vae" / "model")
    few = latents[:12]
    rows = [decode(vae, few + s * torch.randn(few.shape, generator=generator))
            for s in (0.0, 0.1, 0.2, 0.4)]
    rows.append(decode(vae, F.interpolate(F.avg_pool2d(few, 2), scale_factor=2,
                                          mode="bilinear")))
    save_image(image_grid(np.concatenate(rows), columns=12, scale=2), args.grid)
    print(f"decoded latents: as they are, + noise 0.1, 0.2, 0.4, 2x2-smoothed -> {args.grid}")


if __name__ == "__main__":
    main()

"""Latent caching speed and size. Images/s of `encode` (posterior sample x scaling factor) for
the tiny preset's VAE at 32 px and Stable Diffusion's VAE architecture (random weights: the
speed does not depend on them) at 256 px; on a GPU in bf16 autocast, with decoding too. Bytes
per image on disk: a real shard + index written by data/latents.py for 1,000 latents.
Writes $OUT/vae_<device>.json (or benchmarks/results/).

    PYTHONPATH=src python benchmarks/vae.py
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlc import config
from dlc import io as dio
from dlc.config import VAEModelConfig
from dlc.data import latents as cache_io
from dlc.models.vae import build_vae, decode, encode

SD_VAE = VAEModelConfig(block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                        latent_channels=4, norm_num_groups=32, mid_block_attention=True)


def rate(fn, batch: int, repeat: int, device) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * repeat / (time.perf_counter() - start)


def measure(model_cfg: VAEModelConfig, resolution: int, batch: int, repeat: int,
            device) -> dict:
    vae = build_vae(model_cfg, resolution, 0.18215).to(device).eval()
    images = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else nullcontext())
    with autocast:
        latents = encode(vae, images)
        row = {"resolution": resolution, "batch": batch, "latent_shape": list(latents.shape[1:]),
               "parameters": sum(p.numel() for p in vae.parameters()),
               "encode_images_per_s": rate(lambda: encode(vae, images), batch, repeat, device)}
        if device.type == "cuda":
            row["decode_images_per_s"] = rate(lambda: decode(vae, latents, batch), batch,
                                              repeat, device)
    return row


def bytes_per_image(shape: tuple[int, ...], n: int = 1000) -> float:
    """On-disk bytes per latent of a real shard + its sidecar + the Parquet index."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        cache_io.write_shard(folder, 0, np.zeros((n, *shape), np.float32),
                             {"fingerprint": {}, "kept": list(range(n)), "skipped": []})
        index = pd.DataFrame({"image_id": [f"n01440764_{i:05d}" for i in range(n)],
                              "shard": np.zeros(n, np.int32), "offset": np.arange(n),
                              "flip": np.zeros(n, bool)})
        dio.write_parquet(index, folder / cache_io.INDEX, {})
        return sum(f.stat().st_size for f in folder.iterdir()) / n


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = config.load("params.yaml").presets["tiny"].vae
    result = {"torch": torch.__version__,
              "device": torch.cuda.get_device_name() if device.type == "cuda"
              else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
                   f"threads",
              "precision": "bf16 autocast" if device.type == "cuda" else "fp32"}
    cuda = device.type == "cuda"
    result["tiny_32px"] = measure(tiny.model, tiny.resolution, 256, 5 if cuda else 3, device)
    result["sd_vae_256px"] = measure(SD_VAE, 256, 64 if cuda else 4, 5 if cuda else 2, device)
    for key in ("tiny_32px", "sd_vae_256px"):
        result[key]["bytes_per_image_on_disk"] = bytes_per_image(
            tuple(result[key]["latent_shape"]))
    sd = result["sd_vae_256px"]
    sd["imagenet_train_hours"] = 1_281_167 / sd["encode_images_per_s"] / 3600
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(os.environ.get("OUT", Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"vae_{device.type}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()

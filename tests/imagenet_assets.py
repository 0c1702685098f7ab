"""Everything the `imagenet` preset reads from outside the run, in the real on-disk formats but
tiny: class-folder JPEG trees (one unreadable file), a timm DINOv2-with-registers ViT file
(random weights, small width and depth, the key names of vit_large_patch14_reg4_dinov2), a
diffusers AutoencoderKL folder of SD-VAE's shape (4 latent channels, 8x down-sampling, scaling
0.18215), Inception weights in torch-fidelity's layout (random values), an ADM reference batch,
a small transformers masked LM and webdataset shards of image-caption pairs.
`imagenet_params` points a copy of the committed preset at them, changing only sizes, paths
and step counts."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .conftest import ROOT
from .micro_dag import micro_params

CLASSES = ("n01440764", "n01443537", "n01484850")
RESOLUTION = 32            # images; latents 4 x 4 x 4 after the VAE's 8x down-sampling
SEM_SIZE = 28              # two 14-pixel patches a side


def _tree(root: Path, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.zeros((40, 48, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
            base[8 + 6 * label:24 + 6 * label, 10:30] = 255 - base[0, 0]
            noise = rng.integers(0, 40, base.shape, dtype=np.uint8)
            Image.fromarray(base + noise).save(root / name / f"{name}_{i:04d}.JPEG",
                                               quality=90)


def _backbone(path: Path) -> None:
    from safetensors.torch import save_file

    from dlc.models.sem import build_backbone

    model = build_backbone("vit_large_patch14_reg4_dinov2", SEM_SIZE, None, drop_path=0.0,
                           stem_channels=None, patch_size=None, embed_dim=32, depth=1,
                           num_heads=2, reg_tokens=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def _vae(folder: Path) -> None:
    from diffusers import AutoencoderKL

    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=8,
                  sample_size=RESOLUTION, scaling_factor=0.18215).save_pretrained(folder)


def _text_model(folder: Path) -> None:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "the", "fish",
             "shark", "ray", "in", "water"]     # every word of CAPTIONS
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    BertForMaskedLM(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32,
                               max_position_embeddings=64)).save_pretrained(folder)


def _reference_batch(path: Path, tree: Path, inception: Path) -> None:
    """ADM's layout: arr_0 (N, H, W, 3) uint8 and the Inception statistics of the pool
    (mu, sigma: 2048) and spatial (mu_s, sigma_s: 2023) features, here from the random
    network the assets carry."""
    import torch

    from dlc.metrics.inception import build_inception, inception_features

    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((RESOLUTION,) * 2))
                       for p in sorted(tree.rglob("*.JPEG"))])
    with torch.no_grad():
        features = inception_features(build_inception(inception, torch.device("cpu")),
                                      torch.from_numpy(images).permute(0, 3, 1, 2))
    pool, spatial = (features[k].double().numpy() for k in ("pool", "spatial"))
    path.parent.mkdir(parents=True)
    np.savez(path, arr_0=images, mu=pool.mean(0), sigma=np.cov(pool.T),
             mu_s=spatial.mean(0), sigma_s=np.cov(spatial.T))


CAPTIONS = ("a photo of a fish in the water", "a shark in the water", "a ray in the water")


def _captioned_shards(folder: Path, shards: int = 2, per_shard: int = 6) -> None:
    """img2dataset's webdataset layout: <key>.jpg, <key>.txt, <key>.json per sample; the
    last sample of each shard lacks its caption."""
    import io
    import json
    import tarfile

    rng = np.random.default_rng(2)
    folder.mkdir(parents=True)
    for shard in range(shards):
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as archive:
            for i in range(per_shard):
                key = f"{shard:05d}{i:04d}"
                picture = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                    picture, format="JPEG")
                members = {"jpg": picture.getvalue(),
                           "json": json.dumps({"key": key}).encode()}
                if i < per_shard - 1:
                    members["txt"] = CAPTIONS[i % len(CAPTIONS)].encode()
                for extension, data in members.items():
                    info = tarfile.TarInfo(f"{key}.{extension}")
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))


def build(root: Path) -> dict[str, Path]:
    """The assets under root; their paths by the params key that names them."""
    from dlc.metrics.inception import save_random_weights

    paths = {"train_dir": root / "imagenet/train", "val_dir": root / "imagenet/val",
             "backbone": root / "models/dinov2_vitl14_reg4.safetensors",
             "vae": root / "models/sd-vae-ft-ema",
             "inception": root / "models/pt_inception-2015-12-05-6726825d.pth",
             "reference": root / "adm/VIRTUAL_imagenet256_labeled.npz",
             "text": root / "models/masked-lm", "captions": root / "laion/shards"}
    _tree(paths["train_dir"], 8, seed=0)
    _tree(paths["val_dir"], 4, seed=1)
    (paths["train_dir"] / CLASSES[0] / "broken.JPEG").write_bytes(b"not a jpeg")
    paths["backbone"].parent.mkdir(parents=True)
    _backbone(paths["backbone"])
    _vae(paths["vae"])
    save_random_weights(paths["inception"])
    _reference_batch(paths["reference"], paths["val_dir"], paths["inception"])
    _text_model(paths["text"])
    _captioned_shards(paths["captions"])
    return paths


# The imagenet preset at micro size: only sizes, step counts, batch sizes, workers, threads
# and GPU or array counts change (tests/test_imagenet_micro.py asserts which keys differ).
MICRO = {
    "sem": {"length": 8, "vocab": 16,
            "head": {"prototypes": 64, "hidden": 32, "bottleneck": 16,
                     "teacher_temp_warmup_steps": 2},
            "crops": {"global_size": SEM_SIZE, "local_crops": 2, "local_size": 14},
            "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "threads": 1,
                      "workers": 0, "checkpoint_every": 2},
            "extract": {"batch_size": 8, "shard_size": 10}},
    "probe": {"epochs": 1, "batch_size": 16},
    "sedd": {"size": "tiny",
             "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "threads": 1,
                       "checkpoint_every": 2},
             "sample": {"samples": 8, "batch_size": 4, "steps": 4}},
    "vae": {"resolution": RESOLUTION, "eval_images": 4,
            "cache": {"batch_size": 8, "shard_size": 10, "workers": 0}},
    "dit": {"size": "tiny",
            "train": {"steps": 4, "batch_size": 4, "threads": 1, "checkpoint_every": 2,
                      "sample_every": 4},
            "sample": {"samples": 8, "batch_size": 4, "steps": 4}},
    "evaluate": {"samples": 8, "reference_images": 8, "batch_size": 8, "kid_subsets": 2,
                 "kid_subset_size": 4, "isc_splits": 2, "eta_samples": 8, "threads": 1},
    "compose": {"samples": 4, "pairs_per_combination": 1, "samples_per_pair": 2},
    "text": {"caption_length": 8,
             "train": {"steps": 2, "batch_size": 4, "threads": 1, "checkpoint_every": 2},
             "sample": {"steps": 4, "samples": 2}},
}
GPUS = 2     # per training job: two DDP processes on the CPU under submitit-local
ARRAY = 2    # per sampling job


def _merge(base: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict):
            _merge(base[key], value)
        else:
            base[key] = value


def imagenet_params(paths: dict[str, Path], micro: bool = False) -> dict:
    """params.yaml with preset imagenet pointed at the assets; `micro` shrinks its sizes."""
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    params["preset"] = "imagenet"
    p = params["presets"]["imagenet"]
    p["data"]["folder"].update(train_dir=str(paths["train_dir"]), val_dir=str(paths["val_dir"]),
                               resolution=RESOLUTION)
    p["sem"]["backbone"].update(weights=str(paths["backbone"]), img_size=SEM_SIZE,
                                embed_dim=32, depth=1, num_heads=2)
    p["vae"]["pretrained"] = str(paths["vae"])
    p["evaluate"].update(reference_batch=str(paths["reference"]),
                         inception_weights=str(paths["inception"]))
    p["text"].update(model=str(paths["text"]), trust_remote_code=False,
                     captions=str(paths["captions"]))
    if micro:
        _merge(p, MICRO)
        params["toy"] = micro_params()["toy"]      # the report reads the Section 3 study too
        for resources in p["resources"].values():
            resources.update(gpu=min(resources["gpu"], GPUS),
                             array=min(resources["array"], ARRAY))
    return params

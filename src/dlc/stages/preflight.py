"""Stage `preflight`: before a long study is submitted, everything the preset names is checked
to exist and load, each training job's processes to divide its batch, and the planned GPU jobs
are listed with their resources and estimated GPU-hours. A missing file fails in seconds (exit
2, one line naming it), not after days of training.

    data trees     the train and val class-folder trees: class sub-folders, val's classes
                   those of train, images in each class folder (counted)
    weights        the SEM backbone's local file (timm loads it), the pretrained VAE folder
                   (diffusers loads it), the Inception file (torch-fidelity loads it)
    reference      the ADM reference batch: arr_0 (N, H, W, 3) uint8, read from its header
    text model     the transformers folder: its config and tokenizer load, weights present
    captions       the captioned dataset's shards: the first holds image-caption pairs

Existence is checked for every path first, so one run names every missing path; the loads
follow. Estimates come from the H200 measurements in `--benchmarks` (benchmarks/results/:
DiT and SEDD training and sampling, SEM extraction, VAE encoding); a job with no measurement
says so.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from dlc import io as dio
from dlc.config import Config, PresetConfig, to_dict

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".webp", ".bmp")
# Training rules and the batch their processes split (train.batch_size of that section).
TRAINING = {"train_sem": "sem", "train_sedd": "sedd", "train_vae": "vae", "train_dit": "dit",
            "train_dit_unconditional": "dit", "train_dit_features": "dit",
            "train_text2code": "text"}


def run(cfg: Config, *, out: str | Path | None = None,
        benchmarks: str | Path | None = None) -> dict:
    """`dlc preflight`: check the active preset; print the plan; write it to `out`."""
    preset = cfg.active
    paths = external_paths(preset)
    missing = [f"{what} {path}: no such file or folder" for what, path in paths
               if not Path(path).exists()]
    if missing:
        raise FileNotFoundError("; ".join(missing))
    images = {what: check(what, path, preset) for what, path in paths}
    check_processes(preset)
    jobs = plan(cfg, images, Path(benchmarks) if benchmarks is not None else None)
    print(plan_table(jobs))
    result = {"preset": cfg.preset, "checked": {what: str(path) for what, path in paths},
              "images": {k: v for k, v in images.items() if v is not None}, "jobs": jobs,
              **dio.run_metadata(to_dict(preset))}
    if out is not None:
        dio.write_json(out, result)
    return result


def external_paths(p: PresetConfig) -> list[tuple[str, str]]:
    """(what, path) of every file or folder outside the run that the preset reads."""
    paths = []
    if p.data.kind == "folder":
        paths += [("data.folder.train_dir", p.data.folder.train_dir),
                  ("data.folder.val_dir", p.data.folder.val_dir)]
    if p.sem.backbone.weights is not None:
        paths.append(("sem.backbone.weights", p.sem.backbone.weights))
    if p.vae.source == "pretrained":
        paths.append(("vae.pretrained", p.vae.pretrained))
    if p.evaluate.reference_batch is not None:
        paths.append(("evaluate.reference_batch", p.evaluate.reference_batch))
    if "inception" in p.evaluate.extractors:
        paths.append(("evaluate.inception_weights", p.evaluate.inception_weights))
    for section in ("text", "text_pretrained"):   # a package: folder comes with the install
        text = getattr(p, section)
        if text is not None and text.backend == "transformers" and not text.model.startswith(
                dio.PACKAGE_PREFIX):
            paths.append((f"{section}.model", text.model))
    if p.text.captions is not None:
        paths.append(("text.captions", p.text.captions))
    return [(what, str(path)) for what, path in paths]


def check(what: str, path: str, p: PresetConfig) -> int | None:
    """Load what `path` holds as its stage will; the image count for data trees."""
    try:
        if what.startswith("data.folder"):
            return _count_images(path, p.data.folder.train_dir)
        if what == "sem.backbone.weights":
            from dlc.models.sem import build_backbone

            b = p.sem.backbone
            build_backbone(b.name, b.img_size, path, drop_path=0.0, stem_channels=b.conv_stem,
                           patch_size=b.patch_size, embed_dim=b.embed_dim, depth=b.depth,
                           num_heads=b.num_heads, reg_tokens=b.reg_tokens)
        elif what == "vae.pretrained":
            from dlc.models.vae import load_vae

            load_vae(path)
        elif what == "evaluate.reference_batch":
            _check_reference_batch(path)
        elif what == "evaluate.inception_weights":
            import torch

            from dlc.metrics.inception import build_inception

            build_inception(path, torch.device("cpu"))
        elif what.endswith(".model"):   # text.model, text_pretrained.model
            _check_text_model(path, getattr(p, what.split(".")[0]).trust_remote_code)
        elif what == "text.captions":
            return _count_pairs(path)
    except Exception as error:  # whatever a library raises on a bad file is the finding
        raise ValueError(f"{what} {path}: does not load ({str(error).splitlines()[0]})") \
            from None
    return None


def _count_images(root: str, train_root: str) -> int:
    """Images in a class-folder tree whose classes are those of the training tree."""
    from dlc.data.images import folder_classes

    classes = folder_classes(root)
    if root != train_root:
        unknown = sorted(set(classes) - set(folder_classes(train_root)))
        if unknown:
            raise ValueError(f"class {unknown[0]!r} is not a class of {train_root}")
    counts = {name: sum(1 for entry in os.scandir(Path(root) / name)
                        if entry.name.lower().endswith(IMAGE_SUFFIXES))
              for name in classes}
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(f"class folder {empty[0]!r} holds no images")
    return sum(counts.values())


def _array_header(archive: zipfile.ZipFile, name: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of one array of an .npz, from its header only."""
    with archive.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(member)
    return shape, dtype


def _count_pairs(path: str) -> int:
    """The shards of the captioned dataset; the first is read (it must hold pairs), the
    rest counted as shards of the same size."""
    from dlc.data.captioned import read_shard, shards

    found = shards(path)
    pairs, _ = read_shard(found[0])
    if pairs.empty:
        raise ValueError(f"{found[0]}: no image-caption pairs")
    return len(pairs) * len(found)


def _check_reference_batch(path: str) -> None:
    """arr_0 is (N, H, W, 3) uint8 and the Inception statistics present have the dimensions
    of the pool (2048) and spatial (2023) features, read from the headers (not 2 GB)."""
    from dlc.metrics.inception import POOL_DIM, SPATIAL_DIM

    with zipfile.ZipFile(path) as archive:
        shape, dtype = _array_header(archive, "arr_0")
        if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
            raise ValueError(f"arr_0 must be (N, H, W, 3) uint8, got {shape} {dtype}")
        present = {name.removesuffix(".npy") for name in archive.namelist()}
        for mu, sigma, dim in (("mu", "sigma", POOL_DIM), ("mu_s", "sigma_s", SPATIAL_DIM)):
            for name, expected in ((mu, (dim,)), (sigma, (dim, dim))):
                found = _array_header(archive, name)[0] if name in present else expected
                if found != expected:
                    raise ValueError(f"{name} is {found}, the Inception statistics need "
                                     f"{expected}")


def _check_text_model(path: str, trust_remote_code: bool) -> None:
    from transformers import AutoConfig, AutoTokenizer

    AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
               "pytorch_model.bin.index.json")
    if not any((Path(path) / name).is_file() for name in weights):
        raise ValueError(f"no weights file ({', '.join(weights)})")


def check_processes(p: PresetConfig) -> None:
    """Each training job's GPUs x nodes (one DDP process each) divide its batch."""
    for rule, section in TRAINING.items():
        resources, train = p.resources.get(rule), getattr(p, section).train
        if resources is None or not resources.gpu or train is None:  # e.g. a pretrained VAE
            continue
        processes = resources.gpu * resources.nodes
        batch = train.batch_size
        if batch % processes:
            raise ValueError(f"resources.{rule}: {resources.gpu} GPUs x {resources.nodes} "
                             f"nodes = {processes} processes do not divide "
                             f"{section}.train.batch_size {batch}")


def plan(cfg: Config, images: dict, benchmarks: Path | None) -> list[dict]:
    """One row per rule with resources: GPUs, nodes, CPUs, memory, time limit, array tasks,
    and the estimated GPU-hours (None: not measured)."""
    estimates = gpu_hours(cfg.active, images, benchmarks) if benchmarks is not None else {}
    return [{"rule": rule, **{k: getattr(r, k) for k in ("gpu", "nodes", "cpus_per_task",
                                                          "mem_mb", "runtime", "array")},
             "gpu_hours": estimates.get(rule)}
            for rule, r in cfg.active.resources.items()]


def _read(benchmarks: Path, name: str) -> dict | None:
    path = benchmarks / name
    return json.loads(path.read_text()) if path.is_file() else None


def gpu_hours(p: PresetConfig, images: dict, benchmarks: Path) -> dict[str, float]:
    """GPU-hours per rule from the measured H200 rates (work / rate per GPU)."""
    found: dict[str, float] = {}
    train_images = images.get("data.folder.train_dir")
    dit, sedd = _read(benchmarks, "dit_h200.json"), _read(benchmarks, "sedd_gpu_h200.json")
    if dit:
        rate = max(row["images_per_s"] for row in dit["train"])
        for rule in ("train_dit", "train_dit_unconditional", "train_dit_features"):
            found[rule] = p.dit.train.steps * p.dit.train.batch_size / rate / 3600
        sample_rate = dit["sample"]["images_per_s"] * dit["sample"]["steps"] / p.dit.sample.steps
        found["sample_dit"] = p.dit.sample.samples / sample_rate / 3600
        found["sample_unconditional"] = found["generate_dlc"] = found["sample_dit"]
    if sedd:
        rate = max(row["sequences_per_s"] for row in sedd["train"])
        found["train_sedd"] = p.sedd.train.steps * p.sedd.train.batch_size / rate / 3600
    sampling = _read(benchmarks, "sedd_gpu_sampling_h200.json")
    if sampling:
        row = min(sampling["sample"], key=lambda r: r["projected_1024_steps_s"])
        per_code = row["projected_1024_steps_s"] / row["batch"] * p.sedd.sample.steps / 1024
        found["sample_codes"] = p.sedd.sample.samples * per_code / 3600
    if "sample_codes" in found and "sample_dit" in found:    # SEDD's codes, then the DiT
        points = len(p.evaluate.eta_sweep) * len(p.evaluate.eta_seeds)
        per_image = (found["sample_codes"] / p.sedd.sample.samples
                     + found["sample_dit"] / p.dit.sample.samples)
        found["eta_sweep"] = points * p.evaluate.eta_samples * per_image
    extract, vae = _read(benchmarks, "sem_extract_h200.json"), _read(benchmarks, "vae_h200.json")
    if train_images is not None and extract and "imagenet" in extract:
        found["extract_codes"] = train_images / extract["imagenet"]["images_per_s"] / 3600
    pairs = images.get("text.captions")
    if pairs is not None and extract and "imagenet" in extract:
        found["caption_codes"] = pairs / extract["imagenet"]["images_per_s"] / 3600
    if train_images is not None and vae and "sd_vae_256px" in vae:
        found["cache_latents"] = train_images / vae["sd_vae_256px"]["encode_images_per_s"] / 3600
    return found


def plan_table(jobs: list[dict]) -> str:
    lines = [f"{'rule':<26}{'GPUs':>5}{'nodes':>6}{'CPUs':>6}{'mem GB':>8}{'limit h':>8}"
             f"{'array':>6}{'est. GPU-h':>14}"]
    for job in jobs:
        hours = "not measured" if job["gpu_hours"] is None else f"{job['gpu_hours']:.1f}"
        lines.append(f"{job['rule']:<26}{job['gpu']:>5}{job['nodes']:>6}"
                     f"{job['cpus_per_task']:>6}{job['mem_mb'] / 1000:>8.0f}"
                     f"{job['runtime'] / 60:>8.0f}{job['array']:>6}{hours:>14}")
    measured = [job["gpu_hours"] for job in jobs if job["gpu_hours"] is not None]
    lines.append(f"estimated GPU-hours of the measured jobs (H200 rates): {sum(measured):.0f}")
    return "\n".join(lines)

"""Codes in, images out: a DiT run decodes a codes folder through the VAE (the `sample-dit`
stage, and every stage that makes codes: generation, composition, text -> code, the eta sweep).

The first dit.sample.samples codes of the folder are cut into batches; batch b is sampled with
a generator seeded by (seed, b) and written as shards/batch-<b>.npz (uint8 NHWC `arr_0` plus the
`image_ids`) with a sidecar of the settings that made it, atomically. Task k of n takes the
batches b with b mod n = k, so N processes or array jobs split the work with no overlap; a
rerun keeps every finished batch. When every batch exists, the outputs are assembled once, in
code order:
    samples.npz    ADM-style reference batch: arr_0 (N, H, W, 3) uint8
    images/        one PNG per sample, <index>.png
    samples.json   settings, seeds, model and codes provenance
    grid.png       the source images of the codes (when they came from real images) above
                   the images generated from them
"""

from __future__ import annotations

import dataclasses
import hashlib
import io as bytes_io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import DiTConfig, VAEConfig, to_dict
from dlc.data import codes as codes_io
from dlc.data.codes import read_codes
from dlc.data.sources import ImageTable
from dlc.diffusion.gaussian import build_process, sample_latents
from dlc.models.dit import condition_inputs, load_dit
from dlc.models.judge import agreement, load_judge, predict
from dlc.models.vae import decode, load_vae, reconstruct, vae_location
from dlc.train import distributed
from dlc.train.batches import task_share
from dlc.viz import image_grid, save_image

log = logging.getLogger(__name__)
GRID = 16


def batch_seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def _batch_path(out_dir: Path, batch: int) -> Path:
    return out_dir / "shards" / f"batch-{batch:05d}.npz"


def _write_batch(path: Path, images: np.ndarray, image_ids: list[str], sidecar: dict) -> None:
    buffer = bytes_io.BytesIO()
    np.savez(buffer, arr_0=images, image_ids=np.array(image_ids))
    dio.write_bytes(path, buffer.getvalue())
    dio.write_json(path.with_suffix(".json"), sidecar)


def _batch_done(path: Path, sidecar: dict) -> bool:
    return (path.is_file() and path.with_suffix(".json").is_file()
            and dio.read_json(path.with_suffix(".json")) == sidecar)


def load_decoder(cfg: DiTConfig, model_dir: str | Path, vae: str | Path, length: int,
                 vocab: int, device: torch.device):
    """(EMA DiT, its run meta, the VAE of the diffusers folder `vae`) on `device`."""
    model, meta = load_dit(cfg, model_dir, length, vocab)
    return model.to(device), meta, load_vae(vae).to(device)


def decode_batch(cfg: DiTConfig, model, meta: dict, process, vae, codes: np.ndarray,
                 features: np.ndarray | None, seed: int, device: torch.device) -> np.ndarray:
    """One batch of codes (B, L) (and their features, for a features-conditioned DiT) ->
    (B, H, W, 3) uint8 images: latents sampled with dit.sample.* from a generator seeded by
    `seed`, then the VAE decoder. The one implementation `sample-dit` and `dlc.Pipeline`
    share."""
    generator = torch.Generator(device).manual_seed(seed)
    condition = condition_inputs(
        meta["condition"], torch.from_numpy(codes.astype(np.int64)).to(device),
        torch.from_numpy(features.astype(np.float32)).to(device)
        if features is not None else None)
    latents = sample_latents(cfg, model, process, condition,
                             model.null_condition(len(codes), device),
                             (len(codes), *meta["latent_shape"]), generator, device,
                             distributed.autocast(device, cfg.sample.precision))
    return decode(vae, latents)


def generate(cfg: DiTConfig, vae_cfg: VAEConfig, model_dir: str | Path, codes_dir: str | Path,
             vae_dir: str | Path, length: int, vocab: int, out_dir: str | Path,
             images: str | Path | None = None, task: int = 0, tasks: int = 1,
             judge: str | Path | None = None) -> dict | None:
    """Sample this task's batches; assemble the outputs if every batch exists (returns the
    summary then, else None). With `judge` (a train-judge folder) and codes that carry the
    attribute columns, the summary scores how often each decoded image has its source's
    attributes."""
    out_dir, s = Path(out_dir), cfg.sample
    torch.set_num_threads(cfg.train.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, meta, vae = load_decoder(cfg, model_dir, vae_location(vae_cfg, vae_dir), length,
                                    vocab, device)
    process = build_process(cfg)
    features = meta["condition"] == "features"
    codes = read_codes(codes_dir, length, vocab, features=features)
    n = min(s.samples, len(codes))
    if n < s.samples:
        log.warning("%s holds %d codes, fewer than dit.sample.samples=%d", codes_dir,
                    len(codes), s.samples)
    sampler = {k: v for k, v in to_dict(s).items() if k not in ("samples", "split")}
    model_sha = dio.sha256_file(Path(model_dir) / "model.safetensors")
    condition_hash = hashlib.sha256(np.ascontiguousarray(codes.codes[:n]).tobytes())
    if features:
        condition_hash.update(np.ascontiguousarray(codes.features[:n]).tobytes())
    codes_sha = condition_hash.hexdigest()
    starts = list(range(0, n, s.batch_size))
    mine = task_share(len(starts), task, tasks)
    for batch in tqdm(mine, desc=f"sample-dit {task}/{tasks}", mininterval=5):
        first = starts[batch]
        rows = np.arange(first, min(first + s.batch_size, n))
        sidecar = {"model_sha256": model_sha, "codes_sha256": codes_sha, "sampler": sampler,
                   "seed": batch_seed(s.seed, batch), "rows": [int(rows[0]), int(rows[-1])]}
        path = _batch_path(out_dir, batch)
        if _batch_done(path, sidecar):
            continue
        pictures = decode_batch(cfg, model, meta, process, vae, codes.codes[rows],
                                codes.features[rows] if features else None, sidecar["seed"],
                                device)
        _write_batch(path, pictures, codes.image_ids[rows].tolist(), sidecar)
    batches = [_batch_path(out_dir, b) for b in range(len(starts))]
    if not all(p.is_file() for p in batches):
        log.info("task %d/%d done; waiting for the other tasks' batches before assembly",
                 task, tasks)
        return None
    summary = {"n": n, "codes": str(codes_dir), "codes_split": codes.metadata.get("split"),
               "codes_sha256": codes_sha,
               "model": str(model_dir), "model_sha256": model_sha, "condition": meta["condition"],
               "sampler": sampler, "batch_seeds": [batch_seed(s.seed, b) for b in
                                                   range(len(starts))],
               "vae": vae_location(vae_cfg, vae_dir), **dio.run_metadata({"dit": to_dict(cfg)})}
    return assemble(out_dir, batches, summary, images, codes.frame.iloc[:n], judge, vae)


def decode_codes(cfg: DiTConfig, vae_cfg: VAEConfig, model_dir, vae_dir, codes: np.ndarray,
                 image_ids: list[str], metadata: dict, out_dir: str | Path, source: str,
                 columns: pd.DataFrame | None = None,
                 features: np.ndarray | None = None) -> np.ndarray:
    """Made codes (composed, written from text, ...) as <out>/codes (one shard and a
    manifest), then every one of them decoded into <out> as `generate` does; the images.
    `features` go to the features column, the condition of a features-conditioned DiT."""
    out_dir = Path(out_dir)
    length, vocab = metadata["L"], metadata["V"]
    codes_io.write_shard(out_dir / "codes" / codes_io.shard_name(0), image_ids,
                         np.full(len(codes), -1), codes.astype(codes_io.numpy_dtype(vocab)),
                         metadata, columns=columns, features=features, source=source)
    dio.write_json(out_dir / "codes" / codes_io.MANIFEST, {**metadata, "rows": len(codes)})
    every = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample,
                                                                samples=len(codes)))
    generate(every, vae_cfg, model_dir, out_dir / "codes", vae_dir, length, vocab, out_dir)
    return np.load(out_dir / "samples.npz")["arr_0"]


def assemble(out_dir: Path, batches: list[Path], summary: dict,
             images: str | Path | None = None, sources: pd.DataFrame | None = None,
             judge: str | Path | None = None, vae=None) -> dict:
    """samples.npz (code order), the PNG folder, grid.png and samples.json from the shards;
    `sources` (the codes' rows) and `judge` add the attribute agreement (and `vae` its
    ceiling: the judge on the sources' VAE reconstructions)."""
    parts = [np.load(path) for path in batches]
    samples = np.concatenate([part["arr_0"] for part in parts])
    image_ids = np.concatenate([part["image_ids"] for part in parts])
    buffer = bytes_io.BytesIO()
    np.savez(buffer, arr_0=samples)
    dio.write_bytes(out_dir / "samples.npz", buffer.getvalue())
    for index, picture in enumerate(samples):
        path = out_dir / "images" / f"{index:06d}.png"
        with dio.atomic_path(path) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG")
    grid = samples[:GRID]
    if images is not None:
        originals = _source_images(images, summary.get("codes_split"), image_ids[:GRID],
                                   samples.shape[1])
        if originals is not None:
            grid = np.concatenate([originals, grid])
    save_image(image_grid(grid, columns=min(GRID, len(samples)),
                          scale=max(1, 64 // samples.shape[1])), out_dir / "grid.png")
    summary = {**summary, "shape": list(samples.shape)}
    if judge is not None and sources is not None:
        summary["attributes"] = score_attributes(judge, samples, sources, images,
                                                 summary.get("codes_split"), vae)
    dio.write_json(out_dir / "samples.json", summary)
    log.info("%d samples %s -> %s", len(samples), samples.shape[1:], out_dir / "samples.npz")
    return summary


def score_attributes(judge_dir: str | Path, samples: np.ndarray, sources: pd.DataFrame,
                     images: str | Path | None, split: str | None, vae=None) -> dict:
    """Per attribute, the fraction of samples the judge gives their source's value; beside it,
    when the source images are at hand, the judge on them (its own accuracy) and on their VAE
    reconstructions (`vae`: the ceiling of any image generator on these latents), and against
    shuffled sources (chance)."""
    judge, report = load_judge(judge_dir)
    if judge is None:
        return {"skipped": report["reason"]}
    classes = report["classes"]
    missing = [name for name in classes if name not in sources.columns]
    if missing:
        return {"skipped": f"the codes carry no attribute columns {missing}"}
    reference = sources[list(classes)].reset_index(drop=True)
    predicted = predict(judge, samples, classes)
    shuffled = reference.sample(frac=1.0, random_state=0).reset_index(drop=True)
    result = {"match": agreement(predicted, reference), "chance": agreement(predicted, shuffled)}
    if images is not None:
        real = _source_images(images, split, sources["image_id"].to_numpy(), samples.shape[1])
        if real is not None:
            result["judge_on_sources"] = agreement(predict(judge, real, classes), reference)
            if vae is not None:
                result["judge_on_vae"] = agreement(predict(judge, reconstruct(vae, real),
                                                           classes), reference)
    return result


def _source_images(images: str | Path, split: str | None, image_ids,
                   size: int) -> np.ndarray | None:
    """The real images the codes were extracted from (None for generated codes, whose split
    is not in the images table)."""
    try:
        table = ImageTable(images, split)
    except ValueError:
        return None
    rows = pd.Index(table.frame["image_id"]).get_indexer(image_ids)
    if (rows < 0).any():
        return None
    return np.stack([table.centred(int(row), size) for row in rows])

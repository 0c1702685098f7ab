"""Stage `train-dit`: learn p(x | c), images given their Discrete Latent Code, with a DiT on
cached VAE latents.

Per step: a batch of (latent, code) pairs (data/latents.py joins the latent cache and the codes
table on image_id), each whole code replaced by the null code with probability null_code_prob
(classifier-free guidance learns the unconditional model in the same network), t ~ U{0..T-1},
loss = improved DDPM's L_simple + lambda T L_t (diffusion/gaussian.py). AdamW (fused on CUDA,
foreach on CPU) at a constant lr after an optional warm-up, EMA weights for sampling, bf16
autocast on GPU around the network only (the loss stays in float32), optional torch.compile,
DDP from the environment. Batches and their random draws are addressed by step
(train/batches.py), so a resumed run is bit-exact and g processes train what one does.
`condition` "features" trains the composition baseline on the codes table's continuous
features instead (the zero vector is its null condition); "none" the unconditional one.
Outputs in the run folder: model.safetensors (EMA), meta.json, loss.csv, loss.png,
samples.png (fixed training codes decoded, beside their images), checkpoints/.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, DiTConfig, SEMConfig, VAEConfig, to_dict
from dlc.data.codes import read_codes
from dlc.data.images import collate_skipping
from dlc.data.latents import LatentCache, LatentCodePairs
from dlc.data.multicrop import NormalizedTensor
from dlc.data.sources import CentredImages, ImageTable
from dlc.diffusion.gaussian import GaussianDiffusion, build_process, sample_latents
from dlc.models.dit import DiT, build_dit, condition_inputs
from dlc.models.sem import load_encoder
from dlc.models.vae import REPORT, decode, load_vae, vae_location
from dlc.train import checkpoint, distributed
from dlc.train.batches import EpochOrder, StepBatches, StepRandom
from dlc.train.ema import make_ema, update_ema, warmed_up_decay
from dlc.train.guard import NonFiniteGuard
from dlc.train.repa import alignment_loss, encoder_targets
from dlc.train.schedules import lr_factor
from dlc.viz import image_grid, loss_curve, save_image

log = logging.getLogger(__name__)
GRID_CODES = 16   # fixed training codes decoded into the progress grids


def run(cfg: Config, *, latents: str | Path, codes: str | Path, vae: str | Path,
        out: str | Path, condition: str = "code", sem: str | Path | None = None,
        images: str | Path | None = None) -> Path:
    """`dlc train-dit`: the DiT conditioned on codes (or on continuous features, or nothing)
    into `out`; `sem` (the train-sem folder) and `images` feed REPA when dit.repa is set."""
    preset = cfg.active
    encoder = Path(sem) / "encoder.safetensors" if sem else None
    return train(preset.dit, preset.vae, latents, codes, vae, preset.sem.length,
                 preset.sem.vocab, out, condition, preset.sem, encoder, images)


def null_condition_dropout(condition: torch.Tensor, probability: float, null,
                           uniform: torch.Tensor) -> torch.Tensor:
    """Each row's whole condition (code or features) becomes the null condition with
    `probability` (CFG training); `uniform` holds one U(0, 1) draw per row."""
    dropped = (uniform < probability).view(-1, *[1] * (condition.dim() - 1))
    return torch.where(dropped, null, condition)


def parameter_groups(model: DiT, code_lr_mult: float) -> list[dict]:
    """AdamW groups: the code table at lr x code_lr_mult, the rest at lr. Adam moves each
    element by about lr per step whatever its gradient, and the condition is the mean of L
    rows, each in few codes' gradients: at the network's lr the table hardly leaves its init."""
    table = [model.code_embedder.table.weight] if model.condition == "code" else []
    rest = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in table)]
    groups = [{"params": rest, "lr_mult": 1.0}]
    if table:
        groups.append({"params": table, "lr_mult": code_lr_mult})
    return groups


def alignment_targets(cfg: DiTConfig, sem: SEMConfig, encoder_path: str | Path,
                      images: str | Path, cache: LatentCache, device: torch.device
                      ) -> torch.Tensor:
    """REPA's targets for every cached latent, in cache order: the SEM encoder's patch
    features of the image it came from, mirrored as the cache mirrored it, pooled to the DiT's
    token grid (train/repa.py)."""
    table = ImageTable(images, cfg.train_split)
    rows = pd.Series(np.arange(len(table)), index=table.frame["image_id"])
    wanted = cache.index["image_id"]
    missing = ~wanted.isin(rows.index)
    if missing.any():
        raise ValueError(f"{images}: no image {wanted[missing].iloc[0]!r} of the latent cache "
                         f"in split {cfg.train_split!r}")
    dataset = CentredImages(table, rows[wanted].to_numpy(), sem.backbone.img_size,
                            NormalizedTensor(), flips=cache.index["flip"].to_numpy())
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.repa.batch_size,
                                         collate_fn=collate_skipping)
    encoder = load_encoder(sem, encoder_path).to(device)
    grid = cache.shape[1] // cfg.patch
    return encoder_targets(encoder, loader, grid,
                           distributed.autocast(device, cfg.train.precision), device)


def train(cfg: DiTConfig, vae_cfg: VAEConfig, latents_dir: str | Path, codes_dir: str | Path,
          vae_dir: str | Path, length: int, vocab: int, out_dir: str | Path,
          condition: str = "code", sem: SEMConfig | None = None,
          encoder: str | Path | None = None, images: str | Path | None = None) -> Path:
    """Train on the (latent, code) pairs of dit.train_split; resumes exactly from
    out_dir/checkpoints when the same params and data made them. With dit.repa, `sem`, the
    trained `encoder` file and the `images` table give the alignment targets."""
    out_dir = Path(out_dir)
    procs = distributed.setup()
    t = cfg.train
    torch.set_num_threads(t.threads)
    vae_report = dio.read_json(Path(vae_dir) / REPORT)
    cache = LatentCache(Path(latents_dir) / cfg.train_split)
    cache.check({"vae_sha256": vae_report["vae_sha256"],
                 "scaling_factor": vae_report["scaling_factor"]})
    codes = read_codes(Path(codes_dir) / cfg.train_split, length, vocab,
                       features=condition == "features")
    feature_dim = codes.features.shape[1] if condition == "features" else 0
    pairs = LatentCodePairs(cache, codes)
    latents_made_by = {key: cache.metadata.get(key) for key in (
        "vae_sha256", "scaling_factor", "images_sha256", "posterior", "both_flips", "seed")}
    # What a checkpoint must share with this run to be resumed: not the sampler settings.
    trained_by = {key: value for key, value in to_dict(cfg).items() if key != "sample"}
    params_sha = dio.sha256_json({"dit": checkpoint.lengthenable(trained_by), "L": length,
                                  "V": vocab, "condition": condition, "pairs": len(pairs),
                                  "latents": latents_made_by, "codes": codes.metadata})

    targets = None
    if cfg.repa is not None:
        if sem is None or encoder is None or images is None:
            raise ValueError("dit.repa needs the sem params, the encoder and the images table")
        targets = alignment_targets(cfg, sem, encoder, images, cache, procs.device)

    torch.manual_seed(t.seed)
    model = build_dit(cfg, cache.shape, length, vocab, condition, feature_dim,
                      0 if targets is None else targets.shape[-1]).to(procs.device)
    model.grad_checkpointing = t.grad_checkpointing
    ema = make_ema(model)
    process = build_process(cfg)
    cuda = procs.device.type == "cuda"
    network: nn.Module = model
    if procs.world > 1:
        network = nn.parallel.DistributedDataParallel(model)
    if t.compile and cuda:
        network = torch.compile(network)
    optimizer = torch.optim.AdamW(parameter_groups(model, t.code_lr_mult), lr=t.lr,
                                  weight_decay=0.0, fused=cuda, foreach=not cuda)
    history, start = checkpoint.resume(out_dir / "checkpoints", model, ema, optimizer,
                                       params_sha, t.steps)
    guard = NonFiniteGuard(optimizer, t.nonfinite_patience, out_dir / "checkpoints", history)

    order = EpochOrder(len(pairs), t.seed)
    batches = StepBatches(start, t.steps, t.batch_size, procs.rank, procs.world)
    autocast = distributed.autocast(procs.device, t.precision)

    aligned: dict[str, torch.Tensor] = {}  # REPA: the projected tokens of this step

    def network_fp32(x, timesteps, **kwargs):
        with autocast:
            if targets is None:
                return network(x, timesteps, **kwargs).float()
            out, aligned["tokens"] = network(x, timesteps, align=True, **kwargs)
            return out.float()

    null = model.null_condition(t.batch_size // procs.world, procs.device)  # per local batch
    log_every = max(1, t.steps // 200)
    window_start, window_images = time.perf_counter(), 0
    progress = tqdm(batches, desc="train-dit", initial=start, total=t.steps, mininterval=5,
                    disable=not procs.main)
    for step, numbers in enumerate(progress, start=start):
        rows = [order(k) for k in numbers]
        latents, batch_codes = pairs.batch(rows)
        latents = latents.to(procs.device, non_blocking=True)
        inputs = condition_inputs(condition, batch_codes.to(procs.device, non_blocking=True),
                                  pairs.features(rows).to(procs.device)
                                  if condition == "features" else None)
        # drawn for the global batch, so any number of processes trains the same model
        draws = StepRandom(t.seed, step, procs.rank, procs.world, procs.device)
        noise = draws.randn(t.batch_size, *latents.shape[1:])
        kwargs = {}
        for name, value in inputs.items():   # no draw without a condition
            kwargs[name] = null_condition_dropout(value, cfg.null_code_prob, null[name],
                                                  draws.rand(t.batch_size))
        timesteps = draws.randint(process.num_timesteps, t.batch_size)
        for group in optimizer.param_groups:
            group["lr"] = (t.lr * group["lr_mult"]
                           * lr_factor(step, "constant", t.warmup_steps, t.steps))
        terms = process.training_losses(network_fp32, latents, timesteps, noise=noise,
                                        **kwargs)
        loss = terms["loss"].mean()
        if targets is not None:
            terms["align"] = alignment_loss(aligned["tokens"], targets[rows].to(procs.device))
            loss = loss + cfg.repa.weight * terms["align"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.get_total_norm([p.grad for p in model.parameters()
                                             if p.grad is not None])
        done = step + 1
        stepped = guard.step(done, loss, grad_norm)   # no update from a non-finite step
        update_ema(ema, model, warmed_up_decay(step, t.ema_decay), stepped)
        window_images += len(latents) * procs.world

        if done % log_every == 0 or done == t.steps:
            now = time.perf_counter()
            row = {"step": done, "loss": loss.item(), "mse": terms["mse"].mean().item(),
                   "vlb": terms["vlb"].mean().item() if "vlb" in terms else 0.0,
                   "align": terms["align"].mean().item() if "align" in terms else 0.0,
                   "grad_norm": grad_norm.item(),
                   "images_per_s": window_images / (now - window_start), **guard.skipped(done)}
            window_start, window_images = now, 0
            history.append(row)
            progress.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        if procs.main and t.sample_every and done % t.sample_every == 0 and done < t.steps:
            _sample_grid(cfg, vae_cfg, vae_dir, ema, process, pairs, condition, procs.device,
                         out_dir / "grids" / f"step-{done:08d}.png")
        if (done % t.checkpoint_every == 0 or done == t.steps) and procs.main:
            guard.check()
            checkpoint.save(out_dir / "checkpoints", done, model, ema,
                            {"optimizer": optimizer.state_dict(), "history": history,
                             "ema_updates": done}, params_sha, keep=t.keep_checkpoints)

    guard.check()
    if procs.main:
        _sample_grid(cfg, vae_cfg, vae_dir, ema, process, pairs, condition, procs.device,
                     out_dir / "samples.png")
        _write_outputs(cfg, out_dir, ema, history, cache, codes, length, vocab, condition,
                       params_sha)
    return out_dir


@torch.no_grad()
def _sample_grid(cfg: DiTConfig, vae_cfg: VAEConfig, vae_dir, ema: DiT,
                 process: GaussianDiffusion, pairs: LatentCodePairs, condition: str,
                 device: torch.device, path: Path) -> None:
    """The first GRID_CODES training pairs: their cached latents decoded (top row) and images
    sampled from their codes (bottom row), same seed every time."""
    rows = np.arange(min(GRID_CODES, len(pairs)))
    latents, codes = pairs.batch(rows)
    n = len(rows)
    kwargs = condition_inputs(condition, codes.to(device), pairs.features(rows).to(device)
                              if condition == "features" else None)
    null = ema.null_condition(n, device)
    autocast = distributed.autocast(device, cfg.sample.precision)
    generated = sample_latents(cfg, ema, process, kwargs, null, latents.shape,
                               torch.Generator(device).manual_seed(cfg.sample.seed), device,
                               autocast)
    vae = load_vae(vae_location(vae_cfg, vae_dir)).to(device)
    pictures = decode(vae, torch.cat([latents.to(device), generated]))
    save_image(image_grid(pictures, columns=n, scale=max(1, 64 // pictures.shape[1])), path)


def _write_outputs(cfg: DiTConfig, out_dir: Path, ema: DiT, history: list[dict],
                   cache: LatentCache, codes, length: int, vocab: int, condition: str,
                   params_sha: str) -> None:
    ema.projector, ema.align_depth = None, 0  # REPA's projector only served training
    checkpoint.save_weights(out_dir / "model.safetensors", ema)
    dio.write_csv(out_dir / "loss.csv", history)
    loss_curve(history, "mse", "epsilon MSE", f"DiT-{cfg.size}/{cfg.patch} ({condition})",
               out_dir / "loss.png")
    parameters = sum(p.numel() for p in ema.parameters())
    dio.write_json(out_dir / "meta.json", {
        "precision": distributed.resolve_precision(
            next(ema.parameters()).device, cfg.train.precision),
        "L": length, "V": vocab, "condition": condition, "latent_shape": list(cache.shape),
        "feature_dim": ema.feature_embedder.features if condition == "features" else 0,
        "dit": to_dict(cfg), "parameters": parameters, "train_pairs": len(cache),
        "vae_sha256": cache.metadata.get("vae_sha256"),
        "scaling_factor": cache.metadata.get("scaling_factor"),
        "encoder_sha256": codes.metadata.get("encoder_sha256"), "final": history[-1],
        "model_sha256": dio.sha256_file(out_dir / "model.safetensors"),
        **dio.run_metadata({"dit": to_dict(cfg)}), "params_sha256": params_sha})
    log.info("DiT-%s/%d %s (%d parameters) trained %d steps -> %s", cfg.size, cfg.patch,
             condition, parameters, cfg.train.steps, out_dir)

"""Stage `train-sedd`: learn p(c), the distribution of Discrete Latent Codes, with SEDD-absorb.

Per step: a batch of training codes, t ~ U(eps, 1), every token masked with probability m(t),
loss = the diffusion-weighted score entropy (diffusion/absorbing.py) averaged over the batch.
AdamW, linear warm-up then constant lr, gradient clipping, EMA weights for sampling (with a
warmed-up decay, so that short runs do not sample from an average that still holds the
initialisation). Outputs in
the run folder: model.safetensors (EMA), meta.json, loss.csv, loss.png, checkpoints/.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, SEDDConfig, to_dict
from dlc.data.codes import read_codes
from dlc.diffusion.absorbing import AbsorbingDiffusion
from dlc.models.sedd import build_sedd
from dlc.train import checkpoint, distributed
from dlc.train.batches import EpochOrder, StepBatches, StepRandom
from dlc.train.ema import make_ema, update_ema, warmed_up_decay
from dlc.train.guard import NonFiniteGuard
from dlc.train.schedules import lr_factor
from dlc.viz import loss_curve

log = logging.getLogger(__name__)


def run(cfg: Config, *, codes: str | Path, out: str | Path) -> Path:
    """`dlc train-sedd`: SEDD trained on the sedd.train_split codes of `codes` into `out`."""
    preset = cfg.active
    return train(preset.sedd, Path(codes) / preset.sedd.train_split, preset.sem.length,
                 preset.sem.vocab, out)


def train(cfg: SEDDConfig, codes_dir: str | Path, length: int, vocab: int,
          out_dir: str | Path) -> Path:
    """Train on a codes folder (checked against L and V); resumes exactly from
    out_dir/checkpoints when the same params and codes made them."""
    out_dir = Path(out_dir)
    procs = distributed.setup()
    t = cfg.train
    torch.set_num_threads(t.threads)
    codes = read_codes(codes_dir, length, vocab)
    data = torch.from_numpy(codes.codes.astype(np.int64))
    params_sha = dio.sha256_json({"sedd": checkpoint.lengthenable(to_dict(cfg)), "L": length,
                                  "V": vocab, "codes": str(codes_dir), "rows": len(data)})

    torch.manual_seed(t.seed)
    model = build_sedd(cfg, length, vocab).to(procs.device)
    ema = make_ema(model)
    process = AbsorbingDiffusion(vocab)
    student: nn.Module = model
    if procs.world > 1:
        student = nn.parallel.DistributedDataParallel(model)
    if t.compile and procs.device.type == "cuda":
        student = torch.compile(student)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(0.9, 0.999),
                                  weight_decay=0.0, fused=procs.device.type == "cuda")
    history, start = checkpoint.resume(out_dir / "checkpoints", model, ema, optimizer,
                                       params_sha, t.steps)
    guard = NonFiniteGuard(optimizer, t.nonfinite_patience, out_dir / "checkpoints", history)

    order = EpochOrder(len(data), t.seed)
    batches = StepBatches(start, t.steps, t.batch_size, procs.rank, procs.world)
    autocast = distributed.autocast(procs.device, t.precision)
    eps = process.noise.eps
    log_every = max(1, t.steps // 200)
    progress = tqdm(batches, desc="train-sedd", initial=start, total=t.steps, mininterval=5,
                    disable=not procs.main)
    for step, numbers in enumerate(progress, start=start):
        clean = data[[order(k) for k in numbers]].to(procs.device, non_blocking=True)
        # drawn for the global batch, so any number of processes trains the same model
        draws = StepRandom(t.seed, step, procs.rank, procs.world, procs.device)
        time = eps + (1 - eps) * draws.rand(t.batch_size)
        noisy = process.corrupt(clean, time, draws.rand(t.batch_size, length))
        for group in optimizer.param_groups:
            group["lr"] = t.lr * lr_factor(step, "constant", t.warmup_steps, t.steps)
        with autocast:
            log_score = student(noisy, process.noise.total(time))
        loss = process.score_entropy(log_score, noisy, clean, time).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        done = step + 1
        stepped = guard.step(done, loss, grad_norm)   # no update from a non-finite step
        update_ema(ema, model, warmed_up_decay(step, t.ema_decay), stepped)

        if done % log_every == 0 or done == t.steps:
            # per token: the loss is a sum over the L positions
            row = {"step": done, "loss": loss.item(), "loss_per_token": loss.item() / length,
                   "grad_norm": grad_norm.item(), "lr": optimizer.param_groups[0]["lr"],
                   **guard.skipped(done)}
            history.append(row)
            progress.set_postfix(loss=f"{row['loss_per_token']:.3f}", refresh=False)
        if (done % t.checkpoint_every == 0 or done == t.steps) and procs.main:
            guard.check()
            checkpoint.save(out_dir / "checkpoints", done, model, ema,
                            {"optimizer": optimizer.state_dict(), "history": history},
                            params_sha)

    guard.check()
    if procs.main:
        _write_outputs(cfg, out_dir, ema, history, codes, length, vocab, params_sha)
    return out_dir


def _write_outputs(cfg: SEDDConfig, out_dir: Path, ema: nn.Module, history: list[dict],
                   codes, length: int, vocab: int, params_sha: str) -> None:
    checkpoint.save_weights(out_dir / "model.safetensors", ema)
    dio.write_csv(out_dir / "loss.csv", history)
    loss_curve(history, "loss_per_token", "score entropy per token",
               f"SEDD-{cfg.size} on L={length}, V={vocab} codes", out_dir / "loss.png")
    parameters = sum(p.numel() for p in ema.parameters())
    dio.write_json(out_dir / "meta.json", {
        "precision": distributed.resolve_precision(
            next(ema.parameters()).device, cfg.train.precision),
        "L": length, "V": vocab, "sedd": to_dict(cfg), "parameters": parameters,
        "train_codes": len(codes), "dataset": codes.metadata.get("dataset"),
        "encoder_sha256": codes.metadata.get("encoder_sha256"), "final": history[-1],
        "model_sha256": dio.sha256_file(out_dir / "model.safetensors"),
        **dio.run_metadata({"sedd": to_dict(cfg)}), "params_sha256": params_sha})
    log.info("SEDD-%s (%d parameters) trained %d steps -> %s", cfg.size, parameters,
             cfg.train.steps, out_dir)

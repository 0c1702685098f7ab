"""Stage `train-sem`: DINOv2-style self-distillation of the SEM encoder.

Student and EMA teacher share the architecture (timm ViT + SEM head + DINO head). Per step:
the teacher sees the 2 global crops, the student every crop (global ones partly masked when
iBOT is on); loss = dino_weight * DINO + koleo_weight * KoLeo(SEM output)
+ ibot_weight * iBOT(patches) + nce_weight * NT-Xent(the two global crops' summaries; not in
the paper, off unless set). With DINO and iBOT both off the teacher runs no forward: it is
then only the EMA of the student that the later stages use.
Schedules (all functions of the step, so resuming needs only the step): lr warm-up + cosine
with layer-wise decay, weight decay 0.04 -> 0.4, teacher momentum (DINOv2: 0.992 -> 1; tiny:
0.99 -> 0.995), teacher temperature warm-up. Outputs in the run folder: encoder.safetensors
(the teacher, which is the encoder later stages use), meta.json, loss.csv, loss.png,
checkpoints/.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, SEMConfig, to_dict
from dlc.data.multicrop import MultiCropDataset, collate_crops
from dlc.data.sources import ImageTable
from dlc.models.sem import SEMEncoder, build_encoder
from dlc.train import checkpoint, distributed, ssl
from dlc.train.batches import StepBatches, StepRandom
from dlc.train.ema import make_ema, update_ema
from dlc.train.guard import NonFiniteGuard
from dlc.viz import pyplot, save_figure

log = logging.getLogger(__name__)


def run(cfg: Config, *, images: str | Path, out: str | Path) -> Path:
    """`dlc train-sem`: the SEM encoder trained on the images table's train split into `out`."""
    return train(cfg.active.sem, images, out)


class MultiView(nn.Module):
    """All crops through the encoder and the DINO head in one forward (one DDP call); `dino`
    False leaves the DINO head out (its loss is off)."""

    def __init__(self, encoder: SEMEncoder, dino: bool = True):
        super().__init__()
        self.encoder, self.dino = encoder, dino

    def forward(self, global_crops: torch.Tensor, local_crops: torch.Tensor | None,
                mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = self.encoder(global_crops, mask)
        embeddings = [out["embedding"]]
        if local_crops is not None:
            embeddings.append(self.encoder(local_crops)["embedding"])
        result = {"embedding": out["embedding"]}
        if self.dino:
            result["logits"] = self.encoder.dino_head(torch.cat(embeddings))
        if self.encoder.nce_head is not None:  # NT-Xent's view of the global crops
            result["projection"] = self.encoder.nce_head(out["summary"])
        if mask is not None:  # head only on the masked patches: K may be 65536
            result["patch_logits"] = self.encoder.dino_head(out["patches"][mask])
        return result


def parameter_groups(encoder: SEMEncoder, layer_decay: float,
                     patch_embed_mult: float) -> list[dict]:
    """One group per (lr multiplier, decays or not). Layer-wise decay: block i gets
    layer_decay ** (depth - i); embeddings one more power; heads and final norm 1. Biases,
    norms, tokens and position embeddings get no weight decay."""
    depth = len(encoder.backbone.blocks)
    groups: dict[tuple[float, bool], list] = {}
    for name, parameter in encoder.named_parameters():
        if not parameter.requires_grad:
            continue
        if name.startswith("backbone.blocks."):
            layer = int(name.split(".")[2]) + 1
        elif name.startswith("backbone.") and not name.startswith("backbone.norm"):
            layer = 0  # patch embedding, tokens, position embedding
        else:
            layer = depth + 1
        mult = layer_decay ** (depth + 1 - layer)
        if "patch_embed" in name:
            mult *= patch_embed_mult
        decays = parameter.ndim > 1 and not any(
            key in name for key in ("token", "pos_embed"))
        groups.setdefault((mult, decays), []).append(parameter)
    return [{"params": params, "lr_mult": mult, "wd_mult": float(decays)}
            for (mult, decays), params in groups.items()]


def _schedules(cfg: SEMConfig, step: int, batch_size: int) -> dict[str, float]:
    t = cfg.train
    peak = t.base_lr * math.sqrt(batch_size / t.lr_reference_batch)
    return {
        "lr": ssl.warmup_cosine(step, t.steps, peak, t.min_lr, t.warmup_steps),
        "weight_decay": ssl.cosine(step, t.steps, t.weight_decay, t.weight_decay_end),
        "momentum": ssl.cosine(step, t.steps, t.momentum, t.momentum_end),
        "teacher_temp": ssl.teacher_temperature(step, cfg.head.warmup_teacher_temp,
                                                cfg.head.teacher_temp,
                                                cfg.head.teacher_temp_warmup_steps),
    }


def _patch_mask(cfg: SEMConfig, teacher: SEMEncoder, draws: StepRandom) -> tuple:
    """iBOT's mask of this process's global crops (crop-major, as the crops), drawn for the
    global batch, and the global batch's count of masked crops per process (the loss's
    denominator, so that DDP's mean over processes is the one-process loss)."""
    patches = (cfg.crops.global_size // teacher.backbone.patch_embed.patch_size[0]) ** 2
    whole = ssl.random_patch_mask(2 * cfg.train.batch_size, patches, cfg.loss.ibot_mask_prob,
                                  tuple(cfg.loss.ibot_mask_ratio), draws.generator)
    by_crop = whole.view(2, cfg.train.batch_size, patches)
    mask = torch.cat([draws.rows(crops) for crops in by_crop])
    return mask, whole.any(1).sum() / draws.world


def _teacher_targets(cfg: SEMConfig, logits: torch.Tensor, center: torch.Tensor,
                     temp: float) -> torch.Tensor:
    if cfg.head.centering == "sinkhorn":
        return ssl.sinkhorn_knopp(logits, temp)
    return ssl.teacher_probabilities(logits, center, temp, cfg.head.center_momentum)


def _loss(cfg: SEMConfig, student: nn.Module, teacher: SEMEncoder, global_crops, local_crops,
          centers: dict, temps: dict, draws: StepRandom) -> dict[str, torch.Tensor]:
    mask = None
    if cfg.loss.ibot_weight > 0:
        mask, masked_crops = _patch_mask(cfg, teacher, draws)
    s_out = student(global_crops, local_crops, mask)
    terms = {"koleo": sum(ssl.koleo_loss(e) for e in s_out["embedding"].chunk(2)) / 2}
    loss = cfg.loss.koleo_weight * terms["koleo"]
    with torch.no_grad():  # the teacher only for DINO's or iBOT's targets
        if cfg.loss.dino_weight > 0 or mask is not None:
            t_out = teacher(global_crops)
        if cfg.loss.dino_weight > 0:
            t_logits = teacher.dino_head(t_out["embedding"])
            t_probs = _teacher_targets(cfg, t_logits, centers["dino"],
                                       temps["teacher_temp"]).chunk(2)
    if cfg.loss.dino_weight > 0:
        s_logits = s_out["logits"].chunk(2 + cfg.crops.local_crops)
        terms["dino"] = ssl.dino_loss(list(s_logits), list(t_probs), cfg.head.student_temp)
        loss = loss + cfg.loss.dino_weight * terms["dino"]
    if cfg.loss.nce_weight > 0:
        terms["nce"] = ssl.nt_xent(*s_out["projection"].chunk(2), cfg.loss.nce_temp)
        loss = loss + cfg.loss.nce_weight * terms["nce"]
    if mask is not None:
        with torch.no_grad():
            t_patch = teacher.dino_head(t_out["patches"][mask])
            t_patch = _teacher_targets(cfg, t_patch, centers["ibot"], temps["teacher_temp"])
        terms["ibot"] = ssl.ibot_loss(s_out["patch_logits"], t_patch, mask,
                                      cfg.head.student_temp, masked_crops)
        loss = loss + cfg.loss.ibot_weight * terms["ibot"]
    return {"loss": loss, **terms}


def train(cfg: SEMConfig, images: str | Path, out_dir: str | Path,
          split: str = "train") -> Path:
    """Train the SEM encoder on one split of the images table; resumes exactly from
    out_dir/checkpoints when the same params made them."""
    out_dir = Path(out_dir)
    procs = distributed.setup()
    torch.set_num_threads(cfg.train.threads)
    params_sha = dio.sha256_json({"sem": to_dict(cfg), "images": str(images), "split": split})
    table = ImageTable(images, split)

    torch.manual_seed(cfg.train.seed)
    encoder = build_encoder(cfg).to(procs.device)
    teacher = make_ema(encoder)  # eval mode: no drop-path in the teacher
    student: nn.Module = MultiView(encoder, dino=cfg.loss.dino_weight > 0)
    if procs.world > 1:
        student = nn.parallel.DistributedDataParallel(
            student, find_unused_parameters=0 in (cfg.loss.ibot_weight, cfg.loss.dino_weight))
    optimizer = torch.optim.AdamW(
        parameter_groups(encoder, cfg.train.layer_decay, cfg.train.patch_embed_lr_mult),
        lr=0.0, betas=(0.9, 0.999), fused=procs.device.type == "cuda")
    prototypes = cfg.head.prototypes
    centers = {"dino": torch.zeros(prototypes, device=procs.device),
               "ibot": torch.zeros(prototypes, device=procs.device)}
    history: list[dict] = []
    start = 0
    state = checkpoint.load_latest(out_dir / "checkpoints", encoder, teacher, params_sha)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        for name in centers:
            centers[name].copy_(state["centers"][name])
        history, start = state["history"], state["step"]
    guard = NonFiniteGuard(optimizer, cfg.train.nonfinite_patience, out_dir / "checkpoints",
                           history)

    loader = torch.utils.data.DataLoader(
        MultiCropDataset(table, cfg.crops, cfg.train.seed),
        batch_sampler=StepBatches(start, cfg.train.steps, cfg.train.batch_size, procs.rank,
                                  procs.world),
        collate_fn=collate_crops, num_workers=cfg.train.workers,
        generator=torch.Generator(),  # its own seed draw must not move the global stream
        pin_memory=procs.device.type == "cuda", persistent_workers=False)
    autocast = distributed.autocast(procs.device, cfg.train.precision)
    log_every = max(1, cfg.train.steps // 200)
    skipped = 0   # unreadable images
    progress = tqdm(loader, desc="train-sem", initial=start, total=cfg.train.steps,
                    mininterval=5, disable=not procs.main)
    for step, (global_crops, local_crops, dropped) in enumerate(progress, start=start):
        skipped += dropped
        temps = _schedules(cfg, step, cfg.train.batch_size)
        for group in optimizer.param_groups:
            group["lr"] = temps["lr"] * group["lr_mult"]
            group["weight_decay"] = temps["weight_decay"] * group["wd_mult"]
        # crop-major order: [global 1 of every image, global 2 of every image], then locals
        global_crops = global_crops.transpose(0, 1).flatten(0, 1).to(procs.device,
                                                                     non_blocking=True)
        local_crops = (local_crops.transpose(0, 1).flatten(0, 1).to(procs.device)
                       if cfg.crops.local_crops else None)
        draws = StepRandom(cfg.train.seed, step, procs.rank, procs.world, procs.device)
        with autocast:
            terms = _loss(cfg, student, teacher, global_crops, local_crops, centers, temps,
                          draws)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = nn.utils.clip_grad_norm_(encoder.parameters(), cfg.train.clip_grad)
        done = step + 1
        stepped = guard.step(done, terms["loss"], grad_norm)   # none from a non-finite step
        update_ema(teacher, encoder, temps["momentum"], stepped)

        if done % log_every == 0 or done == cfg.train.steps:
            row = {"step": done, **{k: v.item() for k, v in terms.items()},
                   "grad_norm": grad_norm.item(), **temps, "skipped_images": skipped,
                   **guard.skipped(done)}
            history.append(row)
            progress.set_postfix(loss=f"{row['loss']:.3f}", refresh=False)
        if done % cfg.train.checkpoint_every == 0 and done < cfg.train.steps and procs.main:
            guard.check()
            checkpoint.save(out_dir / "checkpoints", done, encoder, teacher,
                            {"optimizer": optimizer.state_dict(), "history": history,
                             "centers": {k: v.cpu() for k, v in centers.items()}},
                            params_sha, keep=cfg.train.keep_checkpoints)

    guard.check()
    if procs.main:
        _write_outputs(cfg, out_dir, teacher, history, params_sha, table)
    return out_dir


def _write_outputs(cfg: SEMConfig, out_dir: Path, teacher: SEMEncoder, history: list[dict],
                   params_sha: str, table: ImageTable) -> None:
    checkpoint.save_weights(out_dir / "encoder.safetensors", teacher)
    dio.write_csv(out_dir / "loss.csv", history)
    plot_losses(history, out_dir / "loss.png")
    parameters = sum(p.numel() for p in teacher.parameters())
    dio.write_json(out_dir / "meta.json", {
        "precision": distributed.resolve_precision(
            next(teacher.parameters()).device, cfg.train.precision),
        "sem": to_dict(cfg), "images": str(table.path), "split": table.split,
        "train_images": len(table), "parameters": parameters, "final": history[-1],
        "encoder_sha256": dio.sha256_file(out_dir / "encoder.safetensors"),
        **dio.run_metadata({"sem": to_dict(cfg)}), "params_sha256": params_sha})
    log.info("SEM encoder (%d parameters) trained %d steps -> %s", parameters,
             cfg.train.steps, out_dir)


def plot_losses(history: list[dict], path: Path) -> None:
    plt = pyplot()
    keys = [k for k in ("loss", "dino", "koleo", "ibot", "nce") if k in history[0]]
    figure, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8))
    steps = [row["step"] for row in history]
    for axis, key in zip(axes, keys):
        axis.plot(steps, [row[key] for row in history])
        axis.set_title(key)
        axis.set_xlabel("step")
    save_figure(figure, path)

"""Stage `train-text2code`: the masked diffusion language model over `code tokens,
<|start_sem|>, caption` (LLaDA's objective, diffusion/masked_lm.py) trained on the (code,
caption) pairs of text.train.split.

Training masks every non-padding token of the sequence with probability t (code and caption
alike); the loss is weighted by 1/t. Resumes exactly from <out>/checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, TextConfig, to_dict
from dlc.data import codes as codes_io
from dlc.diffusion import masked_lm
from dlc.models.text_model import TextModel
from dlc.train import checkpoint, distributed
from dlc.train.batches import EpochOrder, StepBatches
from dlc.train.ema import make_ema, update_ema, warmed_up_decay
from dlc.train.guard import NonFiniteGuard
from dlc.train.schedules import lr_factor
from dlc.viz import loss_curve

log = logging.getLogger(__name__)


def run(cfg: Config, *, codes: str | Path, out: str | Path, section: str = "text") -> Path:
    """`dlc train-text2code`: train the model of params section `section` (text,
    text_pretrained) on the extract-codes folder `codes` into `out`."""
    preset = cfg.active
    return train(preset.text_params(section), codes, preset.sem.length, preset.sem.vocab, out)


def train(cfg: TextConfig, codes_dir: str | Path, length: int, vocab: int,
          out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    t = cfg.train
    torch.set_num_threads(t.threads)
    table = codes_io.read_codes(Path(codes_dir) / t.split, length, vocab)
    if "caption" not in table.frame.columns:
        raise ValueError(f"{codes_dir}/{t.split}: the codes have no caption column")
    captions = table.frame["caption"].astype(str).tolist()
    torch.manual_seed(t.seed)
    model = TextModel.build(cfg, captions, vocab, length)
    data = model.sequences(torch.from_numpy(table.codes.astype(np.int64)), captions)
    maskable = data != model.codes.pad
    params_sha = dio.sha256_json({"text": checkpoint.lengthenable(to_dict(cfg)), "L": length,
                                  "V": vocab, "codes": str(codes_dir), "rows": len(data)})
    network = model.network
    ema = make_ema(network) if t.ema_decay > 0 else None
    groups = model.parameter_groups(t.lr, t.pretrained_lr)   # LoRA: adapters only
    trained = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=t.lr, weight_decay=0.0)
    history, start = checkpoint.resume(out_dir / "checkpoints", network, ema, optimizer,
                                       params_sha, t.steps)
    guard = NonFiniteGuard(optimizer, t.nonfinite_patience, out_dir / "checkpoints", history)
    order = EpochOrder(len(data), t.seed)
    log_every = max(1, t.steps // 200)
    autocast = distributed.autocast(next(network.parameters()).device, t.precision)

    def logits(tokens: torch.Tensor) -> torch.Tensor:  # the loss stays in float32
        with autocast:
            return model.logits(tokens).float()

    network.train()
    for step, numbers in enumerate(tqdm(StepBatches(start, t.steps, t.batch_size, 0, 1),
                                        desc="train-text2code", initial=start,
                                        total=t.steps, mininterval=5), start=start):
        rows = [order(k) for k in numbers]
        for group in optimizer.param_groups:
            group["lr"] = (t.lr * group["lr_mult"]
                           * lr_factor(step, "constant", t.warmup_steps, t.steps))
        loss = masked_lm.training_loss(logits, data[rows], model.codes.mask, maskable[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(trained, t.clip_grad)
        done = step + 1
        stepped = guard.step(done, loss, grad_norm)   # no update from a non-finite step
        if ema is not None:
            update_ema(ema, network, warmed_up_decay(step, t.ema_decay), stepped)
        if done % log_every == 0 or done == t.steps:
            history.append({"step": done, "loss": loss.item(), "grad_norm": grad_norm.item(),
                            **guard.skipped(done)})
        if done % t.checkpoint_every == 0 or done == t.steps:
            guard.check()
            checkpoint.save(out_dir / "checkpoints", done, network, ema,
                            {"optimizer": optimizer.state_dict(), "history": history},
                            params_sha)
    guard.check()
    if ema is not None:
        model.network = ema
    model.save(out_dir)
    dio.write_csv(out_dir / "loss.csv", history)
    loss_curve(history, "loss", "masked diffusion loss (1/t weighted)",
               f"text -> code ({cfg.backend}) on {len(data)} pairs", out_dir / "loss.png")
    dio.write_json(out_dir / "meta.json", {
        "L": length, "V": vocab, "text": to_dict(cfg), "pairs": len(data),
        "final": history[-1], **dio.run_metadata({"text": to_dict(cfg)}),
        "params_sha256": params_sha})
    log.info("text -> code (%s) trained %d steps -> %s", cfg.backend, t.steps, out_dir)
    return out_dir

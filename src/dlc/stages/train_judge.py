"""Stage `train-judge`: the attribute classifier that scores generated images of the built-in
data. Trained on the train split (random horizontal flips; AdamW with a one-cycle cosine lr,
summed cross-entropy of the heads), scored on judge.eval_split. Outputs in the run folder:
judge.safetensors, judge.json (classes of every head, held-out accuracy per attribute).

Later stages load it with `dlc.models.judge.load_judge` and score images with `predict` and
`agreement` there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, JudgeConfig, to_dict
from dlc.data.sources import ImageTable
from dlc.models.judge import REPORT, WEIGHTS, AttributeJudge, agreement, predict
from dlc.models.vae import to_model_range
from dlc.train import checkpoint

log = logging.getLogger(__name__)


def run(cfg: Config, *, images: str | Path, out: str | Path) -> dict | None:
    """`dlc train-judge`: the judge of the images table's attributes into `out` (a judge.json
    that says there is none when the preset's judge is null)."""
    if cfg.active.judge is None:
        write_none(out, f"presets.{cfg.preset}.judge is null")
        return None
    return train(cfg.active.judge, images, cfg.active.vae.resolution, out)


def _targets(frame: pd.DataFrame, classes: dict[str, list[str]]) -> torch.Tensor:
    """(N, attributes) class indices of the rows; an unseen value is an error naming it."""
    columns = []
    for name, names in classes.items():
        index = pd.Index(names).get_indexer(frame[name].astype(str))
        if (index < 0).any():
            raise ValueError(f"attribute {name}: value {frame[name].iloc[int(np.argmin(index))]!r}"
                             f" never seen in training")
        columns.append(index)
    return torch.from_numpy(np.stack(columns, axis=1))


def write_none(out_dir: str | Path, reason: str) -> None:
    """A judge.json that says this preset has no judge (the workflow's DAG stays the same)."""
    dio.write_json(Path(out_dir) / REPORT, {"classes": None, "reason": reason})


def train(cfg: JudgeConfig, images_path: str | Path, resolution: int,
          out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    torch.set_num_threads(cfg.threads)
    table = ImageTable(images_path, "train")
    missing = [a for a in cfg.attributes if a not in table.frame.columns]
    if missing:
        raise ValueError(f"{images_path}: no attribute columns {missing} to judge")
    images, rows = table.centred_stack(resolution)
    classes = {name: sorted(table.frame[name].astype(str).unique()) for name in cfg.attributes}
    targets = _targets(table.frame.iloc[rows], classes)
    torch.manual_seed(cfg.seed)
    judge = AttributeJudge({k: len(v) for k, v in classes.items()}, cfg.width)
    steps_per_epoch = -(-len(images) // cfg.batch_size)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=cfg.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr,
                                                   total_steps=cfg.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)
    judge.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(images), generator=generator)
        progress = tqdm(range(steps_per_epoch), desc=f"train-judge {epoch + 1}/{cfg.epochs}",
                        mininterval=5)
        for step in progress:
            rows = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            batch = to_model_range(images[rows.numpy()])
            flip = torch.rand(len(batch), generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
            logits = judge(batch)
            loss = sum(F.cross_entropy(logits[name], targets[rows, i])
                       for i, name in enumerate(classes))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    held_out = ImageTable(images_path, cfg.eval_split)
    held_out_images, held_out_rows = held_out.centred_stack(resolution)
    accuracy = agreement(predict(judge, held_out_images, classes),
                         held_out.frame.iloc[held_out_rows])
    checkpoint.save_weights(out_dir / WEIGHTS, judge)
    report = {"classes": classes, "width": cfg.width, "resolution": resolution,
              "eval_split": cfg.eval_split, "n": len(held_out_rows), "accuracy": accuracy,
              "parameters": sum(p.numel() for p in judge.parameters()),
              **dio.run_metadata({"judge": to_dict(cfg)})}
    dio.write_json(out_dir / REPORT, report)
    log.info("judge: held-out accuracy %s -> %s", {k: round(v, 3) for k, v in
                                                   accuracy.items()}, out_dir)
    return report

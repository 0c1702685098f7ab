"""Stage `extract-codes`: encode one split of the images table into a codes folder.

Images go through the ADM centre crop at the backbone's size and ImageNet normalisation, no
flip; the code is the argmax of the SEM logits at each position. Rows keep the table's order.
Shards are written one by one and atomically; a rerun keeps every shard already written by the
same encoder and settings (resume after a crash), and manifest.json is written last.
`task` k of `tasks` n writes the shards s with s mod n = k (SLURM array tasks); whichever task
finds every shard written writes the manifest. Unreadable images are skipped, logged by name and
counted in the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, SEMConfig
from dlc.data import codes as codes_io
from dlc.data.sources import ImageTable
from dlc.generation.encoding import encode_rows, finish_split
from dlc.models.sem import load_encoder
from dlc.train.batches import check_task, task_share

log = logging.getLogger(__name__)


def run(cfg: Config, *, images: str | Path, encoder: str | Path, out: str | Path,
        task: int = 0, tasks: int = 1) -> dict:
    """`dlc extract-codes`: this task's shards of every sem.extract split into `out`."""
    return extract(cfg.active.sem, images, encoder, out, task, tasks)


def extract(cfg: SEMConfig, images: str | Path, encoder_path: str | Path,
            out_dir: str | Path, task: int = 0, tasks: int = 1) -> dict:
    """Every split in sem.extract.splits into out_dir/<split>/ (this task's shards); returns
    the manifests, None for a split whose other shards are not written yet."""
    check_task(task, tasks)  # before the encoder loads
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(cfg.train.threads)
    encoder = load_encoder(cfg, encoder_path).to(device)
    hashes = {"encoder_sha256": dio.sha256_file(encoder_path),
              "images_sha256": dio.sha256_file(images)}
    return {split: extract_split(cfg, encoder, ImageTable(images, split), hashes,
                                 Path(out_dir) / split, device, task, tasks)
            for split in cfg.extract.splits}


def extract_split(cfg: SEMConfig, encoder, table: ImageTable, hashes: dict, out_dir: Path,
                  device: torch.device, task: int = 0, tasks: int = 1) -> dict | None:
    split = table.split
    metadata = {
        "L": cfg.length, "V": cfg.vocab, "dataset": table.metadata.get("dataset", "unknown"),
        "split": split, "classes": table.metadata.get("classes"), **hashes,
        "producer": {"stage": "dlc extract-codes", "code": "argmax of the SEM logits"},
        "preprocessing": {"crop": "ADM centre crop", "size": cfg.backbone.img_size,
                          "normalize": "ImageNet mean/std", "flip": False},
    }
    # Which settings a kept shard must share with this run to be reused.
    fingerprint = {k: metadata[k] for k in ("L", "V", "split", "encoder_sha256",
                                            "images_sha256")}
    fingerprint.update(rows=len(table), shard_size=cfg.extract.shard_size,
                       features=cfg.extract.features)
    shards = range(0, len(table), cfg.extract.shard_size)
    paths = [out_dir / codes_io.shard_name(index) for index in range(len(shards))]

    def done(path: Path) -> bool:
        return path.is_file() and codes_io.shard_metadata(path).get("fingerprint") == fingerprint

    mine = task_share(len(shards), task, tasks)
    for index in tqdm(mine, desc=f"extract {split} {task}/{tasks}", mininterval=5):
        if done(paths[index]):
            log.info("keeping %s (already written by this encoder)", paths[index])
            continue
        part = range(shards[index], min(shards[index] + cfg.extract.shard_size, len(table)))
        kept, code_matrix, feature_matrix, bad = encode_rows(
            encoder, table, part, cfg, device, cfg.extract.features)
        frame = table.frame.iloc[kept]
        codes_io.write_shard(paths[index], frame["image_id"].tolist(),
                             frame["label"].to_numpy(), code_matrix,
                             {**metadata, "fingerprint": fingerprint, "skipped": bad},
                             columns=frame.drop(columns=["split", "path"], errors="ignore"),
                             features=feature_matrix)
    return finish_split(out_dir, paths, [fingerprint] * len(paths), metadata, task, tasks)

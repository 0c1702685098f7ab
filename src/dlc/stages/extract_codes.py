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

import numpy as np
import torch
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, SEMConfig
from dlc.data import codes as codes_io
from dlc.data.images import collate_skipping
from dlc.data.multicrop import NormalizedTensor
from dlc.data.sources import CentredImages, ImageTable
from dlc.models.sem import load_encoder
from dlc.train import distributed
from dlc.train.batches import check_task, task_share

log = logging.getLogger(__name__)


def run(cfg: Config, *, images: str | Path, encoder: str | Path, out: str | Path,
        task: int = 0, tasks: int = 1) -> dict:
    """`dlc extract-codes`: this task's shards of every sem.extract split into `out`."""
    return extract(cfg.active.sem, images, encoder, out, task, tasks)


def _encode_rows(encoder, table: ImageTable, rows: range, cfg: SEMConfig, device,
                 want_features: bool):
    dataset = CentredImages(table, rows, cfg.backbone.img_size, NormalizedTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.extract.batch_size,
                                         num_workers=cfg.train.workers,
                                         collate_fn=collate_skipping)
    kept, codes, features, skipped = [], [], [], []
    autocast = distributed.autocast(device)
    for images, positions, _, bad in loader:
        skipped += [{"image_id": image_id, "reason": reason} for image_id, reason in bad]
        if images is None:
            continue
        with autocast:
            batch = torch.from_numpy(images).to(device)
            if want_features:
                batch_codes, batch_features = encoder.codes_and_features(batch)
                features.append(batch_features.cpu())
            else:
                batch_codes = encoder.codes(batch)
            codes.append(batch_codes.cpu())
        kept.extend(rows[i] for i in positions.tolist())
    dtype = codes_io.numpy_dtype(cfg.vocab)
    code_matrix = (torch.cat(codes).numpy() if codes
                   else np.zeros((0, cfg.length), dtype))
    feature_matrix = torch.cat(features).numpy() if features else None
    return np.array(kept, dtype=np.int64), code_matrix, feature_matrix, skipped


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
        kept, code_matrix, feature_matrix, bad = _encode_rows(
            encoder, table, part, cfg, device, cfg.extract.features)
        frame = table.frame.iloc[kept]
        codes_io.write_shard(paths[index], frame["image_id"].tolist(),
                             frame["label"].to_numpy(), code_matrix,
                             {**metadata, "fingerprint": fingerprint, "skipped": bad},
                             columns=frame.drop(columns=["split", "path"], errors="ignore"),
                             features=feature_matrix)
    shard_metas = [codes_io.shard_metadata(path) if path.is_file() else {} for path in paths]
    missing = [path.name for path, meta in zip(paths, shard_metas)
               if meta.get("fingerprint") != fingerprint]
    if missing:
        log.info("%s: task %d/%d done; %d shards of other tasks still missing (first: %s)",
                 split, task, tasks, len(missing), missing[0])
        return None
    written = [path.name for path in paths]
    skipped = [item for meta in shard_metas for item in meta["skipped"]]
    rows = sum(codes_io.shard_rows(path) for path in paths)
    for stale in sorted(out_dir.glob("part-*.parquet")):
        if stale.name not in written:  # left by a run with a bigger table: not ours
            stale.unlink()
    manifest = {**metadata, "rows": rows, "shards": written, "skipped": len(skipped),
                "skipped_images": skipped}
    dio.write_json(out_dir / codes_io.MANIFEST, manifest)
    log.info("%s: %d codes (L=%d, V=%d) in %d shards -> %s; %d unreadable images skipped",
             split, rows, cfg.length, cfg.vocab, len(written), out_dir, len(skipped))
    return manifest


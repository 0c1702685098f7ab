"""Images to codes with a trained SEM encoder, shard by shard, for every stage that extracts
codes (`extract-codes` from the images table, `caption-codes` from a captioned dataset): the
ADM centre crop at the backbone's size, ImageNet normalisation, no flip; the code is the argmax
of the SEM logits at each position. A split's manifest.json is written last, by whichever task
finds every shard written."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from dlc import io as dio
from dlc.config import SEMConfig
from dlc.data import codes as codes_io
from dlc.data.images import collate_skipping, readable_batches
from dlc.data.multicrop import NormalizedTensor
from dlc.data.sources import CentredImages, ImageTable
from dlc.train import distributed

log = logging.getLogger(__name__)


def encode_rows(encoder, table: ImageTable, rows: range, cfg: SEMConfig, device,
                 want_features: bool):
    """(rows kept, codes (n, L), features (n, D) or None, the unreadable images as
    {image_id, reason}) of `rows` of the table."""
    dataset = CentredImages(table, rows, cfg.backbone.img_size, NormalizedTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.extract.batch_size,
                                         num_workers=cfg.train.workers,
                                         collate_fn=collate_skipping)
    kept, codes, features, skipped = [], [], [], []
    autocast = distributed.autocast(device)
    for images, positions in readable_batches(loader, skipped):
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


def finish_split(out_dir: Path, paths: list[Path], fingerprints: list[dict], metadata: dict,
                 task: int, tasks: int) -> dict | None:
    """The split's manifest once every shard in `paths` carries its fingerprint (None, logged,
    while other tasks' shards are missing); shards of an older, bigger run are removed."""
    shard_metas = [codes_io.shard_metadata(path) if path.is_file() else {} for path in paths]
    missing = [path.name for path, meta, fingerprint in zip(paths, shard_metas, fingerprints)
               if meta.get("fingerprint") != fingerprint]
    if missing:
        log.info("%s: task %d/%d done; %d shards of other tasks still missing (first: %s)",
                 out_dir, task, tasks, len(missing), missing[0])
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
    log.info("%s: %d codes (L=%d, V=%d) in %d shards; %d unreadable images skipped", out_dir,
             rows, metadata["L"], metadata["V"], len(written), len(skipped))
    return manifest

"""Stage `caption-codes`: the codes of a captioned image dataset (text.captions: webdataset
or Parquet shards, `dlc.data.captioned`) for text -> code training, the paper's LAION path.

Input shard i becomes codes shard part-i (image_id `<shard>/<key>`, label -1, the caption
column kept), encoded as `extract-codes` encodes; shards stream one at a time, a rerun keeps
the shards this encoder already wrote (resume), task k of n takes the shards i with
i mod n = k, and manifest.json (split text.train.split) is written last. Unreadable images are
skipped, samples lacking an image or a caption dropped, both counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config
from dlc.data import captioned
from dlc.data import codes as codes_io
from dlc.data.sources import ImageTable
from dlc.generation.encoding import encode_rows, finish_split
from dlc.models.sem import load_encoder
from dlc.train.batches import check_task, task_share


def run(cfg: Config, *, encoder: str | Path, out: str | Path, task: int = 0,
        tasks: int = 1) -> dict | None:
    """`dlc caption-codes`: this task's codes shards of text.captions into `out`; the
    manifest once every shard exists."""
    preset = cfg.active
    sem, split = preset.sem, preset.text.train.split
    if preset.text.captions is None:
        raise ValueError("text.captions is null: the preset names no captioned dataset")
    check_task(task, tasks)
    sources = captioned.shards(preset.text.captions)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(sem.train.threads)
    model = load_encoder(sem, encoder).to(device)
    out = Path(out)
    metadata = {"L": sem.length, "V": sem.vocab, "dataset": str(preset.text.captions),
                "split": split, "classes": None, "features": sem.extract.features,
                "encoder_sha256": dio.sha256_file(encoder),
                "producer": {"stage": "dlc caption-codes",
                             "code": "argmax of the SEM logits"},
                "preprocessing": {"crop": "ADM centre crop", "size": sem.backbone.img_size,
                                  "normalize": "ImageNet mean/std", "flip": False}}
    paths = [out / codes_io.shard_name(i) for i in range(len(sources))]
    fingerprints = [_fingerprint(metadata, source) for source in sources]
    for i in tqdm(task_share(len(sources), task, tasks), desc=f"caption-codes {task}/{tasks}",
                  mininterval=5):
        if paths[i].is_file() and \
                codes_io.shard_metadata(paths[i]).get("fingerprint") == fingerprints[i]:
            continue
        _encode_shard(sem, model, sources[i], paths[i],
                      {**metadata, "fingerprint": fingerprints[i]}, device)
    return finish_split(out, paths, fingerprints, metadata, task, tasks)


def _fingerprint(metadata: dict, source: Path) -> dict:
    """What a kept shard must share with this run: the encoder, L, V, the input shard."""
    return {"encoder_sha256": metadata["encoder_sha256"], "L": metadata["L"],
            "V": metadata["V"], "features": metadata["features"], "source": source.name,
            "bytes": source.stat().st_size}


def _encode_shard(sem, model, source: Path, path: Path, metadata: dict, device) -> None:
    pairs, incomplete = captioned.read_shard(source)
    frame = pairs.assign(image_id=[f"{source.stem}/{key}" for key in pairs["key"]],
                         label=-1, split=metadata["split"]).drop(columns=["key"])
    kept, features, bad = [], None, []
    codes = np.zeros((0, sem.length), codes_io.numpy_dtype(sem.vocab))
    if len(frame):
        table = ImageTable(source, metadata["split"], frame=frame)
        kept, codes, features, bad = encode_rows(model, table, range(len(table)), sem, device,
                                                 sem.extract.features)
    rows = frame.iloc[kept]
    codes_io.write_shard(path, rows["image_id"].tolist(), rows["label"].to_numpy(), codes,
                         {**metadata, "skipped": bad, "incomplete_samples": incomplete},
                         columns=rows[["caption"]], features=features)

"""Codes from nothing: a SEDD run samples Discrete Latent Codes into a codes folder (source
`sedd`, sampler settings in the metadata), for the `sample-codes` stage and the eta sweep.

Batch b is drawn with generators seeded by (seed, b) and written as shard b, atomically; task k
of n draws the shards b with b mod n = k; a rerun keeps the shards the same model and settings
already wrote (resume) and manifest.json is written last.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import SEDDConfig, SEDDSampleConfig, to_dict
from dlc.data import codes as codes_io
from dlc.diffusion.absorbing import AbsorbingDiffusion
from dlc.models.sedd import load_sedd
from dlc.train import distributed
from dlc.train.batches import task_share

log = logging.getLogger(__name__)


def _generators(seed: int, batch: int, device: torch.device):
    """Independent sampler and remasking streams for batch b."""
    state = np.random.SeedSequence([seed, batch]).generate_state(2)
    return tuple(torch.Generator(device).manual_seed(int(s)) for s in state)


def with_remask_eta(cfg: SEDDConfig, remask_eta: float | None) -> SEDDConfig:
    """sedd.* with sample.remask_eta replaced (the eta sweep); unchanged for None."""
    if remask_eta is None:
        return cfg
    if remask_eta < 0:
        raise ValueError(f"remask_eta must be >= 0, got {remask_eta}")
    return dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample,
                                                               remask_eta=remask_eta))


def _shard_done(path: Path, fingerprint: dict, rows: int) -> bool:
    """A shard the same model and sampler settings wrote, complete."""
    return (path.is_file() and codes_io.shard_metadata(path).get("fingerprint") == fingerprint
            and codes_io.shard_rows(path) == rows)


def load_sampler(cfg: SEDDConfig, model_dir: str | Path, length: int, vocab: int,
                 device: torch.device):
    """(score function, absorbing process, run meta) of a train-sedd run on `device`: the
    EMA model under sedd.sample.precision's autocast (compiled on a GPU with train.compile)."""
    model, meta = load_sedd(cfg, model_dir, length, vocab)
    model = model.to(device)
    network = torch.compile(model) if cfg.train.compile and device.type == "cuda" else model
    autocast = distributed.autocast(device, cfg.sample.precision)

    def score_fn(tokens, sigma):
        with autocast:
            return network(tokens, sigma)

    return score_fn, AbsorbingDiffusion(vocab), meta


def sample_batch(score_fn, process: AbsorbingDiffusion, s: SEDDSampleConfig, n: int,
                 length: int, batch: int, device: torch.device) -> torch.Tensor:
    """Batch b of a sampling run: n codes (n, L) drawn with the streams seeded by
    (sedd.sample.seed, b). The one implementation `sample-codes` and `dlc.Pipeline` share."""
    generator, remask_generator = _generators(s.seed, batch, device)
    return process.sample(score_fn, n, length, s.steps, method=s.method, t_end=s.t_end,
                          remask_eta=s.remask_eta, remask_window=tuple(s.remask_window),
                          generator=generator, remask_generator=remask_generator,
                          device=device)


def generate(cfg: SEDDConfig, model_dir: str | Path, out_dir: str | Path, length: int,
             vocab: int, task: int = 0, tasks: int = 1) -> dict | None:
    """Sample this task's shards (b mod tasks = task); write the manifest once every shard
    exists and return it (None while other tasks' shards are missing)."""
    out_dir = Path(out_dir)
    s = cfg.sample
    torch.set_num_threads(cfg.train.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    score_fn, process, meta = load_sampler(cfg, model_dir, length, vocab, device)
    sampler = {k: v for k, v in to_dict(s).items() if k not in ("samples", "batch_size")}
    metadata = {"L": length, "V": vocab, "dataset": meta.get("dataset"), "split": "generated",
                "producer": {"stage": "dlc sample-codes", "sampler": sampler,
                             "model": f"SEDD-{cfg.size}"},
                "model_sha256": dio.sha256_file(Path(model_dir) / "model.safetensors")}
    fingerprint = {"model_sha256": metadata["model_sha256"], "sampler": sampler,
                   "batch_size": s.batch_size}
    dtype = codes_io.numpy_dtype(vocab)
    starts = list(range(0, s.samples, s.batch_size))
    written = [codes_io.shard_name(batch) for batch in range(len(starts))]
    mine = task_share(len(starts), task, tasks)
    for batch in tqdm(mine, desc=f"sample-codes {task}/{tasks}", mininterval=5):
        first = starts[batch]
        path = out_dir / written[batch]
        n = min(s.batch_size, s.samples - first)
        if _shard_done(path, fingerprint, n):
            continue
        codes = sample_batch(score_fn, process, s, n, length, batch, device)
        ids = [f"sedd-{i:07d}" for i in range(first, first + n)]
        codes_io.write_shard(path, ids, np.full(n, -1), codes.cpu().numpy().astype(dtype),
                             {**metadata, "fingerprint": fingerprint}, source="sedd")
    if not all(_shard_done(out_dir / name, fingerprint, min(s.batch_size, s.samples - first))
               for name, first in zip(written, starts)):
        log.info("task %d/%d done; the manifest waits for the other tasks' shards", task, tasks)
        return None
    for stale in out_dir.glob("part-*.parquet"):
        if stale.name not in written:
            stale.unlink()
    manifest = {**metadata, "rows": s.samples, "shards": written}
    dio.write_json(out_dir / codes_io.MANIFEST, manifest)
    log.info("%d codes from SEDD-%s (%d steps, %s, eta %g) -> %s", s.samples, cfg.size, s.steps,
             s.method, s.remask_eta, out_dir)
    return manifest

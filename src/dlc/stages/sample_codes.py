"""Stage `sample-codes`: generate Discrete Latent Codes with a trained SEDD model, written in
the codes-table format (source `sedd`, sampler settings in the metadata), then compare them
with real codes.

Batch b is drawn with generators seeded by (seed, b) and written as shard b, atomically; a
rerun keeps the shards the same model and settings already wrote (resume) and manifest.json
is written last. The report compares generated and held-out real codes: per-position marginal
total variation, exact copies of training codes, and the Hamming distance to the nearest
training code, each beside the same number for real held-out codes (the floor).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import SEDDConfig, to_dict
from dlc.data import codes as codes_io
from dlc.diffusion.absorbing import AbsorbingDiffusion
from dlc.stages.train_sedd import load_model
from dlc.train import distributed
from dlc.viz import pyplot, save_figure

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


def generate(cfg: SEDDConfig, model_dir: str | Path, out_dir: str | Path, length: int,
             vocab: int, task: int = 0, tasks: int = 1) -> dict | None:
    """Sample this task's shards (b mod tasks = task); write the manifest once every shard
    exists and return it (None while other tasks' shards are missing)."""
    if not 0 <= task < tasks:
        raise ValueError(f"task {task} is not in [0, {tasks})")
    out_dir = Path(out_dir)
    s = cfg.sample
    torch.set_num_threads(cfg.train.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_model(cfg, model_dir, length, vocab)
    model = model.to(device)
    network = torch.compile(model) if cfg.train.compile and device.type == "cuda" else model
    process = AbsorbingDiffusion(vocab)
    autocast = distributed.autocast(device, s.precision)

    def score_fn(tokens, sigma):
        with autocast:
            return network(tokens, sigma)

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
    mine = [batch for batch in range(len(starts)) if batch % tasks == task]
    for batch in tqdm(mine, desc=f"sample-codes {task}/{tasks}", mininterval=5):
        first = starts[batch]
        path = out_dir / written[batch]
        n = min(s.batch_size, s.samples - first)
        if _shard_done(path, fingerprint, n):
            continue
        generator, remask_generator = _generators(s.seed, batch, device)
        codes = process.sample(score_fn, n, length, s.steps, method=s.method, t_end=s.t_end,
                               remask_eta=s.remask_eta, remask_window=tuple(s.remask_window),
                               generator=generator, remask_generator=remask_generator,
                               device=device)
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


# --------------------------------------------------------------------------------------------
# How close are generated codes to real ones?
# --------------------------------------------------------------------------------------------
def marginals(codes: np.ndarray, vocab: int) -> np.ndarray:
    """(L, V) frequency of each token at each position."""
    counts = np.zeros((codes.shape[1], vocab))
    np.add.at(counts, (np.arange(codes.shape[1])[None, :], codes.astype(np.int64)), 1)
    return counts / len(codes)


def per_position_tv(a: np.ndarray, b: np.ndarray, vocab: int) -> np.ndarray:
    """Total variation between the token marginals of two code sets, per position (L,)."""
    return 0.5 * np.abs(marginals(a, vocab) - marginals(b, vocab)).sum(-1)


def nearest_hamming(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """For every query code, the fewest positions in which it differs from a pool code."""
    best = np.empty(len(queries), dtype=np.int64)
    chunk = max(1, 2 ** 26 // pool.size)  # about 64 MB of comparisons at a time
    for i in range(0, len(queries), chunk):
        block = queries[i:i + chunk]
        distances = (block[:, None, :] != pool[None, :, :]).sum(-1)
        best[i:i + chunk] = distances.min(1)
    return best


HAMMING_POOL = 50_000  # training codes searched for nearest neighbours (all, if fewer)


def compare(generated: np.ndarray, reference: np.ndarray, train: np.ndarray, vocab: int,
            seed: int) -> dict:
    """Generated vs held-out real codes, with real-vs-real floors at the same sample size."""
    rng = np.random.default_rng(seed)
    n = min(len(generated), len(reference))
    generated, reference = generated[:n], reference[rng.permutation(len(reference))[:n]]
    train_subset = train[rng.permutation(len(train))[:n]]
    train_set = {row.tobytes() for row in train}
    pool = train[rng.permutation(len(train))[:HAMMING_POOL]]
    gen_nn, ref_nn = nearest_hamming(generated, pool), nearest_hamming(reference, pool)
    return {
        "n": n, "hamming_pool": len(pool),
        "tv_per_position": float(per_position_tv(generated, reference, vocab).mean()),
        "tv_per_position_floor": float(per_position_tv(train_subset, reference, vocab).mean()),
        "exact_train_copies": float(np.mean([row.tobytes() in train_set for row in generated])),
        "exact_train_copies_floor": float(np.mean([row.tobytes() in train_set
                                                   for row in reference])),
        "nearest_train_hamming": float(gen_nn.mean()),
        "nearest_train_hamming_floor": float(ref_nn.mean()),
        "unique_fraction": len({row.tobytes() for row in generated}) / n,
    }


def report(cfg: SEDDConfig, generated_dir: str | Path, codes_dir: str | Path, length: int,
           vocab: int, out: str | Path, figure: str | Path) -> dict:
    generated = codes_io.read_codes(generated_dir, length, vocab)
    reference = codes_io.read_codes(Path(codes_dir) / cfg.reference_split, length, vocab)
    train = codes_io.read_codes(Path(codes_dir) / cfg.train_split, length, vocab)
    result = compare(generated.codes, reference.codes, train.codes, vocab, cfg.sample.seed)
    result.update(L=length, V=vocab, sampler=generated.metadata["producer"]["sampler"],
                  model_sha256=generated.metadata["model_sha256"],
                  reference=f"{codes_dir}/{cfg.reference_split}",
                  **dio.run_metadata({"sedd": to_dict(cfg)}))
    dio.write_json(out, result)
    _plot_marginals(generated.codes, reference.codes, vocab, figure)
    log.info("per-position TV %.4f (floor %.4f); nearest train Hamming %.2f (floor %.2f)",
             result["tv_per_position"], result["tv_per_position_floor"],
             result["nearest_train_hamming"], result["nearest_train_hamming_floor"])
    return result


def _plot_marginals(generated: np.ndarray, reference: np.ndarray, vocab: int, path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for axis, codes, title in ((axes[0], reference, "real (held out)"),
                               (axes[1], generated, "SEDD samples")):
        axis.imshow(marginals(codes, vocab), aspect="auto", cmap="viridis", vmin=0)
        axis.set(title=f"{title}: token frequency", xlabel="token", ylabel="position")
    save_figure(figure, path)

"""Stage `sample-codes`: generate Discrete Latent Codes with a trained SEDD model, written in
the codes-table format (source `sedd`, sampler settings in the metadata), then compare them
with real codes.

The sampling is `dlc.generation.codes.generate` (seeded per batch, resumable, split over
tasks), shared with the eta sweep. The report compares generated and held-out real codes:
per-position marginal total variation, exact copies of training codes, and the Hamming distance
to the nearest training code, each beside the same number for real held-out codes (the floor).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dlc import io as dio
from dlc.config import Config, SEDDConfig, to_dict
from dlc.data import codes as codes_io
from dlc.generation.codes import generate, with_remask_eta
from dlc.metrics.novelty import nearest_hamming
from dlc.viz import pyplot, save_figure

log = logging.getLogger(__name__)


def run(cfg: Config, *, model: str | Path, out: str | Path, codes: str | Path | None = None,
        report: str | Path | None = None, figure: str | Path | None = None,
        remask_eta: float | None = None, task: int = 0, tasks: int = 1) -> dict | None:
    """`dlc sample-codes`: this task's code shards into `out`; once every shard exists, with
    `report`, the comparison with the real `codes` (JSON) and its `figure`."""
    preset = cfg.active
    if report and not (codes and figure):
        raise ValueError("--report needs --codes (the real codes) and --figure")
    sedd = with_remask_eta(preset.sedd, remask_eta)
    manifest = generate(sedd, model, out, preset.sem.length, preset.sem.vocab, task, tasks)
    if manifest is not None and report:
        write_report(sedd, out, codes, preset.sem.length, preset.sem.vocab, report, figure)
    return manifest


def marginals(codes: np.ndarray, vocab: int) -> np.ndarray:
    """(L, V) frequency of each token at each position."""
    counts = np.zeros((codes.shape[1], vocab))
    np.add.at(counts, (np.arange(codes.shape[1])[None, :], codes.astype(np.int64)), 1)
    return counts / len(codes)


def per_position_tv(a: np.ndarray, b: np.ndarray, vocab: int) -> np.ndarray:
    """Total variation between the token marginals of two code sets, per position (L,)."""
    return 0.5 * np.abs(marginals(a, vocab) - marginals(b, vocab)).sum(-1)


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
    (_, gen_nn), (_, ref_nn) = nearest_hamming(generated, pool), nearest_hamming(reference, pool)
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


def write_report(cfg: SEDDConfig, generated_dir: str | Path, codes_dir: str | Path, length: int,
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

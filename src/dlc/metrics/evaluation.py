"""Generated images (an ADM-style samples.npz) against real ones, in every configured feature
space, into one results JSON: the `evaluate` stage, and each point of the eta sweep.

Per feature space: Frechet distance of pooled features (called FID only for Inception) and
KID beside it, precision/recall (k = evaluate.prc_neighborhood), the Vendi score of the samples
(and of the reference, for scale); for Inception also sFID (spatial features) and IS. The first
evaluate.samples images are used, so every comparison has one n.

The reference is a split of the images table or an ADM reference batch; its features are
cached under a hash of the reference pixels, the feature space's weights and settings, so a
stale cache can never be reused. With an ADM batch and Inception, FID and sFID use the batch's
own mu/sigma (what ADM's evaluator does); precision/recall use features of its arr_0.

Results JSON (one schema for every evaluation):
    name, n, samples, samples_sha256, reference {source, n, sha256},
    metrics {space: {fd|fid, kid, kid_std, precision, recall, vendi, vendi_reference,
                     [sfid, inception_score, inception_score_std]}},
    feature_extractors {space: {torch_fidelity_name, weights, weights_sha256}},
    sampler (the DiT sampler), codes_sampler (SEDD's, when the codes were generated),
    condition, model_sha256, params_sha256, git_rev
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from dlc import io as dio
from dlc.config import EvaluateConfig, to_dict
from dlc.data.sources import ImageTable
from dlc.metrics.features import FeatureSpace, build_feature_space
from dlc.metrics.frechet import frechet_distance, kernel_distance, statistics
from dlc.metrics.inception import inception_score
from dlc.metrics.prc import precision_recall
from dlc.metrics.vendi import vendi_from_features

log = logging.getLogger(__name__)
TORCH_FIDELITY_NAMES = {"inception": "inception-v3-compat", "effnet": "dlc-efficientnet-lite0",
                        "judge": "dlc-judge"}


def pixels_sha256(images: np.ndarray) -> str:
    digest = hashlib.sha256(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def read_npz_images(path: str | Path) -> np.ndarray:
    """arr_0 of an ADM-style .npz, checked to be (N, H, W, 3) uint8."""
    path = Path(path)
    try:
        with np.load(path) as archive:
            images = archive["arr_0"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path}: not an ADM-style .npz with arr_0 ({error})") from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{path}: arr_0 must be (N, H, W, 3) uint8, got {images.shape} "
                         f"{images.dtype}")
    return images


def load_samples(path: str | Path, n: int) -> np.ndarray:
    """The first n images of an ADM-style .npz; fewer is an error (n is fixed per study)."""
    images = read_npz_images(path)
    if len(images) < n:
        raise ValueError(f"{path}: {len(images)} images, fewer than evaluate.samples = {n}")
    return images[:n]


class Reference:
    """Real images and, for an ADM batch, its precomputed Inception statistics."""

    def __init__(self, cfg: EvaluateConfig, images_table: str | Path | None, resolution: int):
        self.statistics: dict[str, np.ndarray] = {}
        if cfg.reference_batch is not None:
            self.source = str(cfg.reference_batch)
            self.images = read_npz_images(cfg.reference_batch)[:cfg.reference_images]
            with np.load(cfg.reference_batch) as archive:
                self.statistics = {key: archive[key] for key in ("mu", "sigma", "mu_s", "sigma_s")
                                   if key in archive}
        else:
            if images_table is None:
                raise ValueError("evaluate.reference_split needs the images table (--images)")
            table = ImageTable(images_table, cfg.reference_split)
            self.source = f"{images_table} split {cfg.reference_split}"
            self.images, _ = table.centred_stack(resolution, limit=cfg.reference_images)
        if len(self.images) < cfg.reference_images:
            log.warning("%s: %d reference images, fewer than evaluate.reference_images = %d",
                        self.source, len(self.images), cfg.reference_images)
        self.sha256 = pixels_sha256(self.images)

    def features(self, space: FeatureSpace, cfg: EvaluateConfig,
                 cache_dir: str | Path | None) -> dict[str, np.ndarray]:
        key = dio.sha256_json({"pixels": self.sha256, "space": space.name,
                               "weights": space.weights_sha256,
                               "effnet_resolution": cfg.effnet_resolution})
        path = None if cache_dir is None else Path(cache_dir) / f"{space.name}-{key[:20]}.npz"
        if path is not None and path.is_file():
            with np.load(path) as archive:
                return {name: archive[name] for name in archive.files}
        features = space.extract(self.images, cfg.batch_size, desc="reference")
        if path is not None:
            with dio.atomic_path(path) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **features)
        return features


def fd_name(space: str) -> str:
    """The Frechet distance's key in a space's metrics: FID only for Inception features."""
    return "fid" if space == "inception" else "fd"


def compare(space: str, generated: dict[str, np.ndarray], real: dict[str, np.ndarray],
            cfg: EvaluateConfig, reference_statistics: dict[str, np.ndarray] | None = None
            ) -> dict[str, float]:
    """Every metric of one feature space (features as `FeatureSpace.extract` gives them)."""
    reference_statistics = reference_statistics or {}
    real_stats = ((reference_statistics["mu"], reference_statistics["sigma"])
                  if "mu" in reference_statistics else statistics(real["pool"]))
    result = {fd_name(space): frechet_distance(*statistics(generated["pool"]), *real_stats)}
    result.update(kernel_distance(generated["pool"], real["pool"], subsets=cfg.kid_subsets,
                                  subset_size=cfg.kid_subset_size))
    result.update(precision_recall(generated["pool"], real["pool"], cfg.prc_neighborhood))
    result["vendi"] = vendi_from_features(generated["pool"], cfg.vendi_q)
    result["vendi_reference"] = vendi_from_features(real["pool"], cfg.vendi_q)
    if "spatial" in generated:
        spatial_stats = ((reference_statistics["mu_s"], reference_statistics["sigma_s"])
                         if "mu_s" in reference_statistics else statistics(real["spatial"]))
        result["sfid"] = frechet_distance(*statistics(generated["spatial"]), *spatial_stats)
    if "logits" in generated:
        result.update(inception_score(generated["logits"], cfg.isc_splits))
    return result


def _provenance(samples: Path) -> dict:
    """What made the samples: samples.json beside them, and the codes' sampler if generated."""
    summary_path = samples.with_name("samples.json")
    if not summary_path.is_file():
        return {}
    summary = dio.read_json(summary_path)
    found = {key: summary[key] for key in ("sampler", "condition", "model_sha256", "codes",
                                           "params_sha256") if key in summary}
    manifest = Path(summary.get("codes", "")) / "manifest.json"
    if manifest.is_file():
        producer = dio.read_json(manifest).get("producer", {})
        if "sampler" in producer:
            found["codes_sampler"] = producer["sampler"]
    return found


def evaluate(cfg: EvaluateConfig, name: str, samples: str | Path, out: str | Path,
             images_table: str | Path | None = None, judge_dir: str | Path | None = None,
             cache_dir: str | Path | None = None) -> dict:
    torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    samples = Path(samples)
    generated_images = load_samples(samples, cfg.samples)
    reference = Reference(cfg, images_table, generated_images.shape[1])
    metrics, extractors = {}, {}
    for space_name in cfg.extractors:
        space = build_feature_space(space_name, device, inception_weights=cfg.inception_weights,
                                    judge_dir=judge_dir,
                                    effnet_resolution=cfg.effnet_resolution)
        generated = space.extract(generated_images, cfg.batch_size, desc="samples")
        real = reference.features(space, cfg, cache_dir)
        statistics_of_batch = reference.statistics if space_name == "inception" else None
        metrics[space_name] = compare(space_name, generated, real, cfg, statistics_of_batch)
        extractors[space_name] = {"torch_fidelity_name": TORCH_FIDELITY_NAMES[space_name],
                                  "weights": space.weights,
                                  "weights_sha256": space.weights_sha256}
        log.info("%s in %s space: %s", name, space_name,
                 ", ".join(f"{k} {v:.4g}" for k, v in metrics[space_name].items()))
    provenance = _provenance(samples)
    result = {"name": name, "n": len(generated_images), "samples": str(samples),
              "samples_sha256": pixels_sha256(generated_images),
              "reference": {"source": reference.source, "n": len(reference.images),
                            "sha256": reference.sha256,
                            "statistics": "reference batch" if reference.statistics
                            else "features"},
              "metrics": metrics, "feature_extractors": extractors,
              **{k: v for k, v in provenance.items() if k != "params_sha256"},
              **dio.run_metadata({"evaluate": to_dict(cfg),
                                  "samples_params_sha256": provenance.get("params_sha256")})}
    dio.write_json(out, result)
    return result


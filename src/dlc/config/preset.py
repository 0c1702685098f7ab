"""A preset (every section of the image pipeline) and the whole file (`Config`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .cluster import RuleResources, SlurmConfig
from .data import DataConfig
from .dit import DiTConfig
from .evaluate import ComposeConfig, EvaluateConfig, JudgeConfig
from .fields import ConfigError, param
from .sedd import SEDDConfig
from .sem import ProbeConfig, SEMConfig
from .text import TextConfig, TextStudyConfig
from .toy import ToyConfig
from .vae import VAEConfig


@dataclass(frozen=True)
class PresetConfig:
    """Everything a preset makes lives in results/<preset>/."""

    data: DataConfig = param("image dataset")
    sem: SEMConfig = param("SEM encoder and code extraction")
    probe: ProbeConfig = param("linear probe on codes and on backbone features")
    sedd: SEDDConfig = param("SEDD-absorb over the codes")
    vae: VAEConfig = param("image autoencoder and the latent cache")
    dit: DiTConfig = param("DiT conditioned on codes")
    judge: JudgeConfig | None = param("attribute classifier scoring generated images (datasets "
                                     "with attribute columns; null: none)")
    evaluate: EvaluateConfig = param("FID and friends of generated images")
    compose: ComposeConfig = param("codes composed from source images (`dlc compose`)")
    text: TextConfig = param("text -> code masked diffusion language model")
    text_pretrained: TextConfig | None = param(
        "a second text -> code model, trained on the codes of text.train.split and studied on "
        "the same prompts (its own target, results/<preset>/text2code_pretrained.json): a "
        "pretrained language model against `text`; null: none")
    text_study: TextStudyConfig = param("the text -> code study's extra prompts")
    resources: dict[str, RuleResources] = param(
        "cluster resources of rules by rule name (gpu, nodes, cpus_per_task, mem_mb, runtime, "
        "array); rules not named keep the defaults in their .smk file")
    slurm: SlurmConfig = param("where and how `--launcher slurm` submits jobs (submitit)")

    def text_params(self, section: str) -> TextConfig:
        """The params of a text model by section name: `text` or `text_pretrained`."""
        if section not in ("text", "text_pretrained"):
            raise ConfigError(f"{section!r}: not a text model section (text, text_pretrained)")
        if getattr(self, section) is None:
            raise ConfigError(f"{section} is null in this preset: no such text model")
        return getattr(self, section)

    def check(self, where: str) -> None:
        for split in (self.probe.train_split, self.probe.test_split):
            if split not in self.sem.extract.splits:
                raise ConfigError(f"{where}.probe: split {split!r} is not in "
                                  f"{where}.sem.extract.splits {self.sem.extract.splits}")
        for split in (self.sedd.train_split, self.sedd.reference_split):
            if split not in self.sem.extract.splits:
                raise ConfigError(f"{where}.sedd: split {split!r} is not in "
                                  f"{where}.sem.extract.splits {self.sem.extract.splits}")
        # The DiT trains on (latent, code) pairs and decodes codes of its sample split.
        for split, section, splits in (
                (self.dit.train_split, "sem.extract", self.sem.extract.splits),
                (self.dit.train_split, "vae.cache", self.vae.cache.splits),
                (self.dit.sample.split, "sem.extract", self.sem.extract.splits)):
            if split not in splits:
                raise ConfigError(f"{where}.dit: split {split!r} is not in "
                                  f"{where}.{section}.splits {splits}")
        text_split, extracted = self.text.train.split, self.text.train.split in \
            self.sem.extract.splits
        if (self.text.captions is None) != extracted:
            raise ConfigError(
                f"{where}.text.train.split {text_split!r}: a split of sem.extract.splits when "
                "text.captions is null, another name (its codes come from the captioned "
                "dataset) when it is set")
        pretrained = self.text_pretrained
        if pretrained is not None and (pretrained.train.split, pretrained.captions) != (
                self.text.train.split, self.text.captions):
            raise ConfigError(f"{where}.text_pretrained: train.split and captions must be "
                              "those of text (both models learn the same pairs)")
        for section in ("text", "text_pretrained"):
            model = getattr(self, section)
            if model is not None and model.train.pretrained_lr is not None and (
                    model.backend != "transformers" or model.lora is not None):
                raise ConfigError(f"{where}.{section}.train.pretrained_lr: only for the "
                                  "transformers back end without LoRA (null otherwise)")
        for i, paraphrase in enumerate(self.text_study.paraphrases):
            unknown = set(paraphrase.asks) - set(self.judge.attributes if self.judge else [])
            if unknown:
                raise ConfigError(f"{where}.text_study.paraphrases[{i}].asks: {sorted(unknown)} "
                                  "not among judge.attributes")
        ceiling = self.compose.ceiling_split
        if ceiling is not None and ceiling not in self.sem.extract.splits:
            raise ConfigError(f"{where}.compose.ceiling_split: {ceiling!r} is not in "
                              f"{where}.sem.extract.splits {self.sem.extract.splits}")
        if self.compose.method == "attribute" and self.compose.attribute is None:
            raise ConfigError(f"{where}.compose.method: attribute needs compose.attribute")
        if self.compose.continuous_baseline and not self.sem.extract.features:
            raise ConfigError(f"{where}.compose.continuous_baseline: needs the continuous "
                              f"features in the codes table ({where}.sem.extract.features)")
        self._check_evaluate(f"{where}.evaluate")

    def _check_evaluate(self, where: str) -> None:
        e = self.evaluate
        if (e.reference_split is None) == (e.reference_batch is None):
            raise ConfigError(f"{where}: set exactly one of reference_split and reference_batch")
        if "inception" in e.extractors and e.inception_weights is None:
            raise ConfigError(f"{where}: the inception extractor needs inception_weights")
        if "judge" in e.extractors and self.judge is None:
            raise ConfigError(f"{where}: the judge extractor needs a judge (judge is null)")
        for section, count in (("dit.sample", self.dit.sample.samples),
                               ("sedd.sample", self.sedd.sample.samples)):
            if e.samples > count:
                raise ConfigError(f"{where}.samples = {e.samples} is more than the "
                                  f"{section}.samples = {count} that are generated")


@dataclass(frozen=True)
class Config:
    preset: str = param("active preset of the image pipeline (a key of presets)")
    toy: ToyConfig = param("the paper's Section 3 study")
    presets: dict[str, PresetConfig] = param("named settings of the image pipeline")

    def check(self, where: str) -> None:
        if self.preset not in self.presets:
            raise ConfigError(f"preset: '{self.preset}' is not one of {sorted(self.presets)}")

    @property
    def active(self) -> PresetConfig:
        return self.presets[self.preset]

    def with_active(self, preset: PresetConfig) -> Config:
        """This config with another active preset (a section changed from Python)."""
        return dataclasses.replace(self, presets={**self.presets, self.preset: preset})

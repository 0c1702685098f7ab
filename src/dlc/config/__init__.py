"""Typed parameters of the study: the one place that says what `params.yaml` may hold.

`params.yaml` holds every value (there are no defaults hidden in code). One module per section
says what each key means, its type and its allowed range (`fields.param`); `parse` checks a
loaded file against them (unknown keys, missing keys, wrong types and impossible values fail at
start with the key's full name); `schema` generates the JSON schema Snakemake's `validate` uses
and the configuration reference, so neither can drift from the dataclasses.
"""

from .cluster import RuleResources, SlurmConfig
from .data import DataConfig, ImageFolderConfig, ShapesConfig
from .dit import DiTConfig, DiTSampleConfig, DiTTrainConfig, GaussianProcessConfig, RepaConfig
from .evaluate import ComposeConfig, EvaluateConfig, JudgeConfig
from .fields import PRECISION_DOC, ConfigError
from .parse import DEFAULT_PARAMS, load, parse, parse_section, to_dict
from .preset import Config, PresetConfig
from .schema import (
                     REFERENCE_PATH,
                     SCHEMA_PATH,
                     json_schema,
                     json_schema_text,
                     reference_markdown,
                     write_generated,
)
from .sedd import SEDDConfig, SEDDSampleConfig, SEDDTrainConfig
from .sem import (
                     BackboneConfig,
                     CropsConfig,
                     DINOHeadConfig,
                     ExtractConfig,
                     ProbeConfig,
                     SEMConfig,
                     SEMTrainConfig,
                     SSLLossConfig,
)
from .text import (
    LoRAConfig,
    ParaphraseConfig,
    TextConfig,
    TextSampleConfig,
    TextStudyConfig,
    TextTrainConfig,
)
from .toy import DiffusionConfig, GMMConfig, MLPConfig, ToyConfig, ToyEvalConfig, ToyTrainConfig
from .vae import LatentCacheConfig, VAEConfig, VAEModelConfig, VAETrainConfig

__all__ = [
    "DEFAULT_PARAMS", "PRECISION_DOC", "REFERENCE_PATH", "SCHEMA_PATH",
    "BackboneConfig", "ComposeConfig", "Config", "ConfigError", "CropsConfig", "DataConfig",
    "DiffusionConfig", "DINOHeadConfig", "DiTConfig", "DiTSampleConfig", "DiTTrainConfig",
    "EvaluateConfig", "ExtractConfig", "GaussianProcessConfig", "GMMConfig",
    "ImageFolderConfig", "JudgeConfig", "LatentCacheConfig", "LoRAConfig", "MLPConfig",
    "PresetConfig", "ProbeConfig", "RepaConfig", "RuleResources", "SEDDConfig",
    "SEDDSampleConfig", "SEDDTrainConfig", "SEMConfig", "SEMTrainConfig", "ShapesConfig",
    "SlurmConfig", "SSLLossConfig", "TextConfig", "TextSampleConfig", "TextTrainConfig",
    "ParaphraseConfig", "TextStudyConfig",
    "ToyConfig", "ToyEvalConfig", "ToyTrainConfig", "VAEConfig", "VAEModelConfig",
    "VAETrainConfig", "json_schema", "json_schema_text", "load", "parse", "parse_section",
    "reference_markdown", "to_dict", "write_generated",
]

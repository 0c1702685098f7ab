"""The shareable folder of a pipeline (`dlc export`, `Pipeline.save_pretrained`), and reading
it back (`Pipeline.from_pretrained`), with no params.yaml and no network:

    pipeline.json      format, L, V, the parts and the compose settings
    README.md          model card: parts, params, data, the run's measured metrics, licence
    sem/               config.json (L, V, the sem params) + model.safetensors (the encoder)
    sedd/, dit/        config.json + model.safetensors + meta.json (as the training run wrote it)
    vae/               a diffusers AutoencoderKL folder (its own config.json and weights)
    text/              config.json + the text model as train-text2code wrote it (the tiny back
                       end's weights and vocabulary, or model/: a transformers folder)

Every file is written beside its destination and the folder swapped in whole, so an
interrupted export leaves the previous one (or nothing).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from dlc import io as dio
from dlc.config import (
                        ComposeConfig,
                        ConfigError,
                        DiTConfig,
                        SEDDConfig,
                        SEMConfig,
                        TextConfig,
                        VAEConfig,
                        parse_section,
                        to_dict,
)

log = logging.getLogger(__name__)
FORMAT, VERSION = "dlc-pipeline", 1
SECTIONS = {"sem": SEMConfig, "sedd": SEDDConfig, "dit": DiTConfig, "text": TextConfig}
LICENCE = "mit"
# What a train-sedd, train-dit or train-text2code folder holds that a later run loads.
RUN_FILES = ("model.safetensors", "meta.json", "vocabulary.json", "model")


def _part_files(name: str, path: Path) -> list[Path]:
    """The files (and the transformers folder) of a trained part; empty when it was not
    trained."""
    if name == "sem":
        return [path] if path.is_file() else []
    if name == "vae":
        return sorted(f for f in path.glob("*") if f.is_file()) \
            if (path / "config.json").is_file() else []
    if not (path / "meta.json").is_file():
        return []
    return [path / item for item in RUN_FILES if (path / item).exists()]


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def write_folder(pipeline, folder: str | Path, run: str | Path | None = None) -> Path:
    """Every trained part of `pipeline` (a `Pipeline`: its length, vocab, parts and
    compose_cfg) into `folder` (replaced whole); returns it."""
    folder = Path(folder)
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    written = {}
    for name, part in pipeline.parts.items():
        files = _part_files(name, Path(part.path))
        if not files:
            log.warning("%s: no trained %s part there; the export leaves it out", part.path, name)
            continue
        (partial / name).mkdir()
        for source in files:
            _copy(source, partial / name / ("model.safetensors" if name == "sem"
                                             else source.name))
        if name in SECTIONS:
            dio.write_json(partial / name / "config.json",
                           {"format": FORMAT, "part": name, "L": pipeline.length,
                            "V": pipeline.vocab, "params": to_dict(part.cfg)})
        written[name] = name
    if not written:
        shutil.rmtree(partial)
        raise FileNotFoundError(f"{run or 'the pipeline'}: no trained part to export")
    manifest = {"format": FORMAT, "version": VERSION, "L": pipeline.length, "V": pipeline.vocab,
                "parts": written, "compose": to_dict(pipeline.compose_cfg),
                "vae_params": to_dict(pipeline.parts["vae"].cfg)
                if "vae" in written and pipeline.parts["vae"].cfg is not None else None}
    dio.write_json(partial / "pipeline.json", manifest)
    (partial / "README.md").write_text(model_card(pipeline, manifest, run))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    log.info("parts %s -> %s", sorted(written), folder)
    return folder


def model_card(pipeline, manifest: dict, run: str | Path | None) -> str:
    """README.md: what the parts are, their params, the data, the run's metrics, the licence."""
    run = Path(run) if run is not None else None
    data = dio.read_json(run / "data" / "report.json") \
        if run is not None and (run / "data" / "report.json").is_file() else None
    metrics = dio.read_json(run / "report.json") \
        if run is not None and (run / "report.json").is_file() else None
    lines = ["---", f"license: {LICENCE}", "library_name: dlc",
             "tags: [discrete-latent-codes, diffusion, sedd, dit]", "---", "",
             f"# Discrete Latent Codes pipeline (L = {pipeline.length}, V = {pipeline.vocab})", "",
             "Images as sequences of discrete tokens from a self-supervised (SEM) encoder; SEDD "
             "generates codes, a DiT turns codes into VAE latents, codes compose, and a text "
             "model writes them from prompts.", "",
             "```python", "from dlc import Pipeline", "",
             "pipe = Pipeline.from_pretrained(\"<this folder>\")",
             "codes = pipe.sample_codes(8)", "images = pipe.decode(codes)  # (8, H, W, 3) uint8",
             "```", "", "## Parts", "", "| part | folder |", "| --- | --- |"]
    lines += [f"| {name} | `{folder}/` |" for name, folder in manifest["parts"].items()]
    lines += ["", "## Data", ""]
    lines += [f"- {key}: {value}" for key, value in (data or {}).items()] or [
        "- not recorded (exported from parts outside a run folder)"]
    lines += ["", "## Metrics measured by the run", ""]
    if metrics:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:.4g} |" if isinstance(value, float) else
                  f"| {key} | {value} |" for key, value in metrics.items()
                  if isinstance(value, (int, float, str))]
    else:
        lines.append("No report.json in the run folder: no metrics recorded.")
    lines += ["", "## Params", ""]
    for name in manifest["parts"]:
        if name in SECTIONS:
            lines += [f"### {name}", "", "```yaml",
                      yaml.safe_dump(to_dict(pipeline.parts[name].cfg), sort_keys=False).rstrip(),
                      "```", ""]
    lines += ["## Licence", "",
              f"The code that made these weights is under the {LICENCE.upper()} licence; the "
              "weights also carry the terms of the data they were trained on.", ""]
    return "\n".join(lines)


def read_folder(folder: str | Path):
    """(L, V, {part: (params section, weights path)}, compose settings) of an exported folder;
    fails naming the folder or file when pipeline.json is missing, a part it names is missing,
    or a part's L x V differs."""
    folder = Path(folder)
    manifest_path = folder / "pipeline.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder}: not a dlc pipeline folder (no pipeline.json)")
    manifest = dio.read_json(manifest_path)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ConfigError(f"{manifest_path}: format {manifest.get('format')} version "
                          f"{manifest.get('version')}, expected {FORMAT} version {VERSION}")
    length, vocab = manifest["L"], manifest["V"]
    parts = {}
    for name, sub in manifest["parts"].items():
        where = folder / sub
        if not where.is_dir():
            raise FileNotFoundError(f"{where}: part {name} named in {manifest_path} is missing")
        if name == "vae":
            cfg = manifest["vae_params"] and parse_section(VAEConfig, manifest["vae_params"],
                                                           f"{manifest_path} vae_params")
            parts[name] = (cfg, where)
            continue
        config = dio.read_json(where / "config.json")
        if (config.get("L"), config.get("V")) != (length, vocab):
            raise ConfigError(f"{where / 'config.json'}: codes of L={config.get('L')} x "
                              f"V={config.get('V')}, but {manifest_path} says L={length} x "
                              f"V={vocab} (a part of another pipeline?)")
        cfg = parse_section(SECTIONS[name], config["params"], str(where / "config.json"))
        parts[name] = (cfg, where / "model.safetensors" if name == "sem" else where)
    compose = parse_section(ComposeConfig, manifest["compose"], f"{manifest_path} compose")
    return length, vocab, parts, compose

"""`dlc.Pipeline`: the trained parts of a run as one object for notebooks and scripts.

    pipe = Pipeline.from_run("results/tiny")            # a finished run and its params.yaml
    pipe = Pipeline.from_pretrained("exported/tiny")    # a local `dlc export` folder
    codes = pipe.encode(images)                          # (B, L) int64
    images = pipe.decode(codes, cfg_scale=2.0, seed=0)   # (B, H, W, 3) uint8

Each model loads on first use. Every call runs the function the CLI stage runs (SEM argmax as
`extract-codes`, `sample_batch` as `sample-codes`, `decode_batch` as `sample-dit`, `hybrids`
as `compose`, `write_codes` as `text2code`) with the params' settings, any keyword given
replacing one of them, so the same settings and seeds give the same bytes as the CLI on the
same device.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dlc.config import (
                        ComposeConfig,
                        Config,
                        DiTConfig,
                        SEDDConfig,
                        SEMConfig,
                        TextConfig,
                        load,
)
from dlc.data.images import adm_center_crop
from dlc.data.multicrop import NormalizedTensor
from dlc.diffusion.gaussian import build_process
from dlc.generation import codes as code_sampling
from dlc.generation import images as image_sampling
from dlc.generation.compose import hybrids
from dlc.generation.text import write_codes
from dlc.models.sem import load_encoder
from dlc.models.text_model import TextModel
from dlc.models.vae import vae_location
from dlc.train import distributed

# Where each trained part lives in results/<preset>/ (the Snakemake rules' outputs).
RUN_LAYOUT = {"sem": "sem/encoder.safetensors", "sedd": "sedd", "dit": "dit",
              "text": "text2code_model"}
PARTS = ("sem", "sedd", "dit", "vae", "text")


@dataclass(frozen=True)
class Part:
    """One trained component: its params section and where its weights are (a file for the
    SEM encoder, a folder for the others; the VAE's is a diffusers folder)."""

    cfg: Any
    path: Path


def to_pil(images: np.ndarray) -> list[Image.Image]:
    """(B, H, W, 3) uint8 -> B PIL images."""
    return [Image.fromarray(image) for image in images]


def _as_uint8(image, size: int) -> np.ndarray:
    """A PIL image or (H, W, 3) uint8 array -> (size, size, 3) uint8 with the ADM centre crop,
    what `extract-codes` gives the encoder."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"images must be (H, W, 3) uint8 arrays or PIL images, got "
                             f"{image.dtype} {image.shape}")
        image = Image.fromarray(image)
    image = image.convert("RGB")
    return np.asarray(image if image.size == (size, size) else adm_center_crop(image, size))


def _replace_sample(section, **overrides):
    """section with section.sample's fields replaced by the overrides that are not None."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(section, sample=dataclasses.replace(section.sample, **given))


class Pipeline:
    """Encode, decode, sample, compose and write codes with the trained parts of one run."""

    def __init__(self, length: int, vocab: int, parts: dict[str, Part],
                 compose: ComposeConfig, device: str | torch.device | None = None,
                 precision: str | None = None, threads: int | None = None):
        """`precision` ("fp32", "bf16" or "auto") replaces every sampler's
        sample.precision; None keeps the params'. `threads`: CPU threads of each call; None
        uses the part's train.threads, as its stage does (a CPU's float sums depend on the
        thread count, so only then are the bytes the stage's)."""
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; a pipeline has {PARTS}")
        self.length, self.vocab, self.parts, self.compose_cfg = length, vocab, parts, compose
        self.device = torch.device(device if device is not None else
                                   "cuda" if torch.cuda.is_available() else "cpu")
        self.precision, self.threads = precision, threads
        self._loaded: dict[str, Any] = {}

    @classmethod
    def from_run(cls, run: str | Path | None = None, params: str | Path = "params.yaml",
                 preset: str | None = None, **options) -> Pipeline:
        """The parts of results/<preset>/ (or `run`) with the preset's params."""
        cfg = load(params, preset)
        return cls.from_config(cfg, run if run is not None else f"results/{cfg.preset}",
                               **options)

    @classmethod
    def from_config(cls, cfg: Config, run: str | Path, **options) -> Pipeline:
        """The parts of the run folder `run` with the active preset of loaded params."""
        p, run = cfg.active, Path(run)
        if not run.is_dir():
            raise FileNotFoundError(f"{run}: no such run folder")
        parts = {name: Part(getattr(p, name), run / where) for name, where in RUN_LAYOUT.items()}
        parts["vae"] = Part(p.vae, Path(vae_location(p.vae, run / "vae")))
        return cls(p.sem.length, p.sem.vocab, parts, p.compose, **options)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **options) -> Pipeline:
        """A local `dlc export` folder (pipeline.json and one folder per part); no
        params.yaml, nothing downloaded (a hub id is not a folder: it fails naming it)."""
        from dlc.generation.export import read_folder

        length, vocab, parts, compose = read_folder(folder)
        return cls(length, vocab, {name: Part(cfg, path) for name, (cfg, path) in parts.items()},
                   compose, **options)

    def save_pretrained(self, folder: str | Path, run: str | Path | None = None) -> Path:
        """The shareable folder of these parts (`dlc export`); `run` adds its measured metrics
        to the model card."""
        from dlc.generation.export import write_folder

        return write_folder(self, folder, run)

    # -- parts, loaded on first use ------------------------------------------------------------

    def part(self, name: str) -> Part:
        if name not in self.parts:
            raise ValueError(f"this pipeline has no {name} part (it has {sorted(self.parts)})")
        return self.parts[name]

    @contextlib.contextmanager
    def _threads(self, name: str):
        """torch's CPU thread count set for one call (the stage's), then restored."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads or self.part(name).cfg.train.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _sampling(self, section):
        return section if self.precision is None else _replace_sample(
            section, precision=self.precision)

    def _load(self, name: str):
        if name not in self._loaded:
            part = self.part(name)
            if name == "sem":
                model = load_encoder(part.cfg, part.path).to(self.device)
            elif name == "sedd":
                model = code_sampling.load_sampler(self._sampling(part.cfg), part.path,
                                                   self.length, self.vocab, self.device)
            elif name == "dit":
                model = image_sampling.load_decoder(part.cfg, part.path, self.part("vae").path,
                                                    self.length, self.vocab, self.device)
            elif name == "text":
                model = TextModel.load(part.cfg, part.path, self.length)
            else:
                raise ValueError(f"the {name} part loads with another one")
            self._loaded[name] = model
        return self._loaded[name]

    # -- images <-> codes ----------------------------------------------------------------------

    @torch.no_grad()
    def distributions(self, images) -> torch.Tensor:
        """The SEM distributions (B, L, V) of PIL images or (H, W, 3) uint8 arrays."""
        return self._encode(images, "encode").float().cpu()

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        """Codes (B, L) int64: the argmax of the SEM logits at each position."""
        return self._encode(images, "codes").long().cpu()

    def _encode(self, images, method: str) -> torch.Tensor:
        cfg: SEMConfig = self.part("sem").cfg
        encoder = self._load("sem")
        size, to_tensor = cfg.backbone.img_size, NormalizedTensor()
        batches = []
        with self._threads("sem"):
            for first in range(0, len(images), cfg.extract.batch_size):
                chunk = images[first:first + cfg.extract.batch_size]
                batch = torch.stack([to_tensor(_as_uint8(image, size)) for image in chunk])
                with distributed.autocast(self.device, self.precision):
                    batches.append(getattr(encoder, method)(batch.to(self.device)))
        return torch.cat(batches)

    @torch.no_grad()
    def decode(self, codes, *, cfg_scale: float | None = None, steps: int | None = None,
               sampler: str | None = None, seed: int | None = None,
               batch_size: int | None = None) -> np.ndarray:
        """(B, L) codes -> (B, H, W, 3) uint8 images: batch b of batch_size codes is sampled
        from (seed, b), as `sample-dit` does; None keeps dit.sample.*."""
        cfg: DiTConfig = _replace_sample(self._sampling(self.part("dit").cfg),
                                         cfg_scale=cfg_scale, steps=steps, sampler=sampler,
                                         seed=seed, batch_size=batch_size)
        model, meta, vae = self._load("dit")
        if meta["condition"] != "code":
            raise ValueError(f"{self.part('dit').path}: a {meta['condition']}-conditioned DiT "
                             "does not decode codes")
        codes = self._check_codes(codes)
        process, s = build_process(cfg), cfg.sample
        with self._threads("dit"):
            return np.concatenate([
                image_sampling.decode_batch(cfg, model, meta, process, vae,
                                            codes[first:first + s.batch_size], None,
                                            image_sampling.batch_seed(s.seed, batch),
                                            self.device)
                for batch, first in enumerate(range(0, len(codes), s.batch_size))])

    def _check_codes(self, codes) -> np.ndarray:
        codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes)
        if codes.ndim != 2 or codes.shape[1] != self.length:
            raise ValueError(f"codes must be (B, {self.length}), got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 \
                or codes.max() >= self.vocab:
            raise ValueError(f"codes must be integers in [0, {self.vocab})")
        return codes.astype(np.int64)

    # -- codes from nothing, from sources, from words ------------------------------------------

    @torch.no_grad()
    def sample_codes(self, n: int, *, remask_eta: float | None = None,
                     steps: int | None = None, seed: int | None = None,
                     batch_size: int | None = None) -> torch.Tensor:
        """n codes (n, L) from SEDD; batch b from (seed, b) as `sample-codes` does; None keeps
        sedd.sample.*."""
        cfg: SEDDConfig = self.part("sedd").cfg
        s = _replace_sample(cfg, remask_eta=remask_eta, steps=steps, seed=seed,
                            batch_size=batch_size).sample
        score_fn, process, _ = self._load("sedd")
        with self._threads("sedd"):
            return torch.cat([
                code_sampling.sample_batch(score_fn, process, s, min(s.batch_size, n - first),
                                           self.length, batch, self.device).cpu()
                for batch, first in enumerate(range(0, n, s.batch_size))]).long()

    def generate(self, n: int, *, remask_eta: float | None = None,
                 **decode_options) -> np.ndarray:
        """n images from nothing: SEDD's codes, then `decode` (`dlc generate`)."""
        return self.decode(self.sample_codes(n, remask_eta=remask_eta), **decode_options)

    def compose(self, sources, *, n: int | None = None, method: str | None = None,
                weights: list[float] | None = None, tau: float | None = None,
                seed: int | None = None, positions=None,
                attribute_source: int | None = None) -> torch.Tensor:
        """n hybrid codes (n, L) of two or more sources: codes (S, L), or images (then the
        `average` method can use their SEM distributions); the `attribute` method takes
        `positions` (L,) bool (`dlc.metrics.positions.carrying` of a codes table's map) from
        source `attribute_source`. None keeps compose.*."""
        given = {"samples": n, "method": method, "weights": weights, "tau": tau, "seed": seed,
                 "attribute_source": attribute_source}
        cfg = dataclasses.replace(self.compose_cfg,
                                  **{k: v for k, v in given.items() if v is not None})
        from_images = not (isinstance(sources, torch.Tensor)
                           or isinstance(sources, np.ndarray) and sources.ndim == 2)
        codes = self.encode(sources).numpy() if from_images else self._check_codes(sources)
        probabilities = None
        if cfg.method == "average":
            if not from_images:
                raise ValueError("method average needs the source images (their SEM "
                                 "distributions), not their codes")
            probabilities = self.distributions(sources).numpy()
        if positions is not None:
            positions = np.asarray(positions, dtype=bool)
        return torch.from_numpy(hybrids(cfg, codes, probabilities, positions)).long()

    @torch.no_grad()
    def text(self, prompts: str | list[str], n: int | None = None, *,
             steps: int | None = None, temperature: float | None = None,
             seed: int | None = None) -> torch.Tensor:
        """n codes per prompt (len(prompts) * n, L), prompt by prompt, from the text -> code
        model; None keeps text.sample.*."""
        cfg: TextConfig = _replace_sample(self.part("text").cfg, samples=n, steps=steps,
                                          temperature=temperature, seed=seed)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        codes = write_codes(self._load("text"), prompts, self.length, cfg.sample)
        return torch.from_numpy(codes).long()

"""Codes written from prompts by the text -> code model (masked diffusion over the code span,
ids restricted to the code tokens), and decoded into images by the DiT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlc.config import PresetConfig, TextSampleConfig, to_dict
from dlc.diffusion import masked_lm
from dlc.generation.images import decode_codes
from dlc.models.text_model import TextModel


def write_codes(model: TextModel, prompts: list[str], length: int,
                s: TextSampleConfig) -> np.ndarray:
    """s.samples codes per prompt, (len(prompts) * samples, L), from s.seed, s.batch_size
    sequences at a time (one generator runs through the batches)."""
    generator = torch.Generator().manual_seed(s.seed)
    model.network.eval()
    repeated = [p for p in prompts for _ in range(s.samples)]
    allowed = model.codes.allowed(model.size)
    codes = []
    for first in range(0, len(repeated), s.batch_size):
        batch = repeated[first:first + s.batch_size]
        tokens = model.sequences(torch.zeros(len(batch), length, dtype=torch.long), batch)
        filled = masked_lm.sample(model.logits, tokens, slice(0, length), model.codes.mask,
                                  allowed, s.steps, s.temperature, s.remasking, generator)
        codes.append(model.codes.to_codes(filled[:, :length]))
    return torch.cat(codes).numpy()


def decode_prompts(preset: PresetConfig, s: TextSampleConfig, codes: np.ndarray,
                   prompts: list[str], dit_dir, vae_dir, out_dir: Path) -> np.ndarray:
    """Images of codes written for `prompts` (each repeated s.samples times), with the
    prompts as the codes' captions: codes/, samples.npz, images/ in out_dir."""
    metadata = {"L": preset.sem.length, "V": preset.sem.vocab, "dataset": None, "split": "text",
                "producer": {"stage": "dlc text2code", **to_dict(s)}}
    captions = pd.DataFrame({"caption": [p for p in prompts for _ in range(s.samples)]})
    return decode_codes(preset.dit, preset.vae, dit_dir, vae_dir, codes,
                        [f"text-{i:06d}" for i in range(len(codes))], metadata, out_dir,
                        "text", captions)

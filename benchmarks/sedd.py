"""SEDD on CPU: ms per training step of SEDD-small at L = 128 (batch 8, 1 thread) and per
sampling step at L = 512 (batch 8); parameter counts of the sizes. Writes
benchmarks/results/sedd.json.

    .venv/bin/python benchmarks/sedd.py
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from dlc.diffusion.absorbing import AbsorbingDiffusion
from dlc.models.sedd import SIZES, SEDDTransformer

VOCAB = 256


def train_step_ms(length: int, batch: int, repeat: int = 3, model: SEDDTransformer | None = None,
                  autocast=contextlib.nullcontext()) -> float:
    """ms per training step of `model` (default: SEDD-small over V = 256) on random codes."""
    model = model or SEDDTransformer(VOCAB, length, SIZES["small"])
    vocab = model.vocab_size
    process = AbsorbingDiffusion(vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, foreach=True)
    codes = torch.randint(0, vocab, (batch, length))

    def step():
        t = torch.rand(batch) * (1 - 1e-3) + 1e-3
        noisy = process.corrupt(codes, t)
        with autocast:
            log_score = model(noisy, process.noise.total(t))
        loss = process.score_entropy(log_score, noisy, codes, t)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    return 1000 * (time.perf_counter() - start) / repeat


@torch.no_grad()
def sample_step_ms(length: int, batch: int, steps: int = 4) -> float:
    model = SEDDTransformer(VOCAB, length, SIZES["small"]).eval()
    process = AbsorbingDiffusion(VOCAB)
    process.sample(model, batch, length, 1)  # warm-up
    start = time.perf_counter()
    process.sample(model, batch, length, steps)
    return 1000 * (time.perf_counter() - start) / (steps + 1)  # + the final denoising step


def main() -> None:
    torch.set_num_threads(1)
    counts = {name: sum(p.numel() for p in SEDDTransformer(VOCAB, 512, size).parameters())
              for name, size in SIZES.items()}
    result = {
        "machine": "2-core CPU, torch.set_num_threads(1)",
        "parameters_V256_L512": counts,
        "small_train_step_ms_L128_batch8": train_step_ms(128, 8),
        "small_sample_step_ms_L512_batch8": sample_step_ms(512, 8),
    }
    out = Path(__file__).parent / "results" / "sedd.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

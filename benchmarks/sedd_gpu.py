"""SEDD-medium on one GPU: training sequences/s at L = 512 (bf16 autocast, fused AdamW) with the
model FLOP utilisation, and the time of one sampling step for a batch of 256 (extrapolated to a
1024-step run) and of its network forward alone, eager and with torch.compile. Prints JSON and
writes it to $OUT/sedd_gpu.json (or benchmarks/results/); `--sample` measures sampling only
($OUT/sedd_gpu_sampling.json).

    PYTHONPATH=src python benchmarks/sedd_gpu.py [--sample]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from dlc.diffusion.absorbing import AbsorbingDiffusion
from dlc.models.sedd import SIZES, SEDDTransformer

VOCAB, LENGTH = 256, 512
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}  # dense bf16 peak of the SXM cards


def flops_per_sequence(model: SEDDTransformer, size) -> float:
    """Training FLOPs of one sequence: 6 N L for the weights plus 12 depth L^2 hidden for
    attention scores and values (forward 4 L^2 h per layer, backward twice that)."""
    weights = sum(p.numel() for name, p in model.named_parameters()
                  if "embedding" not in name)
    return 6 * weights * LENGTH + 12 * size.depth * LENGTH ** 2 * size.hidden


def train_rate(batch: int, steps: int = 10, compile_model: bool = False) -> dict:
    size = SIZES["medium"]
    torch.cuda.reset_peak_memory_stats()
    model = SEDDTransformer(VOCAB, LENGTH, size).cuda()
    network = torch.compile(model) if compile_model else model
    process = AbsorbingDiffusion(VOCAB)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
    codes = torch.randint(0, VOCAB, (batch, LENGTH), device="cuda")

    def step():
        t = torch.rand(batch, device="cuda") * (1 - 1e-3) + 1e-3
        noisy = process.corrupt(codes, t)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            log_score = network(noisy, process.noise.total(t))
        loss = process.score_entropy(log_score, noisy, codes, t).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    rate = batch / seconds
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    achieved = rate * flops_per_sequence(model, size)
    return {"batch": batch, "compile": compile_model, "step_s": seconds, "sequences_per_s": rate,
            "tflops": achieved / 1e12, "mfu": achieved / peak if peak else None,
            "max_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30}


@torch.no_grad()
def sample_step(batch: int = 256, steps: int = 8, compile_model: bool = False) -> dict:
    model = SEDDTransformer(VOCAB, LENGTH, SIZES["medium"]).cuda().eval()
    network = torch.compile(model) if compile_model else model
    process = AbsorbingDiffusion(VOCAB)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        process.sample(network, batch, LENGTH, 2, device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        process.sample(network, batch, LENGTH, steps, device="cuda")
        torch.cuda.synchronize()
        per_step = (time.perf_counter() - start) / (steps + 1)
        tokens = torch.randint(0, VOCAB + 1, (batch, LENGTH), device="cuda")
        sigma = torch.full((batch,), 1.0, device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            network(tokens, sigma)
        torch.cuda.synchronize()
        forward = (time.perf_counter() - start) / steps
    return {"batch": batch, "compile": compile_model, "step_s": per_step,
            "forward_s": forward, "projected_1024_steps_s": 1025 * per_step}


def main() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    only_sampling = "--sample" in sys.argv
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "sample": [sample_step(), sample_step(compile_model=True)]}
    if not only_sampling:
        result["train"] = [train_rate(64), train_rate(64, compile_model=True),
                           train_rate(128, compile_model=True)]
    text = json.dumps(result, indent=2)
    print(text)
    name = "sedd_gpu_sampling.json" if only_sampling else "sedd_gpu.json"
    out = Path(os.environ.get("OUT", Path(__file__).parent / "results")) / name
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()

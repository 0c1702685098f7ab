"""DiT speed. On CPU (1 thread): ms per training step (forward + backward + AdamW + EMA) of
DLC-conditioned DiT-S/2 on 4x32x32 latents at batch 8 and DiT-XL/2 at batch 1, and the code
conditioning as a gather (embedding_bag) against the one-hot matmul at L512 x V256. On a GPU:
DiT-XL/2 training images/s and model FLOP utilisation at batch 64 in bf16 (eager and
torch.compile), and 250-step ancestral sampling with CFG in images/s.
Writes $OUT/dit_<device>.json (or benchmarks/results/).

    PYTHONPATH=src python benchmarks/dit.py
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from dlc.diffusion.gaussian import GaussianDiffusion, classifier_free_guidance
from dlc.models.dit import SIZES, DiT, math_flops_per_image
from dlc.train.ema import make_ema, update_ema

L, V, LATENT = 512, 256, (4, 32, 32)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}   # dense bf16 of the SXM cards (datasheet)


def build(size: str, device) -> DiT:
    return DiT(SIZES[size], LATENT[1], LATENT[0], 2, True, "code", L, V).to(device)


def train_step_seconds(size: str, batch: int, steps: int, device, compile_model=False) -> float:
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build(size, device)
    ema = make_ema(model)
    network = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0,
                                  fused=cuda, foreach=not cuda)
    process = GaussianDiffusion.from_schedule("linear", 1000, learn_sigma=True,
                                              decoder="discretized")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    latents = torch.randn(batch, *LATENT, device=device)
    codes = torch.randint(0, V + 1, (batch, L), device=device)

    def fp32(x, t, **kwargs):
        with autocast:
            return network(x, t, **kwargs).float()

    def step():
        t = torch.randint(0, 1000, (batch,), device=device)
        loss = process.training_losses(fp32, latents, t, codes=codes)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        update_ema(ema, model, 0.9999)

    for _ in range(3 if cuda else 1):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def conditioning_microbenchmark(batch: int = 32, repeat: int = 20) -> dict:
    """Mean of L looked-up rows: embedding_bag vs the one-hot (B, L, V+1) x (L, V+1, H) matmul."""
    hidden = SIZES["XL"].hidden
    table = torch.randn(L * (V + 1), hidden)
    codes = torch.randint(0, V + 1, (batch, L))
    offsets = torch.arange(L) * (V + 1)

    def gather():
        return F.embedding_bag(codes + offsets, table, mode="mean")

    def one_hot():
        return torch.einsum("blv,lvh->bh", F.one_hot(codes, V + 1).float(),
                            table.view(L, V + 1, hidden)) / L

    torch.testing.assert_close(gather(), one_hot(), atol=1e-5, rtol=1e-5)
    times = {}
    for name, fn in (("gather", gather), ("one_hot", one_hot)):
        fn()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        times[name] = (time.perf_counter() - start) / repeat * 1e3
    return {"batch": batch, "gather_ms": times["gather"], "one_hot_ms": times["one_hot"],
            "speedup": times["one_hot"] / times["gather"]}


@torch.no_grad()
def sampling_images_per_second(batch: int, steps: int = 250, timed_steps: int = 10,
                               scale: float = 1.5) -> dict:
    """Images/s of a `steps`-step CFG run, from `timed_steps` timed model+sampler steps."""
    device = torch.device("cuda")
    model = build("XL", device).eval()
    process = GaussianDiffusion.from_schedule("linear", 1000, learn_sigma=True).respaced(steps)
    null = {"codes": model.null_codes(batch, device)}
    codes = torch.randint(0, V, (batch, L), device=device)

    def network(x, t, **kwargs):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x, t, **kwargs).float()

    guided = classifier_free_guidance(network, scale, null)
    x = torch.randn(batch, *LATENT, device=device)

    def one_step(i):
        t = torch.full((batch,), i, device=device, dtype=torch.long)
        output = guided(x, process._model_t(t), codes=codes)
        return process.p_step(output, x, t, torch.randn_like(x))

    one_step(steps - 1)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps - 1, steps - 1 - timed_steps, -1):
        x = one_step(i)
    torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / timed_steps
    return {"batch": batch, "cfg_scale": scale, "steps": steps, "step_s": per_step,
            "images_per_s": batch / (per_step * steps)}


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {"torch": torch.__version__}
    flops = 3 * math_flops_per_image(SIZES["XL"], 256, 2, 4)  # forward + backward (2x)
    if device.type == "cpu":
        torch.set_num_threads(1)
        result["device"] = f"{platform.processor() or platform.machine()}, 1 thread"
        result["train_step_ms"] = {
            "DiT-S/2 batch 8": 1e3 * train_step_seconds("S", 8, 3, device),
            "DiT-XL/2 batch 1": 1e3 * train_step_seconds("XL", 1, 2, device)}
        result["conditioning"] = conditioning_microbenchmark()
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        result["device"] = name
        result["train"] = []
        for compiled in (False, True):
            seconds = train_step_seconds("XL", 64, 10, device, compile_model=compiled)
            rate = 64 / seconds
            result["train"].append({
                "batch": 64, "compile": compiled, "step_s": seconds, "images_per_s": rate,
                "tflops": rate * flops / 1e12, "mfu": rate * flops / peak if peak else None,
                "max_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30})
            print(result["train"][-1], flush=True)
        result["sample"] = sampling_images_per_second(125)
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(os.environ.get("OUT", Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"dit_{device.type}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()

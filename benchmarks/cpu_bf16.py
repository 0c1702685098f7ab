"""bf16 autocast on CPU: what it buys the tiny preset's training stages. On a CPU with
AVX512-BF16 or AMX, bf16 matrix products run several times faster than fp32 ones, but
PyTorch's CPU flash-attention kernel is slower in bf16 than in fp32, which is why
`dlc.models.attention` writes attention out under CPU bf16. Measured on one thread:

- one matrix product of the SEM encoder's shape, GFLOP/s in fp32 and bf16;
- attention forward + backward at the SEM's crop shape: SDPA in fp32, SDPA in bf16, and
  `dlc.models.attention` in bf16;
- ms per training step of the tiny preset's SEM (the stage's loss, multi-crop batch 64),
  SEDD and DiT (their models and losses at the preset's sizes), with `train.precision` fp32
  and bf16.

Writes benchmarks/results/cpu_bf16.json.

    .venv/bin/python benchmarks/cpu_bf16.py
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import sedd
import torch
import torch.nn.functional as F

from dlc import config
from dlc.diffusion.gaussian import GaussianDiffusion
from dlc.models.attention import attention
from dlc.models.dit import build_dit
from dlc.models.sedd import build_sedd
from dlc.models.sem import build_encoder
from dlc.stages import train_sem
from dlc.train import distributed
from dlc.train.batches import StepRandom
from dlc.train.ema import make_ema, update_ema

PRECISIONS = ("fp32", "bf16")


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def autocast(precision: str):
    """The context a training stage runs its steps in (fp32: none)."""
    return distributed.autocast(torch.device("cpu"), precision)


def timed_ms(step, repeat: int) -> float:
    step()  # warm-up: allocations, oneDNN kernel selection
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    return 1000 * (time.perf_counter() - start) / repeat


def matmul_gflops(m: int = 11520, k: int = 128, n: int = 512) -> dict:
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        rates[str(dtype).removeprefix("torch.")] = 2 * m * k * n / timed_ms(lambda: a @ b, 10) / 1e6
    return {"shape": [m, k, n], "gflops": rates}


def attention_ms(batch: int = 256, heads: int = 4, tokens: int = 69, dim: int = 32) -> dict:
    def run(precision: str, kernel) -> float:
        q, k, v = (torch.randn(batch, heads, tokens, dim, requires_grad=True) for _ in range(3))
        context = autocast(precision)

        def step():
            with context:
                out = kernel(q, k, v)
            out.float().sum().backward()
        return timed_ms(step, 5)

    return {"shape": [batch, heads, tokens, dim],
            "sdpa_fp32": run("fp32", F.scaled_dot_product_attention),
            "sdpa_bf16": run("bf16", F.scaled_dot_product_attention),
            "written_out_bf16": run("bf16", attention)}


def sem_step_ms(cfg: config.SEMConfig, precision: str, repeat: int) -> float:
    torch.manual_seed(0)
    encoder = build_encoder(cfg)
    teacher, student = make_ema(encoder), train_sem.MultiView(encoder)
    optimizer = torch.optim.AdamW(train_sem.parameter_groups(encoder, 1.0, 1.0), lr=1e-4)
    batch, crops = cfg.train.batch_size, cfg.crops
    global_crops = torch.randn(2 * batch, 3, crops.global_size, crops.global_size)
    local_crops = torch.randn(crops.local_crops * batch, 3, crops.local_size, crops.local_size)
    centers = {name: torch.zeros(cfg.head.prototypes) for name in ("dino", "ibot")}
    temps = train_sem._schedules(cfg, cfg.train.steps // 2, batch)
    context = autocast(precision)

    def step():
        with context:
            terms = train_sem._loss(cfg, student, teacher, global_crops, local_crops, centers,
                                    temps, StepRandom(0, 0))
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        update_ema(teacher, encoder, temps["momentum"])
    return timed_ms(step, repeat)


def sedd_step_ms(cfg: config.SEDDConfig, length: int, vocab: int, precision: str,
                 repeat: int) -> float:
    torch.manual_seed(0)
    return sedd.train_step_ms(length, cfg.train.batch_size, repeat,
                              build_sedd(cfg, length, vocab), autocast(precision))


def dit_step_ms(cfg: config.DiTConfig, latent_shape, length: int, vocab: int, precision: str,
                repeat: int) -> float:
    torch.manual_seed(0)
    model = build_dit(cfg, latent_shape, length, vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    d = cfg.diffusion
    process = GaussianDiffusion.from_schedule(d.schedule, d.steps, learn_sigma=d.learn_sigma,
                                              decoder="discretized")
    batch = cfg.train.batch_size
    latents = torch.randn(batch, *latent_shape)
    codes = torch.randint(0, vocab, (batch, length))

    context = autocast(precision)

    def network_fp32(x, timesteps, **kwargs):
        with context:
            return model(x, timesteps, **kwargs).float()

    def step():
        t = torch.randint(0, d.steps, (batch,))
        loss = process.training_losses(network_fp32, latents, t, codes=codes)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return timed_ms(step, repeat)


def main() -> None:
    torch.set_num_threads(1)
    preset = config.load().active
    sem, length, vocab = preset.sem, preset.sem.length, preset.sem.vocab
    side = preset.vae.resolution // 2 ** (len(preset.vae.model.block_out_channels) - 1)
    latent_shape = (preset.vae.model.latent_channels, side, side)
    steps = {}
    for precision in PRECISIONS:
        steps[precision] = {
            "sem": sem_step_ms(sem, precision, 5),
            "sedd": sedd_step_ms(preset.sedd, length, vocab, precision, 20),
            "dit": dit_step_ms(preset.dit, latent_shape, length, vocab, precision, 20)}
    result = {
        "machine": f"{cpu_name()}, torch.set_num_threads(1)",
        "onednn_bf16": distributed.onednn_bf16_supported(),
        "torch": torch.__version__,
        "matmul": matmul_gflops(),
        "attention_forward_backward_ms": attention_ms(),
        "tiny_train_step_ms": steps,
        "speedup_bf16": {stage: steps["fp32"][stage] / steps["bf16"][stage]
                         for stage in steps["fp32"]}}
    text = json.dumps(result, indent=2)
    print(text)
    (Path(__file__).parent / "results" / "cpu_bf16.json").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Data-parallel setup from the environment torchrun or submitit exports (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT); a single process when those are absent."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def autocast(device: torch.device, precision: str | None = None):
    """The autocast context of a stage. `precision` None (the inference stages): bf16 on a GPU,
    fp32 on CPU. "bf16" or "fp32" (a training stage's `train.precision`): that, on any device:
    a CPU with AVX512-BF16 or AMX multiplies bf16 matrices several times faster than fp32 ones
    (4.7x on the development machine, `benchmarks/cpu_bf16.py`). "auto": bf16 where the device
    multiplies it natively (`native_bf16`), else fp32. Reusable: `with` it once per step."""
    if precision is None:
        precision = "bf16" if device.type == "cuda" else "fp32"
    elif precision == "auto":
        precision = resolve_precision(device, precision)
        log.info("precision auto: %s on %s", precision, device)
    if device.type == "cpu" and precision == "bf16" and not onednn_bf16_supported():
        log.warning("precision bf16: oneDNN has no bf16 kernels for this CPU; fp32 is faster")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def resolve_precision(device: torch.device, precision: str) -> str:
    """A training stage's `train.precision` as it will run here: "auto" becomes bf16 or fp32."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 products beat fp32 ones here: a GPU with bf16 support, or a CPU with
    AVX512-BF16 or AMX instructions (an AVX-512 CPU without them runs oneDNN's bf16 kernels,
    emulated, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(bool(getattr(cpu, probe, lambda: False)())
               for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def onednn_bf16_supported() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (x86 AVX-512, Arm BF16). They beat fp32
    where the CPU multiplies bf16 natively (AVX512-BF16, AMX): check with the benchmark."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def setup() -> Processes:
    """Join the process group if launched as several processes; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world, device)


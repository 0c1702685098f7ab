"""Scaled dot-product attention for every model of the package, fast under bf16 on CPU too.

PyTorch's SDPA picks a flash kernel on CPU, whose forward and backward take about 4x as long
in bf16 as in fp32, while bf16 matrix products on a CPU with AVX512-BF16 or AMX run about 4.7x
faster than fp32 ones (`benchmarks/cpu_bf16.py`). So under CPU bf16 autocast, attention is
written out as two batched products and a softmax (which autocast keeps in fp32); everywhere
else it is SDPA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cpu_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is on for CPU tensors on `device` right now."""
    return (device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over (..., tokens, d), without a mask."""
    if not cpu_bf16(q.device):
        return F.scaled_dot_product_attention(q, k, v)
    weights = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)
    return weights @ v  # autocast runs this product in bf16 too


class SelfAttention(nn.Module):
    """Multi-head self-attention over (B, N, D) tokens: one qkv projection, `attention`, an
    output projection."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        # (B, N, 3 D) -> 3 x (B, heads, N, D / heads)
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))

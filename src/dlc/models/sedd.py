"""The SEDD score network over codes: a bidirectional transformer with adaLN conditioning on the
total noise sigma, rotary position embedding inside attention plus a learned absolute position
embedding, and the absorbing-graph output scaling.

Output: log concrete scores (B, L, V) for the V real tokens. The last layer starts at zero and
the output is shifted by -log(e^sigma - 1) - log V, so an untrained network already says
"every token equally likely": p(x_0 = y | x_t) = s_y (e^sigma - 1) = 1 / V.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlc import io as dio
from dlc.config import SEDDConfig
from dlc.models.attention import attention
from dlc.models.embeddings import TimestepEmbedder, modulate
from dlc.train import checkpoint


@dataclass(frozen=True)
class SEDDSize:
    hidden: int
    depth: int
    heads: int
    cond_dim: int = 128


SIZES = {
    "tiny": SEDDSize(hidden=128, depth=4, heads=4, cond_dim=64),
    "small": SEDDSize(hidden=768, depth=12, heads=12),
    "medium": SEDDSize(hidden=1024, depth=24, heads=16),
}


def rotary_tables(length: int, head_dim: int, base: float = 10000.0):
    """cos, sin of angle p * base^(-2i / head_dim) for positions p and pairs i: (L, head_dim/2)."""
    inverse = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inverse[None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (even, odd) channel pair of x (B, H, L, D) by its position's angle."""
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2).type_as(x)


class Block(nn.Module):
    """Pre-norm attention + MLP, each modulated (shift, scale, gate) by the noise embedding."""

    def __init__(self, hidden: int, heads: int, cond_dim: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False)
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.attn_out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * hidden, hidden))
        self.dropout = nn.Dropout(dropout)
        self.modulation = nn.Linear(cond_dim, 6 * hidden)
        nn.init.zeros_(self.modulation.weight)  # adaLN-Zero: every block starts as identity
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, cond, cos, sin):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).chunk(6, dim=-1)
        batch, length, hidden = x.shape
        qkv = self.qkv(modulate(self.norm1(x), shift1, scale1))
        q, k, v = qkv.view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attended = attention(q, k, v)  # bidirectional
        attended = attended.transpose(1, 2).reshape(batch, length, hidden)
        x = x + gate1[:, None] * self.dropout(self.attn_out(attended))
        h = self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x + gate2[:, None] * self.dropout(h)


class SEDDTransformer(nn.Module):
    def __init__(self, vocab_size: int, length: int, size: SEDDSize, dropout: float = 0.1):
        super().__init__()
        self.vocab_size, self.length = vocab_size, length
        head_dim = size.hidden // size.heads
        if size.hidden % size.heads or head_dim % 2:
            raise ValueError(f"hidden {size.hidden} must split into {size.heads} even heads")
        self.token_embedding = nn.Embedding(vocab_size + 1, size.hidden)   # + the mask token
        self.position_embedding = nn.Parameter(torch.randn(1, length, size.hidden) * 0.02)
        self.sigma_embedding = TimestepEmbedder(size.cond_dim)
        self.blocks = nn.ModuleList(Block(size.hidden, size.heads, size.cond_dim, dropout)
                                    for _ in range(size.depth))
        self.final_norm = nn.LayerNorm(size.hidden, elementwise_affine=False)
        self.final_modulation = nn.Linear(size.cond_dim, 2 * size.hidden)
        self.output = nn.Linear(size.hidden, vocab_size)
        for layer in (self.final_modulation, self.output):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        cos, sin = rotary_tables(length, head_dim)
        self.register_buffer("rotary_cos", cos, persistent=False)
        self.register_buffer("rotary_sin", sin, persistent=False)

    def forward(self, tokens: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) in [0, V] (V = mask), sigma (B,) total noise -> log scores (B, L, V)."""
        cond = F.silu(self.sigma_embedding(sigma))
        x = self.token_embedding(tokens) + self.position_embedding[:, :tokens.shape[1]]
        cos, sin = self.rotary_cos[:tokens.shape[1]], self.rotary_sin[:tokens.shape[1]]
        for block in self.blocks:
            x = block(x, cond, cos, sin)
        shift, scale = self.final_modulation(cond).chunk(2, dim=-1)
        logits = self.output(modulate(self.final_norm(x), shift, scale)).float()
        # log(e^sigma - 1) without cancellation for small sigma.
        log_expm1 = torch.log(torch.expm1(sigma.float().clamp_min(1e-8)))
        return logits - log_expm1[:, None, None] - math.log(self.vocab_size)


def build_sedd(cfg: SEDDConfig, length: int, vocab: int) -> SEDDTransformer:
    """The SEDD transformer of these params over codes of L positions and V tokens."""
    return SEDDTransformer(vocab, length, SIZES[cfg.size], dropout=cfg.dropout)


def load_sedd(cfg: SEDDConfig, run: str | Path, length: int,
              vocab: int) -> tuple[SEDDTransformer, dict]:
    """(EMA model, meta) of a train-sedd run; fails naming the run or file if it does not fit
    cfg and the code shape L x V."""
    run = Path(run)
    meta = dio.read_json(run / "meta.json")
    checkpoint.check_code_shape(run, meta, length, vocab)
    model = build_sedd(cfg, meta["L"], meta["V"])
    return checkpoint.load_weights(model, run / "model.safetensors", "the sedd params"), meta

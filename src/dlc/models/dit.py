"""DiT (Peebles & Xie 2023) over VAE latents, conditioned on a Discrete Latent Code.

Patches of the latent grid become tokens (+ fixed 2-D sin-cos positions); every block is
pre-norm attention + MLP modulated by adaLN-Zero from one condition vector per image:

    c = timestep_embedding(t) + code_embedding(code)
    code_embedding(code) = mean over positions p of table[p, code_p],   table: (L, V + 1, hidden)

Index V of each position is the null token: the all-null code is the unconditional branch of
classifier-free guidance. The mean is a gather + mean (`embedding_bag` over the flat indices
p (V + 1) + code_p), never a one-hot matmul. Soft codes (B, L, V) of probabilities (for
composition) give the probability-weighted mean of the same rows.

`condition` chooses what replaces DiT's class embedding: "code" (DLC), "features" (the SEM
encoder's continuous features through a two-layer MLP; the all-zero vector is the null
condition: the continuous baseline of composition), "label" (plain class-conditional DiT, for
size checks against the paper) or "none" (the unconditional baseline with the same network).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dlc import io as dio
from dlc.config import DiTConfig
from dlc.models.attention import SelfAttention
from dlc.models.embeddings import TimestepEmbedder, modulate
from dlc.train.checkpoint import check_code_shape, load_weights

CONDITIONS = ("code", "features", "label", "none")


@dataclass(frozen=True)
class DiTSize:
    depth: int
    hidden: int
    heads: int


SIZES = {  # the DiT paper's table, plus a CPU size
    "tiny": DiTSize(depth=6, hidden=192, heads=3),
    "S": DiTSize(depth=12, hidden=384, heads=6),
    "B": DiTSize(depth=12, hidden=768, heads=12),
    "L": DiTSize(depth=24, hidden=1024, heads=16),
    "XL": DiTSize(depth=28, hidden=1152, heads=16),
}


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) fixed positions, row-major like the flattened patches: a quarter of
    the channels sin(y w_i), cos(y w_i), sin(x w_i), cos(x w_i), w_i = 10000^(-i / (dim/4))."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                            torch.arange(grid, dtype=torch.float64), indexing="ij")
    y, x = ys.reshape(-1, 1) * omega, xs.reshape(-1, 1) * omega
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1).float()


class CodeEmbedder(nn.Module):
    """Discrete Latent Code (B, L) in [0, V] -> the mean of its per-position embeddings."""

    def __init__(self, length: int, vocab: int, hidden: int):
        super().__init__()
        self.length, self.vocab = length, vocab
        self.table = nn.Embedding(length * (vocab + 1), hidden)  # row p (V + 1) + token
        self.register_buffer("offsets", torch.arange(length) * (vocab + 1), persistent=False)

    @property
    def null_token(self) -> int:
        return self.vocab

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(codes.long() + self.offsets, self.table.weight, mode="mean")

    def soft(self, probabilities: torch.Tensor) -> torch.Tensor:
        """(B, L, V) per-position distributions -> the expected embedding."""
        rows = self.table.weight.view(self.length, self.vocab + 1, -1)[:, :self.vocab]
        return torch.einsum("blv,lvh->bh", probabilities.to(rows.dtype), rows) / self.length


class FeatureEmbedder(nn.Module):
    """Continuous features (B, F) -> (B, hidden). Real features are final-normed encoder
    outputs, never all zero, so the zero vector serves as the null condition."""

    def __init__(self, features: int, hidden: int):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features.to(self.mlp[0].weight.dtype))


def projector(hidden: int, width: int, features: int) -> nn.Sequential:
    """REPA's three-layer MLP with SiLU: DiT tokens (hidden) -> an encoder's feature space."""
    return nn.Sequential(nn.Linear(hidden, width), nn.SiLU(), nn.Linear(width, width),
                         nn.SiLU(), nn.Linear(width, features))


class DiTBlock(nn.Module):
    """x + gate * attn(modulate(norm(x))), then the same with an MLP; (shift, scale, gate) x 2
    come from the condition through a zero-initialised linear (adaLN-Zero: starts as identity)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(approximate="tanh"),
                                 nn.Linear(inner, hidden))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, patch: int, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * channels)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """epsilon (and the variance interpolation v when learn_sigma) for latents x_t (B, C, H, W)."""

    def __init__(self, size: DiTSize, input_size: int, in_channels: int, patch: int,
                 learn_sigma: bool = True, condition: str = "code", code_length: int = 0,
                 code_vocab: int = 0, num_classes: int = 1000, feature_dim: int = 0,
                 code_init_std: float = 0.02, align_depth: int = 0, align_width: int = 0,
                 align_features: int = 0):
        super().__init__()
        if input_size % patch:
            raise ValueError(f"latent side {input_size} is not a multiple of patch {patch}")
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        self.in_channels, self.patch, self.condition = in_channels, patch, condition
        self.out_channels = in_channels * (2 if learn_sigma else 1)
        self.grid = input_size // patch
        self.grad_checkpointing = False
        self.patch_embed = nn.Conv2d(in_channels, size.hidden, patch, stride=patch)
        # Fixed sin-cos positions, a frozen parameter as in DiT (so parameter counts agree).
        self.pos_embed = nn.Parameter(sincos_2d(self.grid, size.hidden)[None],
                                      requires_grad=False)
        self.t_embedder = TimestepEmbedder(size.hidden)
        if condition == "code":
            self.code_embedder = CodeEmbedder(code_length, code_vocab, size.hidden)
        elif condition == "features":
            self.feature_embedder = FeatureEmbedder(feature_dim, size.hidden)
        elif condition == "label":  # index num_classes: the null label
            self.label_embedder = nn.Embedding(num_classes + 1, size.hidden)
        self.blocks = nn.ModuleList(DiTBlock(size.hidden, size.heads)
                                    for _ in range(size.depth))
        self.final = FinalLayer(size.hidden, patch, self.out_channels)
        # REPA (train/repa.py): tokens after block align_depth -> an encoder's feature space.
        if align_features and not 1 <= align_depth <= size.depth:
            raise ValueError(f"align_depth {align_depth} is not a block of 1..{size.depth}")
        self.align_depth = align_depth if align_features else 0
        self.projector = (projector(size.hidden, align_width, align_features)
                          if align_features else None)
        self._initialize(code_init_std)

    def _initialize(self, code_init_std: float) -> None:
        """DiT's: Xavier linears, zero biases, N(0, 0.02) embeddings, adaLN and output zero.
        The code table's rows start at N(0, code_init_std^2): their mean over L positions then
        has std code_init_std / sqrt(L) (0.002 for 0.02 at L = 128, ten times below the
        timestep embedding it is added to)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.out_channels, -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.condition == "code":
            nn.init.normal_(self.code_embedder.table.weight, std=code_init_std)
        elif self.condition == "label":
            nn.init.normal_(self.label_embedder.weight, std=0.02)
        for block in [*self.blocks, self.final]:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def null_codes(self, batch: int, device=None) -> torch.Tensor:
        embedder = self.code_embedder
        return torch.full((batch, embedder.length), embedder.null_token, dtype=torch.long,
                          device=device)

    def null_condition(self, batch: int, device=None) -> dict[str, torch.Tensor]:
        """The unconditional branch of guidance, as forward() keyword arguments."""
        if self.condition == "code":
            return {"codes": self.null_codes(batch, device)}
        if self.condition == "features":
            return {"features": torch.zeros(batch, self.feature_embedder.features,
                                            device=device)}
        return {}

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, grid^2, p*p*C) -> (B, C, grid*p, grid*p)."""
        p, g, c = self.patch, self.grid, self.out_channels
        x = x.view(len(x), g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(len(x), c, g * p, g * p)

    def embed_condition(self, t, codes=None, soft_codes=None, labels=None,
                        features=None) -> torch.Tensor:
        c = self.t_embedder(t)
        if self.condition == "code":
            if (codes is None) == (soft_codes is None):
                raise ValueError("a code-conditioned DiT needs codes or soft_codes (not both)")
            c = c + (self.code_embedder(codes) if codes is not None
                     else self.code_embedder.soft(soft_codes))
        elif self.condition == "features":
            c = c + self.feature_embedder(features)
        elif self.condition == "label":
            c = c + self.label_embedder(labels)
        return c

    def forward(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor | None = None,
                soft_codes: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                features: torch.Tensor | None = None, align: bool = False):
        """The output (B, out_channels, H, W); with `align`, also the projected tokens of block
        align_depth (B, tokens, align_features) for the REPA loss."""
        c = self.embed_condition(t, codes, soft_codes, labels, features)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        aligned = None
        for depth, block in enumerate(self.blocks, start=1):
            if self.grad_checkpointing and self.training:
                tokens = checkpoint(block, tokens, c, use_reentrant=False)
            else:
                tokens = block(tokens, c)
            if align and depth == self.align_depth:
                aligned = self.projector(tokens)
        out = self.unpatchify(self.final(tokens, c))
        if align:
            if aligned is None:
                raise ValueError("align=True needs a DiT built with a projector (align_features)")
            return out, aligned
        return out


def build_dit(cfg: DiTConfig, latent_shape, length: int, vocab: int,
              condition: str = "code", feature_dim: int = 0, align_features: int = 0) -> DiT:
    """The DiT of the params; `align_features` > 0 adds REPA's projector (training only: the
    saved model has none)."""
    channels, side, _ = latent_shape
    repa = cfg.repa if align_features else None
    return DiT(SIZES[cfg.size], side, channels, cfg.patch, cfg.diffusion.learn_sigma,
               condition=condition, code_length=length, code_vocab=vocab,
               feature_dim=feature_dim, code_init_std=cfg.code_init_std,
               align_depth=repa.depth if repa else 0, align_width=repa.width if repa else 0,
               align_features=align_features)


def load_dit(cfg: DiTConfig, run: str | Path, length: int, vocab: int) -> tuple[DiT, dict]:
    """(EMA model, meta) of a train-dit run; fails naming the run or file if it does not fit
    cfg and the code shape L x V."""
    run = Path(run)
    meta = dio.read_json(run / "meta.json")
    check_code_shape(run, meta, length, vocab)
    model = build_dit(cfg, meta["latent_shape"], meta["L"], meta["V"], meta["condition"],
                      meta.get("feature_dim", 0))
    return load_weights(model, run / "model.safetensors", "the dit params"), meta


def condition_inputs(condition: str, codes: torch.Tensor,
                     features: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The DiT's keyword arguments for a batch: its codes, its features, or nothing."""
    if condition == "code":
        return {"codes": codes}
    if condition == "features":
        return {"features": features}
    return {}


def forward_flops(model: DiT, batch: int = 1) -> int:
    """FLOPs of one forward pass (torch.utils.flop_counter), built inputs on the model's device
    (the meta device works: nothing is computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = model.pos_embed.device
    side = model.grid * model.patch
    x = torch.zeros(batch, model.in_channels, side, side, device=device)
    t = torch.zeros(batch, dtype=torch.long, device=device)
    kwargs = {}
    if model.condition == "code":
        kwargs["codes"] = model.null_codes(batch, device)
    elif model.condition == "label":
        kwargs["labels"] = torch.zeros(batch, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x, t, **kwargs)
    return counter.get_total_flops()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def math_flops_per_image(size: DiTSize, tokens: int, patch: int, channels: int) -> float:
    """Closed-form forward FLOPs (2 per multiply-add) of the transformer: per block the
    linears 2 N 12 h^2 and attention 4 N^2 h; the MFU denominators use this."""
    h = size.hidden
    per_block = 2 * tokens * 12 * h * h + 4 * tokens * tokens * h + 2 * h * 6 * h
    embed = 2 * tokens * channels * patch * patch * h
    final = 2 * tokens * h * patch * patch * 2 * channels + 2 * h * 2 * h
    return size.depth * per_block + embed + final + 2 * (256 * h + h * h)


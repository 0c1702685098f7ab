"""The SEM encoder: a timm ViT with register tokens whose summary becomes L simplicial
embeddings (one probability vector over V per position); an image's Discrete Latent Code is the
argmax at each position.

    backbone tokens (pre-final-norm) -> CLS + registers concatenated (R x D)
    -> Linear(R*D -> L*V, no bias) -> LayerNorm(L*V) -> view (L, V) -> softmax(. / tau) over V
    -> Linear(L*V -> D, no bias) -> the backbone's final norm -> DINO head (training only)

The head is three dense ops on (B, L*V): no loop over positions, so L*V = 131072 costs two
matmuls. Patch tokens take the usual path (final norm) and feed the iBOT loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlc.config import SEMConfig
from dlc.models.attention import cpu_bf16
from dlc.train import checkpoint


def code_dtype(vocab: int) -> torch.dtype:
    """The smallest integer type that holds codes in [0, vocab)."""
    if vocab <= 256:
        return torch.uint8
    if vocab <= 65536:
        return torch.uint16
    return torch.int32


class SEMHead(nn.Module):
    """Simplicial embedding: (B, R*D) summary -> (B, L, V) per-position logits -> (B, D)."""

    def __init__(self, in_dim: int, out_dim: int, length: int, vocab: int, norm_eps: float):
        super().__init__()
        self.length, self.vocab = length, vocab
        self.to_logits = nn.Linear(in_dim, length * vocab, bias=False)
        # over the whole L*V vector, not per position
        self.norm = nn.LayerNorm(length * vocab, eps=norm_eps)
        self.from_simplex = nn.Linear(length * vocab, out_dim, bias=False)

    def logits(self, summary: torch.Tensor) -> torch.Tensor:
        return self.norm(self.to_logits(summary)).view(-1, self.length, self.vocab)

    def forward(self, summary: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities (B, L, V), embedding (B, D) before the final norm)."""
        probabilities = torch.softmax(self.logits(summary) / tau, dim=-1)
        return probabilities, self.from_simplex(probabilities.flatten(1))


class DINOHead(nn.Module):
    """MLP -> bottleneck -> L2 normalise -> cosine scores against K unit-norm prototypes."""

    def __init__(self, in_dim: int, prototypes: int, hidden: int, bottleneck: int, layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [bottleneck]
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            blocks.append(nn.Linear(a, b))
            if i < layers - 1:
                blocks.append(nn.GELU())
        self.mlp = nn.Sequential(*blocks)
        # Weight-normalised last layer with the norm fixed at 1 (DINO's norm_last_layer).
        self.prototypes = nn.Parameter(torch.randn(prototypes, bottleneck) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.prototypes, dim=-1))


class SEMEncoder(nn.Module):
    """A ViT backbone with CLS + register tokens, the SEM head, a DINO head (and, for NT-Xent,
    a projection head)."""

    def __init__(self, backbone: nn.Module, length: int, vocab: int, tau: float,
                 norm_eps: float, prototypes: int, hidden: int, bottleneck: int, layers: int,
                 nce_head: bool = False):
        super().__init__()
        if getattr(backbone, "reg_token", None) is None or backbone.cls_token is None:
            raise ValueError("the SEM encoder needs a ViT with a CLS token and register tokens")
        self.backbone = backbone
        self.length, self.vocab, self.tau = length, vocab, tau
        width = backbone.embed_dim
        self.num_prefix = backbone.num_prefix_tokens  # CLS + registers
        self.sem = SEMHead(self.num_prefix * width, width, length, vocab, norm_eps)
        self.dino_head = DINOHead(width, prototypes, hidden, bottleneck, layers)
        self.mask_token = nn.Parameter(torch.zeros(width))  # iBOT: replaces masked patches
        # SimCLR's projection of the summary for NT-Xent (train.ssl.nt_xent), when trained
        # with it; its batch norm spreads the nearly equal summaries of a fresh ViT apart.
        self.nce_head = nn.Sequential(
            nn.Linear(self.num_prefix * width, hidden), nn.BatchNorm1d(hidden), nn.GELU(),
            nn.Linear(hidden, bottleneck)) if nce_head else None

    def tokens(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-final-norm tokens (B, R + N, D); `mask` (B, N) bool swaps patches for the mask
        token before the position embedding (iBOT)."""
        bb = self.backbone
        patches = bb.patch_embed(images)  # (B, H, W, D) with dynamic sizes, else (B, N, D)
        if mask is not None:
            shape = patches.shape
            flat = patches.reshape(shape[0], -1, shape[-1])
            flat = torch.where(mask[..., None], self.mask_token.to(flat.dtype), flat)
            patches = flat.reshape(shape)
        x = bb.norm_pre(bb.patch_drop(bb._pos_embed(patches)))
        # timm's own switch between SDPA and attention written out (see models/attention.py)
        fused = not cpu_bf16(images.device)
        for block in bb.blocks:
            block.attn.fused_attn = fused
        return bb.blocks(x)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None,
                tau: float | None = None) -> dict[str, torch.Tensor]:
        tokens = self.tokens(images, mask)
        summary = tokens[:, :self.num_prefix].flatten(1)
        probabilities, embedding = self.sem(summary, self.tau if tau is None else tau)
        return {
            "probabilities": probabilities,                         # (B, L, V)
            "embedding": self.backbone.norm(embedding),             # (B, D): KoLeo, DINO head
            "patches": self.backbone.norm(tokens[:, self.num_prefix:]),  # (B, N, D): iBOT
            "summary": summary,                                     # (B, R*D)
        }

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """SEM probabilities (B, L, V) at the model's tau."""
        return self.sem(self.tokens(images)[:, :self.num_prefix].flatten(1), self.tau)[0]

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """Discrete Latent Codes (B, L): the argmax at each position."""
        return self._codes(self.tokens(images))

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The continuous features a linear probe of the backbone uses (B, 2D)."""
        return self._features(self.tokens(images))

    @torch.no_grad()
    def codes_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both from one pass through the backbone (what extraction stores)."""
        tokens = self.tokens(images)
        return self._codes(tokens), self._features(tokens)

    def _codes(self, tokens: torch.Tensor) -> torch.Tensor:
        # tau does not matter: the softmax is monotone, so it is skipped. The head runs in
        # fp32 even under autocast, so that near-ties resolve the same way on every device.
        with torch.autocast(tokens.device.type, enabled=False):
            logits = self.sem.logits(tokens[:, :self.num_prefix].flatten(1).float())
        return logits.argmax(-1).to(code_dtype(self.vocab))

    def _features(self, tokens: torch.Tensor) -> torch.Tensor:
        # DINOv2's linear evaluation: the final-normed CLS token and the mean patch token
        normed = self.backbone.norm(tokens)
        return torch.cat([normed[:, 0], normed[:, self.num_prefix:].mean(1)], dim=-1).float()

def conv_stem(channels: int):
    """timm's patch embedding with its one p x p convolution replaced by log2(p) stride-2 3x3
    convolutions (channels, 2 channels, ...) and a 1x1 projection: the convolutional stem of
    Xiao et al. 2021 ("Early convolutions help transformers see better"), which gives a ViT
    trained from scratch the locality prior it lacks: on small data it learns shapes far
    sooner. Same token grid and interface as the patch embedding."""
    from timm.layers import PatchEmbed

    class ConvStem(PatchEmbed):
        def __init__(self, *args, in_chans: int = 3, embed_dim: int = 768, **kwargs):
            super().__init__(*args, in_chans=in_chans, embed_dim=embed_dim, **kwargs)
            patch = self.patch_size[0]
            if patch < 2 or patch & (patch - 1) or self.patch_size[0] != self.patch_size[1]:
                raise ValueError(f"sem.backbone.conv_stem needs a square power-of-two patch "
                                 f"size, got {self.patch_size}")
            layers, width = [], in_chans
            for stage in range(patch.bit_length() - 1):
                layers += [nn.Conv2d(width, channels << stage, 3, stride=2, padding=1),
                           nn.GELU()]
                width = channels << stage
            self.proj = nn.Sequential(*layers, nn.Conv2d(width, embed_dim, 1))

    return ConvStem


def build_backbone(name: str, img_size: int, weights: str | None, drop_path: float,
                   stem_channels: int | None = None, **overrides: int | None) -> nn.Module:
    """A timm ViT with position embeddings resampled for any crop size (multi-crop). With
    `weights` (a local file) it starts from those; overrides that are None keep the model's;
    `stem_channels` swaps the patch projection for a convolutional stem (random init only)."""
    import timm

    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: backbone weights not found (sem.backbone.weights)")
    if stem_channels is not None:
        if weights is not None:
            raise ValueError("sem.backbone: a conv stem has no pretrained weights (weights)")
        kwargs["embed_layer"] = conv_stem(stem_channels)
    try:
        return timm.create_model(
            name, pretrained=weights is not None, num_classes=0, img_size=img_size,
            dynamic_img_size=True, drop_path_rate=drop_path,
            pretrained_cfg_overlay={"file": str(weights)} if weights else None, **kwargs)
    except RuntimeError as error:  # timm's message for an unknown name
        raise ValueError(f"sem.backbone: {error}") from None


def build_encoder(cfg: SEMConfig, pretrained: bool = True) -> SEMEncoder:
    """The SEM encoder of these params (backbone weights from the local file if one is set
    and `pretrained`; later stages load a trained encoder.safetensors over it instead)."""
    b = cfg.backbone
    backbone = build_backbone(b.name, b.img_size, b.weights if pretrained else None,
                              drop_path=b.drop_path, stem_channels=b.conv_stem,
                              patch_size=b.patch_size,
                              embed_dim=b.embed_dim, depth=b.depth, num_heads=b.num_heads,
                              reg_tokens=b.reg_tokens)
    h = cfg.head
    return SEMEncoder(backbone, cfg.length, cfg.vocab, cfg.tau, cfg.norm_eps, h.prototypes,
                      h.hidden, h.bottleneck, h.layers, nce_head=cfg.loss.nce_weight > 0)


def load_encoder(cfg: SEMConfig, path: str | Path) -> SEMEncoder:
    """A trained encoder (teacher weights); fails naming the file if it does not fit cfg."""
    path = Path(path)
    if not path.is_file():  # checked first: building the paper's encoder takes a while
        raise FileNotFoundError(f"{path}: encoder weights not found (run `dlc train-sem`)")
    return checkpoint.load_weights(build_encoder(cfg, pretrained=False), path, "the sem params")

"""Representation alignment (REPA, Yu et al. 2025) for the DiT: the tokens after one early block,
through a small MLP (the projector, models/dit.py), are pulled toward a frozen encoder's patch
features of the clean image:

    loss_align = -mean over images and tokens of cos(projector(h_depth), y),   y: encoder patches

added to the diffusion loss with a weight. The targets here are the SEM encoder's own patch
tokens (final-normed), pooled to the DiT's token grid. At high noise x_t says almost nothing
about the image, so matching y there can only come from the condition: the code pathway gets a
dense, well-scaled signal that the epsilon MSE (tiny at high noise) does not give it.

The targets depend on the image alone (the latent cache froze each image's flip), so they are
computed once per run, in the order of the latent cache, and held in memory as float16.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def pool_to_grid(patches: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, side^2, D) row-major patch tokens -> (B, grid^2, D) by area averaging (the DiT's
    token grid; patch-2 DiT-XL on 32x32 latents and ViT-L/14 at 224 both have 16x16)."""
    batch, tokens, dim = patches.shape
    side = round(tokens ** 0.5)
    if side * side != tokens:
        raise ValueError(f"{tokens} patch tokens do not form a square grid")
    if side == grid:
        return patches
    image = patches.transpose(1, 2).reshape(batch, dim, side, side)
    return F.adaptive_avg_pool2d(image, grid).flatten(2).transpose(1, 2)


def alignment_loss(projected: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-cos(projected, target) averaged over tokens, per image (B,)."""
    return -F.cosine_similarity(projected.float(), targets.float(), dim=-1).mean(dim=1)


@torch.no_grad()
def encoder_targets(encoder, loader, grid: int, autocast, device) -> torch.Tensor:
    """(N, grid^2, D) float16 pooled patch features of every image the loader yields, in its
    order; the loader gives (normalised images, positions, ids, unreadable) batches
    (data/images.collate_skipping) and no image may be unreadable: each is a training pair."""
    encoder.eval()
    parts = []
    for images, _, _, bad in tqdm(loader, desc="repa targets", mininterval=5):
        if bad:
            raise ValueError(f"unreadable training images for the alignment targets: {bad[:3]}")
        with autocast:
            patches = encoder(torch.from_numpy(images).to(device))["patches"]
        parts.append(pool_to_grid(patches.float(), grid).half().cpu())
    targets = torch.cat(parts)
    log.info("alignment targets %s (%.0f MB)", tuple(targets.shape),
             targets.numel() * 2 / 2 ** 20)
    return targets

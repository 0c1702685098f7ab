"""Object paste: a view whose object is lifted from its image and pasted, in a new colour, at a
new position and scale, onto a new random background (background augmentation, Ryali et al.
2021; copy-paste, Ghiasi et al. 2021).

Why: on the shapes data colour, background, texture, size and position tell two crops of one
image apart from every other image in a batch, so self-distillation learns those and never the
outline (measured in docs/sem_tiny_study.md; the feature suppression of Chen et al. 2021). Two
pasted views of an image share only the outline, which the encoder then has to learn.

The object is found without labels: the pixels brighter than any background. The shapes
generator draws dark backgrounds (at most 140 in every channel, texture included) and bright
shapes (at least 180 in some channel), so `foreground` = [140, 180] ramps the object's alpha
over that gap and keeps the anti-aliased edge. The transform is for data made that way; the
imagenet preset leaves it off.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TEXTURE_LIFT = 0.18         # the lighter shade of a textured background
TEXTURE_PERIODS = (2, 6)    # stripe / checker period in pixels, [low, high)


def foreground_alpha(image: torch.Tensor, foreground: tuple[float, float]) -> torch.Tensor:
    """uint8 (3, H, W) -> float (1, H, W): 0 at or below foreground[0], 1 from foreground[1]."""
    low, high = foreground
    brightest = image.amax(0, keepdim=True).float()
    return ((brightest - low) / (high - low)).clamp(0, 1)


def random_background(size: int, brightest: float) -> torch.Tensor:
    """float (3, size, size): a dark colour, plain, striped or checkered, no channel above
    `brightest` (of 1)."""
    colour = torch.rand(3, 1, 1) * (brightest - TEXTURE_LIFT)
    period = int(torch.randint(*TEXTURE_PERIODS, ()).item())
    texture = int(torch.randint(3, ()).item())  # plain, striped, checkered
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    if texture == 0:
        return colour.expand(3, size, size)
    if texture == 1:
        pattern = ((rows + cols) // period) % 2 == 1
    else:
        pattern = ((rows // period) + (cols // period)) % 2 == 1
    return colour + TEXTURE_LIFT * pattern.float()


def random_colour(darkest: float) -> torch.Tensor:
    """float (3, 1, 1): a colour whose brightest channel is between `darkest` and 1."""
    colour = torch.rand(3, 1, 1) * 0.8 + 0.2
    return colour / colour.amax() * (darkest + (1 - darkest) * torch.rand(()))


def move_alpha(alpha: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """(1, H, W) -> the same object scaled by a log-uniform factor in `scale` and centred on a
    uniform point. The object's size is taken as the radius of the disc of its area: the factor
    is cut so that this disc stays within 0.9 of the half side, and the centre drawn so that the
    disc stays inside the frame (the points of a star or a cross may still reach its edge)."""
    side = alpha.shape[-1]
    area = alpha.sum()
    grid = torch.linspace(-1, 1, side)
    centre = torch.stack([(alpha[0] * grid[None, :]).sum(), (alpha[0] * grid[:, None]).sum()])
    centre = centre / area
    radius = math.sqrt(area.item() / math.pi) * 2 / side         # in [-1, 1] units
    factor = math.exp(torch.empty(()).uniform_(math.log(scale[0]), math.log(scale[1])).item())
    factor = min(factor, 0.9 / max(radius, 1e-6))
    room = max(0.95 - radius * factor, 0.0)
    target = (torch.rand(2) * 2 - 1) * room
    # affine_grid maps output coordinates to input ones: input = output / factor + shift.
    theta = torch.zeros(1, 2, 3)
    theta[0, 0, 0] = theta[0, 1, 1] = 1 / factor
    theta[0, :, 2] = centre - target / factor
    sampling = F.affine_grid(theta, [1, 1, side, side], align_corners=True)
    return F.grid_sample(alpha[None], sampling, align_corners=True)[0]


class ObjectPaste(nn.Module):
    """uint8 (3, H, W) -> uint8 (3, H, W): with probability p, the object recoloured, moved and
    rescaled onto a new background; unchanged with 1 - p or when no pixel is foreground."""

    def __init__(self, p: float, foreground: tuple[float, float], scale: tuple[float, float]):
        super().__init__()
        self.p, self.foreground, self.scale = p, tuple(foreground), tuple(scale)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.p == 0:
            return image
        if image.shape[-1] != image.shape[-2]:  # checked before the draw: fails on every call
            raise ValueError(f"object paste needs square images, got {tuple(image.shape)}")
        if torch.rand(()) >= self.p:
            return image
        alpha = foreground_alpha(image, self.foreground)
        if alpha.sum() < 1:  # no object: nothing to paste
            return image
        alpha = move_alpha(alpha, self.scale)
        # The new view keeps the contract it was segmented by: background below, object above.
        low, high = (value / 255 for value in self.foreground)
        pasted = torch.lerp(random_background(image.shape[-1], low), random_colour(high), alpha)
        return (pasted * 255).round().clamp(0, 255).to(torch.uint8)

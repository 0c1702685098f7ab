"""Remedies tried against the shape suppression the probe measures (its shape target), each a
patch of the train-sem stage held for one run of the tiny preset: train, extract the codes,
probe them (`sem_probe_sweep.sweep_one`); one JSON row per remedy. None of them is part of the
product: they are measured negative results, kept so that every number of docs/sem_tiny_study.md
can be rerun, on the dataset or at another scale (`--set sem.train.batch_size=1024 ...` on a GPU).

    .venv/bin/python research/sem/sem_remedies.py --remedies colour_all standardise+koleo_queue \\
        --set sem.train.threads=1

`--help` lists the remedies; docs/sem_tiny_study.md ("Remedies that did not lift it") gives
their numbers.
Needs the shapes table of `dlc data`. The plain render is `sem_shortcuts.py`'s `plain` variant.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from sem_probe_sweep import add_common_arguments, append_row, overridden, sweep_one
from sem_shortcuts import VARIANTS, write_variant
from torch import nn
from torchvision.transforms import v2

from dlc.config import PresetConfig
from dlc.data import multicrop
from dlc.data.sources import ImageTable
from dlc.models import sem
from dlc.stages import extract_codes, train_sem
from dlc.train import checkpoint, ssl


@dataclasses.dataclass
class Run:
    """What a remedy may need besides the patches: the run's config, tables and folders."""
    cfg: PresetConfig      # the preset with the overrides
    images: Path           # the shapes table
    work: Path             # every remedy's folder's parent
    name: str              # this run's folder under work

    def plain_table(self) -> Path:
        """The plain render of `images`, drawn once and shared by every remedy under work."""
        path = self.work / "plain_render" / "images.parquet"
        return path if path.is_file() else write_variant(self.images, VARIANTS["plain"], path)


# --------------------------------------------------------------------------------------------
# Augmentations
# --------------------------------------------------------------------------------------------
ViewChange = Callable[[v2.Compose], v2.Compose]


def _patch_views(stack, local: ViewChange | None = None,
                 global_: ViewChange | None = None) -> None:
    """Change MultiCrop's local view and/or each of its global views as it is built."""
    original = multicrop.MultiCrop.__init__

    def init(self, cfg):
        original(self, cfg)
        if local is not None:
            self.local = local(self.local)
        if global_ is not None:
            self.globals = [global_(view) for view in self.globals]

    stack.enter_context(mock.patch.object(multicrop.MultiCrop, "__init__", init))


def _before_normalisation(make: Callable[[], Callable]) -> ViewChange:
    """A view with a new transform from make() inserted before its normalisation (the last)."""
    def change(view: v2.Compose) -> v2.Compose:
        steps = list(view.transforms)
        return v2.Compose(steps[:-1] + [make(), steps[-1]])
    return change


def _with_crop(make: Callable[[], Callable]) -> ViewChange:
    """A view with its RandomResizedCrop replaced by make()."""
    def change(view: v2.Compose) -> v2.Compose:
        return v2.Compose([make() if isinstance(step, v2.RandomResizedCrop) else step
                           for step in view.transforms])
    return change


def _randomise_colours(stack: contextlib.ExitStack, locals_only: bool, blur: bool) -> None:
    """Insert a colour randomiser before each chosen view's normalisation."""
    extra = [v2.GaussianBlur(7, sigma=(1.0, 2.0))] if blur else []
    randomised = _before_normalisation(lambda: v2.RandomApply(
        [v2.RandomChannelPermutation(), v2.ColorJitter(hue=0.5), *extra], p=1.0))
    _patch_views(stack, local=randomised, global_=None if locals_only else randomised)


def colour_locals(stack, run: Run) -> None:
    """RGB channel permutation and any hue on the local crops."""
    _randomise_colours(stack, locals_only=True, blur=False)


def colour_all(stack, run: Run) -> None:
    """The same on every crop."""
    _randomise_colours(stack, locals_only=False, blur=False)


def colour_all_blur(stack, run: Run) -> None:
    """The same and a Gaussian blur (sigma 1-2, against the textures) on every crop."""
    _randomise_colours(stack, locals_only=False, blur=True)


class ScramblePalette(nn.Module):
    """uint8 (3, H, W) -> the same with each channel of a random permutation inverted with
    probability 1/2 and raised to a random power in [1/2, 2]: every view gets its own palette,
    so that no colour or brightness is shared between two views of an image; edges are."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        channels = image[torch.randperm(3)].float() / 255
        inverted = torch.rand(3, 1, 1) < 0.5
        channels = torch.where(inverted, 1 - channels, channels)
        gamma = torch.exp((torch.rand(3, 1, 1) * 2 - 1) * np.log(2.0))
        return (channels ** gamma * 255).round().to(torch.uint8)


def palette_scramble(stack, run: Run) -> None:
    """A random palette per crop: channels permuted, inverted and gamma-mapped independently.

    Colour, background colour and brightness are then never shared between two views."""
    scrambled = _before_normalisation(ScramblePalette)
    _patch_views(stack, local=scrambled, global_=scrambled)


class ObjectCrop(nn.Module):
    """A RandomResizedCrop (square, same scale range) centred on a random point of the object.

    The object proposal knows only that every background of `shapes` is dark: the pixels with a
    channel above `threshold` (backgrounds reach 140, the darkest shape colour 180). The crop's
    centre is the proposal's centroid moved by up to `jitter` times its radius (1: the crop may
    show only a part of the outline); an image without a proposal gets a plain random crop."""

    def __init__(self, size: int, scale: list[float], jitter: float = 1.0,
                 threshold: int = 160):
        super().__init__()
        self.size, self.scale, self.jitter, self.threshold = size, scale, jitter, threshold
        self.fallback = v2.RandomResizedCrop(size, scale=tuple(scale), antialias=True,
                                             interpolation=v2.InterpolationMode.BICUBIC)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        rows, cols = torch.nonzero(image.amax(0) > self.threshold, as_tuple=True)
        if len(rows) == 0:
            return self.fallback(image)
        radius = (len(rows) / np.pi) ** 0.5
        low, high = self.scale
        side = int(round((height * width * (low + (high - low) * torch.rand(()).item())) ** 0.5))
        side = max(1, min(side, height, width))
        centre = (torch.stack([rows.float().mean(), cols.float().mean()])
                  + (torch.rand(2) * 2 - 1) * self.jitter * radius)
        top = int((centre[0] - side / 2).round().clamp(0, height - side))
        left = int((centre[1] - side / 2).round().clamp(0, width - side))
        return v2.functional.resized_crop(image, top, left, side, side, [self.size, self.size],
                                          interpolation=v2.InterpolationMode.BICUBIC,
                                          antialias=True)


def object_locals(stack, run: Run) -> None:
    """Local crops around an object proposal (object-aware cropping, Mishra et al. 2022).

    Random 16-px local crops mostly show background, so matching them to the global crops
    teaches background and texture; these show a part of the shape and its colour."""
    crops = run.cfg.sem.crops
    _patch_views(stack, local=_with_crop(lambda: ObjectCrop(crops.local_size,
                                                             crops.local_scale)))


def object_globals(stack, run: Run) -> None:
    """Global crops around the object proposal too, zoomed in: 1/4 to all of the image.

    The shape then fills more of each global view than the background does, as it does in
    the plain render, where self-distillation learns shape."""
    size = run.cfg.sem.crops.global_size
    _patch_views(stack, global_=_with_crop(lambda: ObjectCrop(size, [0.25, 1.0], jitter=0.3)))


class Standardise(nn.Module):
    """float (..., 3, H, W) -> each image less its mean colour, over its standard deviation."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        centred = image - image.mean((-2, -1), keepdim=True)
        return centred / (centred.pow(2).mean((-3, -2, -1), keepdim=True).sqrt() + 1e-3)


def standardise(stack, run: Run) -> None:
    """Every image (training crops and extraction alike) less its mean colour, over its std.

    The background fills most of an image, so its colour sets most of the pixels' variance,
    and a random encoder's features follow it; standardised, the object's contrast leads."""
    def normalize() -> v2.Transform:
        return v2.Compose([v2.ToDtype(torch.float32, scale=True), Standardise()])

    stack.enter_context(mock.patch.object(multicrop, "normalize", normalize))
    stack.enter_context(mock.patch.object(extract_codes, "normalize", normalize))


# --------------------------------------------------------------------------------------------
# Extra loss terms: a module added to the encoder (so that the optimizer, the EMA teacher and
# the saved weights carry it) and a term added to train_sem's loss
# --------------------------------------------------------------------------------------------
def _add_module(stack, name: str, make: Callable[[int], nn.Module]) -> None:
    original = sem.SEMEncoder.__init__

    def init(self, backbone, *args, **kwargs):
        original(self, backbone, *args, **kwargs)
        setattr(self, name, make(backbone.embed_dim))

    stack.enter_context(mock.patch.object(sem.SEMEncoder, "__init__", init))


def _add_loss_term(stack, name: str, weight: float, term: Callable) -> None:
    """term(cfg, encoder, teacher, global_crops, student_out, temps) is added to the loss:
    `encoder` is the student's, `student_out` its output of this step (MultiView's dict)."""
    original = train_sem._loss

    def loss(cfg, student, teacher, global_crops, local_crops, centers, temps, draws):
        captured = {}

        def student_capturing(*args, **kwargs):
            captured.update(student(*args, **kwargs))
            return captured

        terms = original(cfg, student_capturing, teacher, global_crops, local_crops, centers,
                         temps, draws)
        encoder = getattr(student, "module", student).encoder  # under DDP too
        terms[name] = term(cfg, encoder, teacher, global_crops, captured, temps)
        terms["loss"] = terms["loss"] + weight * terms[name]
        return terms

    stack.enter_context(mock.patch.object(train_sem, "_loss", loss))


def colour_head(stack, run: Run) -> None:
    """colour_locals + a second DINO head between the global crops, which keep their colours.

    The head has its own prototypes and centre."""
    _randomise_colours(stack, locals_only=True, blur=False)
    h = run.cfg.sem.head
    _add_module(stack, "colour_head",
                lambda width: sem.DINOHead(width, h.prototypes, h.hidden, h.bottleneck, h.layers))
    state: dict[str, torch.Tensor] = {}  # the centre, made on the first step's device

    def term(cfg, encoder, teacher, global_crops, student_out, temps):
        with torch.no_grad():
            logits = teacher.colour_head(teacher(global_crops)["embedding"])
            if "center" not in state:
                state["center"] = torch.zeros(h.prototypes, device=logits.device)
            targets = train_sem._teacher_targets(cfg, logits, state["center"],
                                                 temps["teacher_temp"])
        student_logits = encoder.colour_head(student_out["embedding"])
        return ssl.dino_loss(list(student_logits.chunk(2)), list(targets.chunk(2)),
                             cfg.head.student_temp)

    _add_loss_term(stack, "colour", 1.0, term)


def _info_nce(queries: torch.Tensor, keys: torch.Tensor, negatives: torch.Tensor,
              temperature: float) -> torch.Tensor:
    """InfoNCE of the student's normalised embeddings of both global crops (2B, D, crop-major)
    against the teacher's (keys): positive, the key of the image's other crop; negatives, the
    keys of the batch's other images and `negatives` (M, D)."""
    batch = len(keys) // 2
    positive = (queries * torch.cat([keys[batch:], keys[:batch]])).sum(-1, keepdim=True)
    image = torch.arange(2 * batch, device=keys.device) % batch
    in_batch = (queries @ keys.T).masked_fill(image[:, None] == image[None, :], -torch.inf)
    logits = torch.cat([positive, in_batch, queries @ negatives.T], 1) / temperature
    return F.cross_entropy(logits, logits.new_zeros(len(logits), dtype=torch.long))


def infonce(stack, run: Run, weight: float = 1.0, queue_size: int = 4096,
            temperature: float = 0.2) -> None:
    """MoCo-style InfoNCE on the SEM embedding, weight 1, a queue of 4,096 teacher keys.

    Query: the student's embedding of a global crop; positive: the teacher's of the other
    global crop; negatives: the batch's other keys and a FIFO queue of teacher keys, so that
    many negatives share every cheap attribute."""
    queue: list[torch.Tensor] = []

    def term(cfg, encoder, teacher, global_crops, student_out, temps):
        with torch.no_grad():
            keys = F.normalize(teacher(global_crops)["embedding"].float(), dim=-1)
        queries = F.normalize(student_out["embedding"].float(), dim=-1)
        old = queue[0] if queue else keys.new_zeros(0, keys.shape[1])
        queue[:] = [torch.cat([keys, *queue])[:queue_size]]
        return _info_nce(queries, keys, old, temperature)

    _add_loss_term(stack, "nce", weight, term)


def shuffle_patches(images: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, C, H, W) -> each image cut into grid x grid tiles, put back in a random order."""
    batch, channels, height, width = images.shape
    tile_h, tile_w = height // grid, width // grid
    tiles = images.unfold(2, tile_h, tile_h).unfold(3, tile_w, tile_w)   # B C g g th tw
    tiles = tiles.reshape(batch, channels, grid * grid, tile_h, tile_w)
    order = torch.rand(batch, grid * grid, device=images.device).argsort(1)
    tiles = tiles[torch.arange(batch, device=images.device)[:, None], :, order]  # B g*g C ..
    tiles = tiles.reshape(batch, grid, grid, channels, tile_h, tile_w)
    return tiles.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def shuffled_negatives(stack, run: Run, weight: float = 1.0, grid: int = 4,
                       temperature: float = 0.2) -> None:
    """+ InfoNCE with the images' own tile-shuffled crops among the negatives (Ge et al. 2021).

    Query: the student's embedding of a global crop; positive: the teacher's of the other
    global crop; negatives: the teacher's of the batch's other images and of every image's
    second global crop cut into 4 x 4 tiles and shuffled. A shuffled crop keeps its colours,
    background and texture and loses its outline, so only the outline tells it from the
    positive."""
    def term(cfg, encoder, teacher, global_crops, student_out, temps):
        with torch.no_grad():
            keys = F.normalize(teacher(global_crops)["embedding"].float(), dim=-1)
            shuffled = shuffle_patches(global_crops[len(global_crops) // 2:], grid)
            shuffled_keys = F.normalize(teacher(shuffled)["embedding"].float(), dim=-1)
        queries = F.normalize(student_out["embedding"].float(), dim=-1)
        return _info_nce(queries, keys, shuffled_keys, temperature)

    _add_loss_term(stack, "shuffled", weight, term)


def koleo_queue(stack, run: Run, queue_size: int = 4096) -> None:
    """KoLeo's nearest neighbour sought among a queue of 4,096 past embeddings too.

    On the plain render KoLeo alone teaches shape (without it the probe stays at random
    weights' level); on the dataset a batch's nearest neighbours differ in colour, background
    or texture, which spreads them. Among 4,096 past images many share every cheap attribute,
    and only shape, size or position can spread those."""
    queue: list[torch.Tensor] = []
    this_step: list[torch.Tensor] = []  # the step's first global crops, queued after both

    def koleo(embeddings: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        x = F.normalize(embeddings.float(), dim=-1, eps=eps)
        distances = torch.cdist(x, x) + torch.eye(len(x), device=x.device) * 1e9
        if queue:
            distances = torch.cat([distances, torch.cdist(x, queue[0])], 1)
        this_step.append(x.detach())
        if len(this_step) == 2:  # train_sem calls it once per global crop
            queue[:] = [torch.cat([*this_step, *queue])[:queue_size]]
            this_step.clear()
        return -torch.log(distances.min(-1).values + eps).mean()

    stack.enter_context(mock.patch.object(ssl, "koleo_loss", koleo))


class PixelDecoder(nn.Module):
    """(B, D) -> (B, 3, size, size): a linear map to 128 x (size/8) x (size/8), then three
    (upsample x2, 3x3 conv, GELU) stages and a 1x1 convolution to RGB."""

    def __init__(self, width: int, size: int = 32):
        super().__init__()
        self.base = size // 8
        self.fc = nn.Linear(width, 128 * self.base ** 2)
        layers, channels = [], 128
        for out in (96, 64, 32):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(channels, out, 3, padding=1), nn.GELU()]
            channels = out
        self.convs = nn.Sequential(*layers, nn.Conv2d(channels, 3, 1))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.convs(self.fc(embedding).view(-1, 128, self.base, self.base))


def reconstruction(stack, run: Run, weight: float = 1.0) -> None:
    """Each student global crop's pixels decoded from its SEM embedding (MSE, weight 1).

    The student saw the crop with its iBOT mask; the target is the whole crop."""
    _add_module(stack, "pixel_decoder",
                lambda width: PixelDecoder(width, run.cfg.sem.crops.global_size))

    def term(cfg, encoder, teacher, global_crops, student_out, temps):
        decoded = encoder.pixel_decoder(student_out["embedding"])
        return F.mse_loss(decoded, global_crops)

    _add_loss_term(stack, "recon", weight, term)


def vicreg(stack, run: Run, weight: float = 0.2, dim: int = 512) -> None:
    """VICReg (Bardes et al. 2022) between the two global crops, weight 0.2.

    Its invariance (25), variance (25) and covariance (1) terms on an expander of the two
    student global crops' SEM embeddings."""
    def expander(width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(width, dim), nn.BatchNorm1d(dim), nn.ReLU(),
                             nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(),
                             nn.Linear(dim, dim))

    def variance(x):
        return F.relu(1 - torch.sqrt(x.var(0) + 1e-4)).mean()

    def covariance(x):
        x = x - x.mean(0)
        c = x.T @ x / (len(x) - 1)
        return (c - torch.diag(torch.diag(c))).pow(2).sum() / x.shape[1]

    _add_module(stack, "expander", expander)

    def term(cfg, encoder, teacher, global_crops, student_out, temps):
        a, b = encoder.expander(student_out["embedding"]).chunk(2)
        return (25 * F.mse_loss(a, b) + 25 * (variance(a) + variance(b)) / 2
                + covariance(a) + covariance(b))

    _add_loss_term(stack, "vicreg", weight, term)


def rotation(stack, run: Run, weight: float = 1.0) -> None:
    """+ RotNet (Gidaris et al. 2018): each image's rotation by k x 90 deg predicted from its codes.

    The first global crop of each image, turned by a k drawn per image, goes through the student
    once more; a linear head on its SEM embedding predicts k (cross-entropy). Colour, background
    and position do not turn with the image; the outline of a triangle, star or hexagon does."""
    _add_module(stack, "rotation_head", lambda width: nn.Linear(width, 4))

    def term(cfg, encoder, teacher, global_crops, student_out, temps):
        upright = global_crops[:len(global_crops) // 2]
        turns = torch.randint(4, (len(upright),), device=upright.device)  # seeded per step
        turned = torch.stack([torch.rot90(upright, k, dims=(2, 3)) for k in range(4)], 1)
        turned = turned[torch.arange(len(upright), device=upright.device), turns]
        return F.cross_entropy(encoder.rotation_head(encoder(turned)["embedding"]).float(),
                               turns)

    _add_loss_term(stack, "rotation", weight, term)


def masked_pixels(stack, run: Run, weight: float = 1.0) -> None:
    """+ SimMIM/MAE: the pixels of iBOT's masked patches predicted from the student's tokens.

    A linear map from each masked patch token to its p x p x 3 pixels, MSE against the
    per-patch normalised pixels (MAE's norm_pix): the mean colour of a patch is given away,
    its edges (texture and shape outlines) are not."""
    if run.cfg.sem.loss.ibot_weight == 0:
        raise SystemExit("masked_pixels predicts iBOT's masked patches: "
                         "it needs sem.loss.ibot_weight > 0")
    patch = run.cfg.sem.backbone.patch_size
    _add_module(stack, "pixel_head", lambda width: nn.Linear(width, 3 * patch * patch))
    student_tokens: dict[str, torch.Tensor] = {}
    original_forward = sem.SEMEncoder.forward

    def forward(self, images, mask=None, tau=None):
        out = original_forward(self, images, mask, tau)
        if mask is not None:  # the student's masked global crops
            student_tokens.update(patches=out["patches"], mask=mask)
        return out

    stack.enter_context(mock.patch.object(sem.SEMEncoder, "forward", forward))

    def term(cfg, encoder, teacher, global_crops, student_out, temps):
        pixels = F.unfold(global_crops, patch, stride=patch).transpose(1, 2)  # (B, N, 3pp)
        pixels = (pixels - pixels.mean(-1, keepdim=True)) / (
            pixels.var(-1, keepdim=True) + 1e-6).sqrt()
        mask = student_tokens["mask"]
        predicted = encoder.pixel_head(student_tokens["patches"][mask])
        return F.mse_loss(predicted, pixels[mask])

    _add_loss_term(stack, "pixels", weight, term)


def sinkhorn_queue(stack, run: Run, queue_size: int = 4096) -> None:
    """Sinkhorn-Knopp over the batch and a queue of 4,096 past teacher logits (SwAV's queue).

    The equipartition then spans thousands of images, so many share every cheap attribute and
    must be split by something else."""
    if run.cfg.sem.head.centering != "sinkhorn":
        raise SystemExit("sinkhorn_queue needs --set sem.head.centering=sinkhorn")
    queue: list[torch.Tensor] = []
    dino_center: list[torch.Tensor] = []  # tells the DINO targets from iBOT's
    original_loss, original_targets = train_sem._loss, train_sem._teacher_targets

    def loss(cfg, student, teacher, global_crops, local_crops, centers, *args):
        dino_center[:] = [centers["dino"]]
        return original_loss(cfg, student, teacher, global_crops, local_crops, centers, *args)

    def targets(cfg, logits, center, temp):
        if center is not dino_center[0]:
            return original_targets(cfg, logits, center, temp)
        rows = torch.cat([logits.float(), *queue])
        queue[:] = [rows[:queue_size]]
        return original_targets(cfg, rows, center, temp)[:len(logits)]

    stack.enter_context(mock.patch.object(train_sem, "_loss", loss))
    stack.enter_context(mock.patch.object(train_sem, "_teacher_targets", targets))


def block_mask(batch: int, patches: int, mask_prob: float, ratio: tuple[float, float],
               generator: torch.Generator | None = None) -> torch.Tensor:
    """random_patch_mask's contract with DINOv2's blocks: rectangles (area drawn between 4
    patches and what is left to mask, aspect ratio log-uniform in [0.3, 1/0.3]) added until the
    image's count is reached."""
    side = int(round(patches ** 0.5))
    draws = torch.rand(batch, 2, generator=generator).tolist()
    mask = torch.zeros(batch, side, side, dtype=torch.bool)
    for image, (chosen, fraction) in enumerate(draws):
        if chosen >= mask_prob:
            continue
        target = round((ratio[0] + (ratio[1] - ratio[0]) * fraction) * patches)
        for _ in range(100):  # DINOv2 also gives up after a fixed number of tries
            if mask[image].sum() >= target:
                break
            area, log_aspect, top, left = torch.rand(4, generator=generator).tolist()
            area = 4 + area * (target - mask[image].sum().item() - 4)
            aspect = np.exp((2 * log_aspect - 1) * np.log(1 / 0.3))
            height = int(min(side, max(1, round((area * aspect) ** 0.5))))
            width = int(min(side, max(1, round((area / aspect) ** 0.5))))
            top, left = int(top * (side - height + 1)), int(left * (side - width + 1))
            mask[image, top:top + height, left:left + width] = True
    return mask.flatten(1)


def block_masking(stack, run: Run) -> None:
    """iBOT's masks drawn as DINOv2's blocks instead of uniform patches.

    A masked block can cover a whole part of the outline: the student's tokens there must be
    inferred from the rest of the shape, not from the neighbouring patches."""
    if run.cfg.sem.loss.ibot_weight == 0:
        raise SystemExit("block_masking draws iBOT's masks: it needs sem.loss.ibot_weight > 0")
    stack.enter_context(mock.patch.object(ssl, "random_patch_mask", block_mask))


# --------------------------------------------------------------------------------------------
# What the crops are taken from
# --------------------------------------------------------------------------------------------
def _patch_samples(stack, sample: Callable) -> None:
    """sample(dataset, k) replaces MultiCropDataset's item k (drawing its crops under
    `dataset.seeded(k)`, as the original does)."""
    stack.enter_context(mock.patch.object(multicrop.MultiCropDataset, "__getitem__", sample))


def _plain_images(run: Run) -> Callable[[multicrop.MultiCropDataset], ImageTable]:
    plain_path = run.plain_table()
    tables: dict[str, ImageTable] = {}

    def plain(dataset) -> ImageTable:
        if dataset.table.split not in tables:
            table = ImageTable(plain_path, dataset.table.split)
            if not table.frame["image_id"].equals(dataset.table.frame["image_id"]):
                raise ValueError(f"{plain_path}: rows differ from {dataset.table.path}")
            tables[dataset.table.split] = table
        return tables[dataset.table.split]

    return plain


def silhouette(stack, run: Run) -> None:
    """Global crop 1 and the locals from the image, global crop 2 from its plain render."""
    plain = _plain_images(run)

    def sample(dataset, k):
        i = dataset.image_index(k)
        image, render = dataset.table.raw(i), plain(dataset).raw(i)
        views = dataset.crop
        with dataset.seeded(k):
            globals_ = torch.stack([views.globals[0](image), views.globals[1](render)])
            return globals_, torch.stack([views.local(image) for _ in range(views.local_crops)])

    _patch_samples(stack, sample)


def plain_mix(stack, run: Run) -> None:
    """Each sample, all its crops, from the plain render with probability 1/2."""
    plain = _plain_images(run)

    def sample(dataset, k):
        i = dataset.image_index(k)
        image, render = dataset.table.raw(i), plain(dataset).raw(i)
        with dataset.seeded(k):
            return dataset.crop(render if torch.rand(()) < 0.5 else image)

    _patch_samples(stack, sample)


def group_batches(stack, run: Run) -> None:
    """(Oracle) each batch from one (colour, background, texture) group of the split.

    Step s's group is chosen by (seed, s), every image of it uniformly within the group, so
    that only shape, size and position vary inside a batch."""
    batch_size = run.cfg.sem.train.batch_size
    groups: list[np.ndarray] = []

    def sample(dataset, k):
        if not groups:
            frame = dataset.table.frame
            keys = (frame["colour"] + "/" + frame["background"] + "/" + frame["texture"]).values
            groups.extend(np.flatnonzero(keys == key) for key in sorted(set(keys)))
        step = k // batch_size
        group = groups[np.random.default_rng([dataset.seed, step]).integers(len(groups))]
        i = int(group[np.random.default_rng([dataset.seed, k, 1]).integers(len(group))])
        image = dataset.table.raw(i)
        with dataset.seeded(k):
            return dataset.crop(image)

    _patch_samples(stack, sample)


def plain_init(stack, run: Run) -> None:
    """Student and teacher start from an encoder trained on the plain renders.

    That encoder is the preset's, trained the same steps on the plain renders first."""
    encoder_path = run.work / run.name / "plain_sem" / "encoder.safetensors"
    if not encoder_path.is_file():
        train_sem.train(run.cfg.sem, run.plain_table(), encoder_path.parent)
    original = train_sem.build_encoder

    def build(cfg, pretrained=True):
        encoder = original(cfg, pretrained)
        return checkpoint.load_weights(encoder, encoder_path, "plain") if pretrained else encoder

    stack.enter_context(mock.patch.object(train_sem, "build_encoder", build))


def student_weights(stack, run: Run) -> None:
    """(Diagnostic) the student's final weights are the encoder, not the EMA teacher's.

    With the teacher momentum ending at 1, a short run's teacher stops following the student
    some way before the end: this measures what the student knows by then."""
    student: dict[str, nn.Module] = {}
    original_update, original_write = train_sem.update_ema, train_sem._write_outputs

    def update(teacher, encoder, momentum):
        student["encoder"] = encoder
        return original_update(teacher, encoder, momentum)

    def write(cfg, out_dir, teacher, *args):
        return original_write(cfg, out_dir, student["encoder"], *args)

    stack.enter_context(mock.patch.object(train_sem, "update_ema", update))
    stack.enter_context(mock.patch.object(train_sem, "_write_outputs", write))


def sem_head_without_norm(head: sem.SEMHead, summary: torch.Tensor, tau: float):
    """SEMHead.forward with its LayerNorm over L*V left out."""
    logits = head.to_logits(summary).view(-1, head.length, head.vocab)
    probabilities = torch.softmax(logits / tau, dim=-1)
    return probabilities, head.from_simplex(probabilities.flatten(1))


def sem_norm_off(stack, run: Run) -> None:
    """(Diagnostic) the SEM head without its LayerNorm over L*V.

    With the labels, shape read through the SEM embedding is learnt half as fast as from the
    CLS and register tokens, and mostly because of that norm (`sem_shape_ceiling.py --read`)."""
    stack.enter_context(mock.patch.object(sem.SEMHead, "forward", sem_head_without_norm))


def dino_on_cls(stack, run: Run) -> None:
    """(Diagnostic) the DINO head and KoLeo on the final-normed CLS token, bypassing the SEM.

    The SEM head is then trained by nothing: read the probe's features, not its codes."""
    original_forward = sem.SEMEncoder.forward

    def forward(self, images, mask=None, tau=None):
        out = original_forward(self, images, mask, tau)
        cls = out["summary"][:, :self.backbone.embed_dim]  # pre-final-norm CLS comes first
        return {**out, "embedding": self.backbone.norm(cls)}

    stack.enter_context(mock.patch.object(sem.SEMEncoder, "forward", forward))


REMEDIES = {f.__name__: f for f in (colour_locals, colour_all, colour_all_blur, colour_head,
                                    infonce, silhouette, plain_mix, plain_init, group_batches,
                                    reconstruction, vicreg, sinkhorn_queue,
                                    masked_pixels, rotation, student_weights,
                                    sem_norm_off, dino_on_cls, palette_scramble,
                                    object_locals, object_globals, block_masking,
                                    standardise, shuffled_negatives, koleo_queue)}


def main() -> None:
    width = max(map(len, REMEDIES))
    remedies = "\n".join(f"  {name:{width}s} {f.__doc__.splitlines()[0]}"
                         for name, f in REMEDIES.items())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="remedies:\n" + remedies,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--remedies", nargs="+", required=True, metavar="NAME[+NAME...]",
                        help="remedies, one run each; NAME+NAME applies several in one run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the preset, as in sem_probe_sweep.py")
    parser.add_argument("--name", help="the run's name (default: the remedy's)")
    add_common_arguments(parser, "sem_remedies")
    args = parser.parse_args()
    if args.name and len(args.remedies) > 1:
        parser.error("--name names one run: give one remedy with it")
    for remedy in args.remedies:
        unknown = [part for part in remedy.split("+") if part not in REMEDIES]
        if unknown:
            parser.error(f"unknown remedy {', '.join(unknown)}: see --help")
    params = yaml.safe_load(Path(args.params).read_text())
    for remedy in args.remedies:
        name = args.name or remedy
        run = Run(overridden(params, args.preset, args.set), Path(args.images),
                  Path(args.work), name)
        with contextlib.ExitStack() as stack:
            for part in remedy.split("+"):
                REMEDIES[part](stack, run)
            row = {"remedy": remedy,
                   **sweep_one(name, args.set, params, args.preset, run.images, run.work)}
        append_row(Path(args.out), row, args.set)


if __name__ == "__main__":
    main()

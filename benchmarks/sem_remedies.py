"""Remedies tried against the shape suppression of issue 3 (the probe's shape target), each a
patch of the train-sem stage held for one run of the tiny preset: train, extract the codes,
probe them (`sem_probe_sweep.sweep_one`); one JSON row per remedy. None of them is part of the
product: they are measured negative results, kept so that every number in the README can be
rerun, on the dataset or at another scale (`--set sem.train.batch_size=1024 ...` on a GPU).

    .venv/bin/python benchmarks/sem_remedies.py --remedies colour_all silhouette \\
        --set sem.train.threads=1

`--help` lists the remedies; the README ("Remedies that did not lift it") gives their numbers.
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
from dlc.stages import train_sem
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
def _randomise_colours(stack: contextlib.ExitStack, locals_only: bool, blur: bool) -> None:
    """Insert a colour randomiser before each chosen view's normalisation."""
    extra = [v2.GaussianBlur(7, sigma=(1.0, 2.0))] if blur else []

    def randomised(view: v2.Compose) -> v2.Compose:
        steps = list(view.transforms)
        randomiser = v2.RandomApply([v2.RandomChannelPermutation(), v2.ColorJitter(hue=0.5),
                                     *extra], p=1.0)
        return v2.Compose(steps[:-1] + [randomiser, steps[-1]])

    original = multicrop.MultiCrop.__init__

    def init(self, cfg):
        original(self, cfg)
        self.local = randomised(self.local)
        if not locals_only:
            self.globals = [randomised(view) for view in self.globals]

    stack.enter_context(mock.patch.object(multicrop.MultiCrop, "__init__", init))


def colour_locals(stack, run: Run) -> None:
    """RGB channel permutation and any hue on the local crops."""
    _randomise_colours(stack, locals_only=True, blur=False)


def colour_all(stack, run: Run) -> None:
    """The same on every crop."""
    _randomise_colours(stack, locals_only=False, blur=False)


def colour_all_blur(stack, run: Run) -> None:
    """The same and a Gaussian blur (sigma 1-2, against the textures) on every crop."""
    _randomise_colours(stack, locals_only=False, blur=True)


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
        batch = len(keys) // 2
        positive = (queries * torch.cat([keys[batch:], keys[:batch]])).sum(-1, keepdim=True)
        image = torch.arange(2 * batch, device=keys.device) % batch
        in_batch = (queries @ keys.T).masked_fill(image[:, None] == image[None, :], -torch.inf)
        old = queries @ queue[0].T if queue else queries.new_zeros(len(queries), 0)
        logits = torch.cat([positive, in_batch, old], 1) / temperature
        queue[:] = [torch.cat([keys, *queue])[:queue_size]]
        return F.cross_entropy(logits, logits.new_zeros(len(logits), dtype=torch.long))

    _add_loss_term(stack, "nce", weight, term)


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
                                    sem_norm_off, dino_on_cls)}


def main() -> None:
    remedies = "\n".join(f"  {name:16s} {f.__doc__.splitlines()[0]}"
                         for name, f in REMEDIES.items())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="remedies:\n" + remedies,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--remedies", nargs="+", required=True, choices=list(REMEDIES))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the preset, as in sem_probe_sweep.py")
    parser.add_argument("--name", help="the run's name (default: the remedy's)")
    add_common_arguments(parser, "sem_remedies")
    args = parser.parse_args()
    if args.name and len(args.remedies) > 1:
        parser.error("--name names one run: give one remedy with it")
    params = yaml.safe_load(Path(args.params).read_text())
    for remedy in args.remedies:
        name = args.name or remedy
        run = Run(overridden(params, args.preset, args.set), Path(args.images),
                  Path(args.work), name)
        with contextlib.ExitStack() as stack:
            REMEDIES[remedy](stack, run)
            row = {"remedy": remedy,
                   **sweep_one(name, args.set, params, args.preset, run.images, run.work)}
        append_row(Path(args.out), row, args.set)


if __name__ == "__main__":
    main()

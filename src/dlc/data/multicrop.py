"""DINO multi-crop views for self-distillation, deterministic per sample: sample number k
(see train/batches.py) is an image fixed by (seed, k), and its crops are drawn from a generator
seeded by (seed, k), whichever process or worker builds it."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
from torchvision.transforms import v2

from dlc.config import CropsConfig
from dlc.data.object_paste import ObjectPaste
from dlc.data.sources import ImageTable
from dlc.train.batches import EpochOrder

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize() -> v2.Transform:
    return v2.Compose([v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class NormalizedTensor:
    """(S, S, 3) uint8 -> normalised (3, S, S) float tensor, what the encoder reads (a class:
    DataLoader workers pickle it)."""

    def __init__(self):
        self.normalize = normalize()

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.normalize(torch.from_numpy(image.copy()).permute(2, 0, 1))


def _photometric(cfg: CropsConfig, blur_p: float, solarize_p: float) -> list[v2.Transform]:
    """DINO's colour and blur augmentations, each switchable (shapes keep colour)."""
    steps: list[v2.Transform] = []
    if cfg.colour_jitter > 0:
        steps.append(v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=cfg.colour_jitter))
    if cfg.grayscale > 0:
        steps.append(v2.RandomGrayscale(p=cfg.grayscale))
    if cfg.blur and blur_p > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(9, sigma=(0.1, 2.0))], p=blur_p))
    if solarize_p > 0:
        steps.append(v2.RandomSolarize(128, p=solarize_p))
    return steps


class MultiCrop:
    """PIL image -> (2 global crops (2, 3, G, G), local crops (n, 3, l, l)), normalised."""

    def __init__(self, cfg: CropsConfig):
        flip = [v2.RandomHorizontalFlip()] if cfg.flip else []
        paste = ([ObjectPaste(cfg.object_paste, cfg.paste_foreground, cfg.paste_scale)]
                 if cfg.object_paste > 0 else [])

        def view(size: int, scale: list[float], blur_p: float, solarize_p: float):
            return v2.Compose([
                v2.PILToTensor(), *paste,
                v2.RandomResizedCrop(size, scale=tuple(scale),
                                     interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                *flip, *_photometric(cfg, blur_p, solarize_p), normalize()])

        # DINO's asymmetry: the first global view always blurred, the second sometimes
        # solarised; local views blurred half the time.
        self.globals = [view(cfg.global_size, cfg.global_scale, 1.0, 0.0),
                        view(cfg.global_size, cfg.global_scale, 0.1, cfg.solarize)]
        self.local = view(cfg.local_size, cfg.local_scale, 0.5, 0.0)
        self.local_crops = cfg.local_crops

    def __call__(self, image) -> tuple[torch.Tensor, torch.Tensor]:
        globals_ = torch.stack([view(image) for view in self.globals])
        if self.local_crops == 0:
            return globals_, torch.empty(0)
        return globals_, torch.stack([self.local(image) for _ in range(self.local_crops)])


class MultiCropDataset(torch.utils.data.Dataset):
    """Item k (a global sample number, see the module doc) -> (globals, locals) or None."""

    def __init__(self, table: ImageTable, crops: CropsConfig, seed: int):
        self.table, self.crop, self.seed = table, MultiCrop(crops), seed
        self.image_index = EpochOrder(len(table), seed)

    def __len__(self) -> int:  # samples are addressed by global number, not by image
        return 2 ** 62

    def __getitem__(self, k: int):
        i = self.image_index(k)
        try:
            image = self.table.raw(i)
        except ValueError as error:
            log.warning("skipping %s", error)
            return None
        with self.seeded(k):
            return self.crop(image)

    @contextlib.contextmanager
    def seeded(self, k: int):
        """torchvision draws from the global CPU generator: fork it, so that the training
        process's own random stream (dropout, masks) is untouched, and seed it by sample
        number k. Only the CPU generator: torch.manual_seed would also reseed the training
        process's GPU generators, and its lazy-seeding bookkeeping took a third of the time
        of a view."""
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(
                int(np.random.SeedSequence([self.seed, k]).generate_state(1)[0]))
            yield


def collate_crops(batch: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(globals (B, 2, ...), locals (B, n, ...), number of unreadable images dropped)."""
    good = [item for item in batch if item is not None]
    if not good:
        raise ValueError("a whole batch of unreadable images: check the images table")
    globals_, locals_ = zip(*good)
    return torch.stack(globals_), torch.stack(locals_), len(batch) - len(good)

"""The image dataset (`presets.<name>.data`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import ConfigError, param


@dataclass(frozen=True)
class ShapesConfig:
    n_images: int = param("images generated", minimum=1)
    resolution: Literal[32, 64] = param("side of the square RGB images")
    seed: int = param("generator seed: same seed, same bytes", minimum=0)
    test_fraction: float = param("fraction of the non-held-out images in the test split",
                                minimum=0, maximum=1)
    holdout: list[list[str]] = param("(shape, colour) pairs never in train: split 'holdout'")

    def check(self, where: str) -> None:
        from dlc.data.shapes import COLOURS, SHAPES

        for pair in self.holdout:
            if len(pair) != 2 or pair[0] not in SHAPES or pair[1] not in COLOURS:
                raise ConfigError(
                    f"{where}.holdout: {pair} is not a [shape, colour] pair with shape in "
                    f"{list(SHAPES)} and colour in {list(COLOURS)}")


@dataclass(frozen=True)
class ImageFolderConfig:
    train_dir: str = param("class-folder tree of training images (ImageNet train/)")
    val_dir: str = param("class-folder tree of validation images")
    resolution: int = param("ADM centre-crop side", minimum=8)


@dataclass(frozen=True)
class DataConfig:
    kind: Literal["shapes", "folder"] = param("built-in shapes or a class-folder dataset")
    shapes: ShapesConfig | None = param("settings when kind is shapes")
    folder: ImageFolderConfig | None = param("settings when kind is folder")

    def check(self, where: str) -> None:
        if getattr(self, self.kind) is None:
            raise ConfigError(f"{where}.{self.kind}: required when {where}.kind is {self.kind}")

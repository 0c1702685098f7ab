"""Pictures of results: image grids and matplotlib figures, written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dlc.io import atomic_path


def image_grid(images: np.ndarray, columns: int, scale: int = 1, pad: int = 1) -> Image.Image:
    """(N, H, W, 3) uint8 -> one picture, `columns` per row, enlarged `scale` times."""
    n, height, width, _ = images.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), 255,
                     dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = pad + (i // columns) * (height + pad), pad + (i % columns) * (width + pad)
        canvas[top:top + height, left:left + width] = image
    picture = Image.fromarray(canvas)
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def save_image(picture: Image.Image, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (jobs run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve(history: list[dict], key: str, ylabel: str, title: str,
               path: str | Path) -> None:
    """One training curve, `key` of every history row against its step, log y axis."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 3))
    axis.plot([row["step"] for row in history], [row[key] for row in history])
    axis.set(xlabel="step", ylabel=ylabel, yscale="log", title=title)
    save_figure(figure, path)


def save_figure(figure, path: str | Path, dpi: int = 120) -> None:
    plt = pyplot()

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)

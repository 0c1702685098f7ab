"""`shapes`: the built-in, procedurally generated image dataset (our stand-in for ImageNet's
many modes).

Each image is one coloured shape (8 shapes x 8 colours x 3 sizes, anywhere in the frame) on a
textured background (4 colours x 3 textures): 2,304 attribute combinations times positions.
Shapes are analytic signed-distance functions, anti-aliased over one pixel, rendered in numpy
batches. Everything derives from one seed: the same seed gives the same bytes.

The table (Parquet, readable with pandas or pyarrow) holds per image: image_id, split
(train / test / holdout), label (shape * 8 + colour), every attribute, the centre (x, y) in
[0, 1], a caption ("a small red triangle on a striped blue background") and the PNG bytes.
(shape, colour) pairs listed as held out never appear in train or test: their images form the
"holdout" split, for composition and text tests.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dlc.io import read_parquet

SHAPES = ("circle", "square", "triangle", "diamond", "hexagon", "star", "cross", "ring")
COLOURS = {  # saturated foreground colours
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 100, 235),
    "yellow": (240, 220, 40), "magenta": (220, 50, 200), "cyan": (40, 210, 220),
    "orange": (250, 140, 20), "white": (245, 245, 245),
}
# label = shape index * len(COLOURS) + colour index: the class of a (shape, colour) pair
CLASSES = tuple(f"{shape} {colour}" for shape in SHAPES for colour in COLOURS)
BACKGROUNDS = {  # dark background colours, so every shape stays visible
    "black": (15, 15, 15), "gray": (90, 90, 90), "blue": (20, 30, 95), "brown": (85, 55, 25),
}
TEXTURES = ("plain", "striped", "checkered")
SIZES = {"small": 0.16, "medium": 0.24, "large": 0.34}  # shape radius / image side


# --------------------------------------------------------------------------------------------
# Signed distances in shape-local units (the shape's radius is 1); negative inside
# --------------------------------------------------------------------------------------------
def _regular_polygon(n: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular_polygon(points)
    inner_vertices = _regular_polygon(points, inner, phase=-np.pi / 2 + np.pi / points)
    return np.stack([outer, inner_vertices], axis=1).reshape(-1, 2)


def polygon_sdf(q: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact signed distance from points q (..., 2) to a closed polygon (M, 2)."""
    start, end = vertices, np.roll(vertices, -1, axis=0)
    edge = end - start                                            # (M, 2)
    w = q[..., None, :] - start                                   # (..., M, 2)
    along = np.clip((w * edge).sum(-1) / (edge * edge).sum(-1), 0.0, 1.0)
    distance = np.linalg.norm(w - along[..., None] * edge, axis=-1).min(-1)
    # Even-odd rule: count edges a ray towards +x crosses.
    y, x = q[..., 1:2], q[..., 0:1]
    straddles = (start[:, 1] > y) != (end[:, 1] > y)
    safe_dy = np.where(edge[:, 1] == 0, 1, edge[:, 1])  # horizontal edges never straddle
    x_cross = start[:, 0] + (y - start[:, 1]) * edge[:, 0] / safe_dy
    inside = (straddles & (x < x_cross)).sum(-1) % 2 == 1
    return np.where(inside, -distance, distance)


def box_sdf(q: np.ndarray, half_width: float, half_height: float) -> np.ndarray:
    d = np.abs(q) - np.array([half_width, half_height])
    return np.linalg.norm(np.maximum(d, 0.0), axis=-1) + np.minimum(d.max(-1), 0.0)


_TRIANGLE = _regular_polygon(3) + np.array([0.0, 0.25])  # centre the triangle's bounding box
_HEXAGON = _regular_polygon(6, phase=0.0)
_STAR = _star()

SDF = {
    "circle": lambda q: np.linalg.norm(q, axis=-1) - 1.0,
    "square": lambda q: box_sdf(q, 0.8, 0.8),
    "triangle": lambda q: polygon_sdf(q, _TRIANGLE),
    "diamond": lambda q: (np.abs(q).sum(-1) - 1.0) / np.sqrt(2.0),
    "hexagon": lambda q: polygon_sdf(q, _HEXAGON),
    "star": lambda q: polygon_sdf(q, _STAR),
    "cross": lambda q: np.minimum(box_sdf(q, 0.95, 0.32), box_sdf(q, 0.32, 0.95)),
    "ring": lambda q: np.abs(np.linalg.norm(q, axis=-1) - 0.72) - 0.28,
}


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def _background(names: np.ndarray, textures: np.ndarray, resolution: int) -> np.ndarray:
    """(N, H, W, 3) float backgrounds: the colour, with a lighter shade in the texture."""
    rows, cols = np.mgrid[0:resolution, 0:resolution]
    pattern = {
        "plain": np.zeros((resolution, resolution), bool),
        "striped": ((rows + cols) // 3) % 2 == 1,
        "checkered": ((rows // 4) + (cols // 4)) % 2 == 1,
    }
    base = np.array([BACKGROUNDS[n] for n in names], dtype=np.float32)[:, None, None, :]
    mask = np.stack([pattern[t] for t in textures])[..., None]
    return np.where(mask, np.minimum(base + 45.0, 255.0), base)


def render(shapes: np.ndarray, colours: np.ndarray, radii: np.ndarray, centres: np.ndarray,
           backgrounds: np.ndarray, textures: np.ndarray, resolution: int) -> np.ndarray:
    """Draw N images (N, H, W, 3) uint8; radii and centres in pixels, centres as (x, y)."""
    pixel = np.stack(np.meshgrid(np.arange(resolution) + 0.5, np.arange(resolution) + 0.5,
                                 indexing="xy"), axis=-1)        # (H, W, 2) pixel centres
    images = _background(backgrounds, textures, resolution)
    coverage = np.zeros(images.shape[:3], dtype=np.float32)
    for shape in np.unique(shapes):
        index = np.flatnonzero(shapes == shape)
        r = radii[index, None, None]
        q = (pixel[None] - centres[index, None, None, :]) / r[..., None]
        distance_px = SDF[shape](q) * r                           # back to pixel units
        coverage[index] = np.clip(0.5 - distance_px, 0.0, 1.0)   # 1-pixel anti-aliasing
    foreground = np.array([COLOURS[c] for c in colours], dtype=np.float32)[:, None, None, :]
    images = images * (1 - coverage[..., None]) + foreground * coverage[..., None]
    return np.round(images).astype(np.uint8)


def caption(size: str, colour: str, shape: str, texture: str, background: str) -> str:
    return f"a {size} {colour} {shape} on a {texture} {background} background"


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def render_pngs(shapes: np.ndarray, colours: np.ndarray, radii: np.ndarray, centres: np.ndarray,
                backgrounds: np.ndarray, textures: np.ndarray, resolution: int,
                chunk: int = 2048) -> list[bytes]:
    """`render`, chunk by chunk (bounded memory), each image encoded as PNG."""
    images: list[bytes] = []
    for start in range(0, len(shapes), chunk):
        part = slice(start, start + chunk)
        pixels = render(shapes[part], colours[part], radii[part], centres[part],
                        backgrounds[part], textures[part], resolution)
        images.extend(png_bytes(image) for image in pixels)
    return images


def generate(n_images: int, resolution: int, seed: int, test_fraction: float,
             holdout: list[list[str]], chunk: int = 2048) -> pd.DataFrame:
    """The whole dataset as a DataFrame (PNG bytes in column `image`)."""
    rng = np.random.default_rng(seed)
    shape = rng.choice(SHAPES, n_images)
    colour = rng.choice(list(COLOURS), n_images)
    size = rng.choice(list(SIZES), n_images)
    background = rng.choice(list(BACKGROUNDS), n_images)
    texture = rng.choice(TEXTURES, n_images)
    radius = np.array([SIZES[s] for s in size]) * resolution
    margin = radius + 1.0
    centre = margin[:, None] + rng.random((n_images, 2)) * (resolution - 2 * margin)[:, None]
    held_out = {tuple(pair) for pair in holdout}
    split = np.where(rng.random(n_images) < test_fraction, "test", "train")
    split = np.where([(s, c) in held_out for s, c in zip(shape, colour)], "holdout", split)

    images = render_pngs(shape, colour, radius, centre, background, texture, resolution, chunk)
    return pd.DataFrame({
        "image_id": [f"shapes-{i:06d}" for i in range(n_images)],
        "split": split,
        "label": np.array([SHAPES.index(s) * len(COLOURS) + list(COLOURS).index(c)
                           for s, c in zip(shape, colour)], dtype=np.int32),
        "shape": shape, "colour": colour, "size": size, "background": background,
        "texture": texture,
        "x": (centre[:, 0] / resolution).astype(np.float32),
        "y": (centre[:, 1] / resolution).astype(np.float32),
        "caption": [caption(*a) for a in zip(size, colour, shape, texture, background)],
        "image": images,
    })


REQUIRED_COLUMNS = ("image_id", "split", "label", "shape", "colour", "size", "background",
                    "texture", "caption", "image")


def read_table(path: str | Path, split: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The table (optionally one split) and its metadata; errors name the file."""
    frame, metadata = read_parquet(path, REQUIRED_COLUMNS, what="shapes table (`dlc data`)")
    if split is not None:
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame, metadata


def decode_images(frame: pd.DataFrame) -> np.ndarray:
    """PNG column -> (N, H, W, 3) uint8."""
    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in frame["image"]])

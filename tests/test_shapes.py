"""The built-in dataset: deterministic, attributes true to the pixels, hold-outs respected."""

import hashlib

import numpy as np
import pytest

from dlc.data import shapes
from dlc.io import write_parquet


def render_one(shape, colour="red", size="large", background="black", texture="plain",
               resolution=64, centre=(32.0, 32.0)):
    radius = shapes.SIZES[size] * resolution
    return shapes.render(np.array([shape]), np.array([colour]), np.array([radius]),
                         np.array([centre]), np.array([background]), np.array([texture]),
                         resolution)[0]


def test_same_seed_same_bytes_other_seed_other_bytes():
    def digest(frame):
        return hashlib.sha256(b"".join(frame["image"]) + frame["caption"].str.cat().encode()
                              ).hexdigest()

    a = shapes.generate(200, 32, seed=3, test_fraction=0.1, holdout=[])
    b = shapes.generate(200, 32, seed=3, test_fraction=0.1, holdout=[])
    c = shapes.generate(200, 32, seed=4, test_fraction=0.1, holdout=[])
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_polygon_sdf_matches_exact_box_sdf():
    q = np.random.default_rng(0).uniform(-2, 2, size=(2000, 2))
    square = np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    np.testing.assert_allclose(shapes.polygon_sdf(q, square), shapes.box_sdf(q, 0.8, 0.8),
                               atol=1e-12)


@pytest.mark.parametrize("shape, area", [("circle", np.pi), ("square", 1.6 ** 2),
                                         ("diamond", 2.0), ("ring", np.pi * (1 - 0.44 ** 2))])
def test_drawn_area_matches_the_analytic_area(shape, area):
    image = render_one(shape, colour="white", background="black")
    coverage = (image[..., 0].astype(float) - 15) / (245 - 15)
    radius = shapes.SIZES["large"] * 64
    assert coverage.sum() == pytest.approx(area * radius ** 2, rel=0.03)


@pytest.mark.parametrize("shape", [s for s in shapes.SHAPES if s != "ring"])
def test_colour_at_centre_and_background_at_corner(shape):
    for colour, rgb in shapes.COLOURS.items():
        image = render_one(shape, colour=colour, background="gray")
        centre = (32, 33) if shape == "triangle" else (32, 32)
        assert tuple(image[centre]) == rgb, (shape, colour)
        assert tuple(image[0, 0]) == shapes.BACKGROUNDS["gray"]


def test_sizes_are_ordered():
    areas = [(render_one("circle", size=s, colour="white")[..., 0] > 128).sum()
             for s in ("small", "medium", "large")]
    assert areas[0] < areas[1] < areas[2]


def test_table_attributes_holdout_and_captions(tmp_path):
    holdout = [["triangle", "red"], ["circle", "blue"]]
    frame = shapes.generate(1500, 32, seed=0, test_fraction=0.2, holdout=holdout)
    pairs = set(zip(frame["shape"], frame["colour"]))
    assert len(pairs) == 64 and len(frame) == frame["image_id"].nunique()
    seen = frame[frame["split"] != "holdout"]
    assert not {("triangle", "red"), ("circle", "blue")} & set(zip(seen["shape"], seen["colour"]))
    held = frame[frame["split"] == "holdout"]
    assert set(zip(held["shape"], held["colour"])) == {("triangle", "red"), ("circle", "blue")}
    assert 0.1 < (frame["split"] == "test").mean() < 0.3
    row = frame.iloc[0]
    assert row["caption"] == (f"a {row['size']} {row['colour']} {row['shape']} on a "
                              f"{row['texture']} {row['background']} background")
    assert row["label"] == shapes.SHAPES.index(row["shape"]) * 8 + list(shapes.COLOURS).index(
        row["colour"])
    # Every shape lies inside the frame.
    radius = frame["size"].map(shapes.SIZES) * 32
    for axis in ("x", "y"):
        centre = frame[axis] * 32
        assert ((centre - radius) >= 0.99).all() and ((centre + radius) <= 31.01).all()

    path = tmp_path / "images.parquet"
    write_parquet(frame, path, {"dataset": "shapes"})
    loaded, metadata = shapes.read_table(path, split="holdout")
    assert metadata == {"dataset": "shapes"} and len(loaded) == len(held)
    images = shapes.decode_images(loaded.head(3))
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8


def test_read_table_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet: shapes table"):
        shapes.read_table(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="bad.parquet: not a readable Parquet file"):
        shapes.read_table(bad)

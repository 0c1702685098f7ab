"""Object paste: the object found by brightness, moved whole, recoloured, on a new background."""

import math

import pytest
import torch

from dlc.data.object_paste import ObjectPaste, foreground_alpha, move_alpha

FOREGROUND = (140, 180)


def square_image(side: int = 32, half: int = 4, colour=(220, 40, 40), background=90):
    """A square of side 2 * half, centred, on a flat background (uint8 (3, side, side))."""
    image = torch.full((3, side, side), background, dtype=torch.uint8)
    lo, hi = side // 2 - half, side // 2 + half
    image[:, lo:hi, lo:hi] = torch.tensor(colour, dtype=torch.uint8)[:, None, None]
    return image


def test_alpha_ramps_between_the_thresholds():
    image = torch.tensor([0, 140, 160, 180, 255], dtype=torch.uint8).repeat(3, 1, 1)
    image[1:] = 0  # the brightest channel decides
    assert foreground_alpha(image, FOREGROUND).flatten().tolist() == [0, 0, 0.5, 1, 1]


def test_unit_scale_moves_the_object_whole():
    alpha = foreground_alpha(square_image(), FOREGROUND)
    torch.manual_seed(0)
    for _ in range(20):
        moved = move_alpha(alpha, (1.0, 1.0))
        assert moved.sum().item() == pytest.approx(64, abs=1.0)
        rows, cols = (moved[0] > 0.5).nonzero(as_tuple=True)
        assert rows.max() - rows.min() + 1 == 8 and cols.max() - cols.min() + 1 == 8


def test_scale_changes_the_area_by_its_square():
    alpha = foreground_alpha(square_image(), FOREGROUND)
    torch.manual_seed(1)
    moved = move_alpha(alpha, (1.5, 1.5))
    assert moved.sum().item() == pytest.approx(64 * 1.5 ** 2, rel=0.05)


def test_an_object_too_large_to_grow_is_kept_inside():
    alpha = foreground_alpha(square_image(half=10), FOREGROUND)  # radius ~ 0.7 of the half side
    torch.manual_seed(2)
    moved = move_alpha(alpha, (2.0, 2.0))
    factor = math.sqrt(moved.sum().item() / alpha.sum().item())
    assert factor < 2.0
    assert moved[0, 0].sum() + moved[0, -1].sum() + moved[0, :, 0].sum() + moved[0, :, -1].sum() \
        < 1e-3


def test_paste_keeps_the_outline_and_the_brightness_contract():
    image = square_image()
    torch.manual_seed(3)
    for _ in range(10):
        pasted = ObjectPaste(1.0, FOREGROUND, (1.0, 1.0))(image)
        assert pasted.dtype == torch.uint8 and pasted.shape == image.shape
        alpha = foreground_alpha(pasted, FOREGROUND)[0]
        # Segmented again, the view shows the 8 x 8 square: at least its 7 x 7 core fully
        # bright (a half-pixel shift blends one row and column), nothing beyond 9 x 9.
        assert 49 <= (alpha == 1).sum() <= 64
        rows, cols = (alpha > 0).nonzero(as_tuple=True)
        assert rows.max() - rows.min() < 9 and cols.max() - cols.min() < 9


def test_paste_draws_new_colours_and_backgrounds():
    image = square_image()
    torch.manual_seed(4)
    views = torch.stack([ObjectPaste(1.0, FOREGROUND, (1.0, 1.0))(image) for _ in range(8)])
    corners = views[:, :, 0, 0].float()
    assert corners.std(0).min() > 5  # backgrounds differ
    assert not torch.equal(views[0], views[1])


def test_probability_zero_and_empty_images_are_unchanged():
    image = square_image()
    assert torch.equal(ObjectPaste(0.0, FOREGROUND, (0.6, 1.6))(image), image)
    empty = torch.full((3, 32, 32), 90, dtype=torch.uint8)
    assert torch.equal(ObjectPaste(1.0, FOREGROUND, (0.6, 1.6))(empty), empty)


def test_non_square_images_are_refused():
    with pytest.raises(ValueError, match="square"):
        ObjectPaste(1.0, FOREGROUND, (1.0, 1.0))(torch.zeros(3, 32, 48, dtype=torch.uint8))
    for _ in range(10):  # on every call, not only when the paste is drawn
        with pytest.raises(ValueError, match="square"):
            ObjectPaste(0.5, FOREGROUND, (1.0, 1.0))(torch.zeros(3, 32, 48, dtype=torch.uint8))

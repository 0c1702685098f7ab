"""The view transforms, masks and loss of research/sem/sem_remedies.py (the measured
remedies): what each promises, on hand-made inputs."""

import pytest
import torch
from conftest import import_research

from dlc.train.ssl import random_patch_mask


@pytest.fixture(scope="module")
def remedies():
    return import_research("sem_remedies")


def square_image(top: int, left: int, side: int = 8, size: int = 32) -> torch.Tensor:
    """uint8 (3, size, size): a dark gray background and one bright square."""
    image = torch.full((3, size, size), 40, dtype=torch.uint8)
    image[:, top:top + side, left:left + side] = torch.tensor([230, 60, 60])[:, None, None]
    return image


def test_block_mask_keeps_the_patch_mask_contract(remedies):
    generator = torch.Generator().manual_seed(0)
    mask = remedies.block_mask(2000, 64, 0.5, (0.1, 0.5), generator)
    counts = mask.sum(1)
    assert mask.shape == (2000, 64) and mask.dtype == torch.bool
    assert abs((counts > 0).float().mean().item() - 0.5) < 0.05
    masked = counts[counts > 0]
    assert masked.min() >= round(0.1 * 64) and masked.max() <= 64
    assert abs(masked.float().mean().item() - 0.3 * 64) < 2  # blocks overshoot a little
    again = remedies.block_mask(2000, 64, 0.5, (0.1, 0.5), torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_block_mask_draws_blocks(remedies):
    """A masked patch's neighbour is masked far more often than under uniform masking at the
    same ratio (iBOT's), which gives about the ratio itself."""
    def neighbours_masked(mask):
        grid = mask.view(-1, 8, 8)
        right, below = grid[:, :, :-1] & grid[:, :, 1:], grid[:, :-1] & grid[:, 1:]
        return ((right.sum() + below.sum()) / (grid[:, :, :-1].sum() + grid[:, :-1].sum()))

    blocks = remedies.block_mask(500, 64, 1.0, (0.3, 0.3), torch.Generator().manual_seed(1))
    uniform = random_patch_mask(500, 64, 1.0, (0.3, 0.3), torch.Generator().manual_seed(1))
    assert neighbours_masked(uniform) < 0.35 < 0.6 < neighbours_masked(blocks)  # 0.28, 0.71


def test_object_crop_is_centred_on_the_object(remedies):
    torch.manual_seed(0)
    crop = remedies.ObjectCrop(16, [0.2, 0.5])
    for top, left in [(2, 3), (20, 22), (12, 4)]:
        image = square_image(top, left)
        for _ in range(20):
            view = crop(image)
            assert view.shape == (3, 16, 16)
            assert (view.amax(0) > 160).any(), "every crop shows a part of the object"
    # Without jitter, a quarter of the image around a 4-px square: the square in the middle.
    centred = remedies.ObjectCrop(16, [0.25, 0.25], jitter=0.0)(square_image(20, 22, side=4))
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[6:10, 6:10] = True
    assert torch.equal(centred.amax(0) > 160, expected)


def test_object_crop_without_an_object_falls_back_to_a_random_crop(remedies):
    view = remedies.ObjectCrop(16, [0.2, 0.5])(torch.full((3, 32, 32), 40, dtype=torch.uint8))
    assert view.shape == (3, 16, 16) and (view == 40).all()


def test_scramble_palette_maps_colours_not_layout(remedies):
    """Each output channel is a monotone function of one input channel: equal pixels stay equal,
    the object stays apart from its background, and the palette changes from view to view."""
    torch.manual_seed(0)
    image = square_image(10, 10)
    views = [remedies.ScramblePalette()(image) for _ in range(50)]
    inside, outside = (slice(10, 18), slice(10, 18)), (slice(0, 8), slice(0, 8))
    for view in views:
        assert view.dtype == torch.uint8 and view.shape == image.shape
        for region in (inside, outside):
            patch = view[:, region[0], region[1]].flatten(1)
            assert (patch == patch[:, :1]).all()
        assert not torch.equal(view[:, 12, 12], view[:, 0, 0])
    backgrounds = {tuple(view[:, 0, 0].tolist()) for view in views}
    assert len(backgrounds) > 10


def test_standardise_centres_each_colour_and_scales_to_unit_rms(remedies):
    images = torch.rand(4, 3, 32, 32) * torch.tensor([0.2, 0.5, 1.0])[:, None, None] + 0.3
    out = remedies.Standardise()(images)
    assert out.mean((-2, -1)).abs().max() < 1e-5
    rms = (images - images.mean((-2, -1), keepdim=True)).pow(2).mean((-3, -2, -1)).sqrt()
    torch.testing.assert_close(out.pow(2).mean((-3, -2, -1)).sqrt(), rms / (rms + 1e-3))


def test_shuffle_patches_moves_whole_tiles(remedies):
    torch.manual_seed(0)
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    shuffled = remedies.shuffle_patches(images, 2)

    def tiles(x):  # (B, 4 tiles, C*4*4), each tile's pixels in order
        return x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(2, 4, -1)

    for before, after in zip(tiles(images), tiles(shuffled)):
        assert sorted(map(tuple, before.tolist())) == sorted(map(tuple, after.tolist()))
    assert not torch.equal(images, shuffled)


def test_info_nce_against_a_direct_sum(remedies):
    """Two images (crop-major), one extra negative: each query's loss is -log of its positive's
    share of exp(similarity / T) over the positive, the other image's two keys and the extra."""
    torch.manual_seed(0)
    queries, keys, extra = (torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
                            for n in (4, 4, 1))
    expected = []
    for i in range(4):
        positive, others = keys[(i + 2) % 4], [keys[j] for j in range(4) if j % 2 != i % 2]
        scores = torch.stack([queries[i] @ key for key in [positive, *others, extra[0]]]) / 0.5
        expected.append(-(scores[0] - scores.logsumexp(0)))
    torch.testing.assert_close(remedies._info_nce(queries, keys, extra, 0.5),
                               torch.stack(expected).mean())

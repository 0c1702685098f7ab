"""REPA: pooling the encoder's patch grid to the DiT's, the cosine loss, the DiT's projected
tokens of one block, and train-dit with the alignment on (resumes exactly, saves no projector)."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from dlc.config import RepaConfig
from dlc.models.dit import DiT, DiTSize, load_dit
from dlc.models.sem import build_encoder
from dlc.stages import train_dit
from dlc.train import checkpoint
from dlc.train.repa import alignment_loss, pool_to_grid

from .conftest import preempted_at
from .test_dit_stages import setup  # noqa: F401  (the fixture)


def test_pool_to_grid_averages_square_blocks_in_row_major_order():
    patches = torch.randn(2, 64, 5)                      # an 8 x 8 grid
    pooled = pool_to_grid(patches, 4)
    grid = patches.view(2, 8, 8, 5)
    expected = grid.view(2, 4, 2, 4, 2, 5).mean(dim=(2, 4)).reshape(2, 16, 5)
    torch.testing.assert_close(pooled, expected)
    assert pool_to_grid(patches, 8) is patches
    with pytest.raises(ValueError, match="square"):
        pool_to_grid(torch.randn(1, 10, 3), 2)


def test_alignment_loss_is_minus_the_mean_cosine_per_image():
    a, b = torch.randn(3, 7, 4), torch.randn(3, 7, 4)
    expected = -torch.stack([F.cosine_similarity(a[i], b[i], dim=-1).mean() for i in range(3)])
    torch.testing.assert_close(alignment_loss(a, b), expected)
    torch.testing.assert_close(alignment_loss(a, 2.5 * a), torch.full((3,), -1.0))


def test_dit_returns_the_projected_tokens_of_its_align_block():
    torch.manual_seed(0)
    model = DiT(DiTSize(depth=3, hidden=32, heads=2), 8, 4, 2, condition="none",
                align_depth=2, align_width=16, align_features=6)
    for block in model.blocks:  # open adaLN-Zero so the blocks do something
        torch.nn.init.normal_(block.modulation[-1].weight, std=0.1)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    out, aligned = model(x, t, align=True)
    assert aligned.shape == (2, 16, 6)
    torch.testing.assert_close(out, model(x, t))
    c = model.embed_condition(t)
    tokens = model.patch_embed(x).flatten(2).transpose(1, 2) + model.pos_embed
    for block in model.blocks[:2]:
        tokens = block(tokens, c)
    torch.testing.assert_close(aligned, model.projector(tokens))
    with pytest.raises(ValueError, match="projector"):
        DiT(DiTSize(depth=3, hidden=32, heads=2), 8, 4, 2, condition="none")(x, t, align=True)
    with pytest.raises(ValueError, match="align_depth"):
        DiT(DiTSize(depth=3, hidden=32, heads=2), 8, 4, 2, condition="none", align_depth=4,
            align_width=16, align_features=6)


def _with_repa(preset):
    repa = RepaConfig(weight=0.5, depth=1, width=16, batch_size=64)
    return dataclasses.replace(preset, dit=dataclasses.replace(preset.dit, repa=repa))


def _train(preset, folder, out):
    return train_dit.train(preset.dit, preset.vae, folder / "latents", folder / "codes",
                           folder / "vae", preset.sem.length, preset.sem.vocab, folder / out,
                           "code", preset.sem, folder / "encoder.safetensors",
                           folder / "images.parquet")


def test_train_dit_with_repa_aligns_resumes_exactly_and_saves_a_plain_dit(setup):  # noqa: F811
    preset, folder = setup
    preset = _with_repa(preset)
    torch.manual_seed(0)
    checkpoint.save_weights(folder / "encoder.safetensors",
                            build_encoder(preset.sem, pretrained=False))
    straight = _train(preset, folder, "a")
    loss = np.genfromtxt(straight / "loss.csv", delimiter=",", names=True)
    assert np.all(np.isfinite(loss["align"])) and np.all(np.abs(loss["align"]) > 0)
    weights = load_file(str(straight / "model.safetensors"))
    assert not any(key.startswith("projector.") for key in weights)
    model, _ = load_dit(preset.dit, straight, preset.sem.length, preset.sem.vocab)
    assert model.projector is None
    with preempted_at(train_dit, 3), pytest.raises(KeyboardInterrupt):
        _train(preset, folder, "b")
    resumed = _train(preset, folder, "b")
    b = load_file(str(resumed / "model.safetensors"))
    for key in weights:
        assert torch.equal(weights[key], b[key]), key
    with pytest.raises(ValueError, match="dit.repa needs"):
        train_dit.train(preset.dit, preset.vae, folder / "latents", folder / "codes",
                        folder / "vae", preset.sem.length, preset.sem.vocab, folder / "c")

"""DiT: the paper's sizes and FLOPs (built on the meta device), the code conditioning as a
gather that equals the one-hot formulation, soft codes, null-code dropout, adaLN-Zero."""

import pytest
import torch
import torch.nn.functional as F

from dlc.models.dit import (
    SIZES,
    DiT,
    DiTSize,
    forward_flops,
    math_flops_per_image,
    parameter_count,
    sincos_2d,
)
from dlc.stages.train_dit import null_condition_dropout

L, V = 6, 10


def small(condition="code", learn_sigma=True):
    torch.manual_seed(0)
    return DiT(DiTSize(depth=2, hidden=32, heads=2), 8, 4, 2, learn_sigma, condition, L, V)


def test_xl2_parameter_counts_match_the_paper():
    with torch.device("meta"):
        plain = DiT(SIZES["XL"], 32, 4, 2, condition="label")
        dlc = DiT(SIZES["XL"], 32, 4, 2, condition="code", code_length=512, code_vocab=256)
    assert parameter_count(plain) == 675_129_632          # DiT-XL/2 as published
    assert parameter_count(dlc) == 825_561_248            # DiT-XL/2 675.1M - labels + codes
    assert parameter_count(dlc.code_embedder) == 512 * 257 * 1152


def test_xl2_forward_flops_and_the_cost_of_code_conditioning():
    with torch.device("meta"):
        plain = DiT(SIZES["XL"], 32, 4, 2, condition="label")
        dlc = DiT(SIZES["XL"], 32, 4, 2, condition="code", code_length=512, code_vocab=256)
    flops = forward_flops(plain)
    assert flops == pytest.approx(237.24e9, rel=0.01)
    assert flops == pytest.approx(math_flops_per_image(SIZES["XL"], 256, 2, 4), rel=1e-9)
    # the flop counter sees no matmul in the gather; the mean adds L*hidden additions
    extra = forward_flops(dlc) - flops + 512 * 1152
    assert 0 <= extra / flops < 0.005


def test_gather_conditioning_equals_the_one_hot_matmul():
    model = small()
    codes = torch.randint(0, V + 1, (5, L))
    table = model.code_embedder.table.weight.view(L, V + 1, -1)
    one_hot = F.one_hot(codes, V + 1).float()
    expected = torch.einsum("blv,lvh->bh", one_hot, table) / L
    torch.testing.assert_close(model.code_embedder(codes), expected, atol=1e-5, rtol=1e-5)
    # soft codes: one-hot probabilities give the hard code's embedding
    hard = torch.randint(0, V, (5, L))
    torch.testing.assert_close(model.code_embedder.soft(F.one_hot(hard, V).float()),
                               model.code_embedder(hard), atol=1e-6, rtol=1e-5)


def test_adaln_zero_starts_at_zero_and_outputs_have_the_latent_shape():
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([0, 10, 999])
    for condition, kwargs in (("code", {"codes": torch.randint(0, V, (3, L))}),
                              ("none", {}), ("label", {"labels": torch.tensor([1, 2, 3])})):
        model = small(condition)
        out = model(x, t, **kwargs)
        assert out.shape == (3, 8, 8, 8) and torch.count_nonzero(out) == 0
    with pytest.raises(ValueError, match="needs codes or soft_codes"):
        small()(x, t)


def test_unpatchify_inverts_patchify_order():
    model = small(learn_sigma=False)
    x = torch.randn(2, 4, 8, 8)
    p = model.patch
    tokens = x.view(2, 4, 4, p, 4, p).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, p * p * 4)
    assert torch.equal(model.unpatchify(tokens), x)


def test_positions_are_distinct_fixed_sincos():
    table = sincos_2d(4, 16)
    assert table.shape == (16, 16) and torch.cdist(table, table).fill_diagonal_(1).min() > 0
    assert not small().pos_embed.requires_grad


def test_code_changes_the_output_once_trained_layers_are_nonzero():
    model = small()
    for block in model.blocks:
        torch.nn.init.normal_(block.modulation[-1].weight, std=0.02)
    torch.nn.init.normal_(model.final.linear.weight, std=0.02)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([5, 5])
    a = model(x, t, codes=torch.zeros(2, L, dtype=torch.long))
    b = model(x, t, codes=torch.ones(2, L, dtype=torch.long))
    assert not torch.allclose(a, b)


def test_null_condition_dropout_replaces_whole_codes_at_the_rate():
    codes = torch.randint(0, V, (20_000, L))
    uniform = torch.rand(len(codes), generator=torch.Generator().manual_seed(0))
    dropped = null_condition_dropout(codes, 0.1, V, uniform)
    nulled = (dropped == V).all(dim=1)
    kept = (dropped == codes).all(dim=1)
    assert (nulled | kept).all()                      # a whole code or nothing
    assert nulled.float().mean().item() == pytest.approx(0.1, abs=0.01)
    features = torch.randn(len(codes), 6) + 3
    zeroed = null_condition_dropout(features, 0.1, torch.zeros(len(codes), 6), uniform)
    assert torch.equal((zeroed == 0).all(dim=1), nulled)   # the same rows, whole vectors
    assert torch.equal(zeroed[~nulled], features[~nulled])


def test_feature_conditioned_dit_takes_features_and_a_zero_null():
    torch.manual_seed(0)
    model = DiT(SIZES["tiny"], 8, 4, 2, condition="features", feature_dim=6)
    for block in model.blocks:   # adaLN-Zero starts at zero: open it so the condition shows
        torch.nn.init.normal_(block.modulation[-1].weight, std=0.1)
    torch.nn.init.normal_(model.final.linear.weight, std=0.1)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 500])
    null = model.null_condition(2)
    assert set(null) == {"features"} and torch.equal(null["features"], torch.zeros(2, 6))
    a = model(x, t, features=torch.randn(2, 6))
    assert not torch.allclose(a, model(x, t, features=torch.randn(2, 6)))
    assert not torch.allclose(a, model(x, t, **null))
    assert DiT(SIZES["tiny"], 8, 4, 2, condition="none").null_condition(2) == {}


def test_code_init_std_sets_the_table_and_the_mean_shrinks_by_sqrt_length():
    length, vocab = 128, 64
    for std in (0.02, 0.5):
        torch.manual_seed(0)
        model = DiT(SIZES["tiny"], 8, 4, 4, condition="code", code_length=length,
                    code_vocab=vocab, code_init_std=std)
        table = model.code_embedder.table.weight
        assert table.std().item() == pytest.approx(std, rel=0.02)
        codes = torch.randint(0, vocab, (4096, length))
        mean = model.code_embedder(codes)          # (B, hidden): the condition of each code
        assert mean.std().item() == pytest.approx(std / length ** 0.5, rel=0.05)


def test_code_lr_mult_moves_the_table_that_many_times_farther_on_adams_first_step():
    """Adam's first step moves every element by lr * sign(gradient): the table by
    lr x code_lr_mult, everything else by lr; a model without a table has one group."""
    from dlc.stages.train_dit import parameter_groups

    model = small()
    groups = parameter_groups(model, code_lr_mult=30.0)
    assert [g["lr_mult"] for g in groups] == [1.0, 30.0]
    assert groups[1]["params"] == [model.code_embedder.table.weight]
    assert sum(len(g["params"]) for g in groups) == len(
        [p for p in model.parameters() if p.requires_grad])
    for group in groups:
        group["lr"] = 1e-3 * group["lr_mult"]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        step = (before[name] - p.detach()).abs()
        expected = 30e-3 if name == "code_embedder.table.weight" else 1e-3
        torch.testing.assert_close(step, torch.full_like(step, expected), rtol=1e-4, atol=1e-7)
    assert len(parameter_groups(small("none"), 30.0)) == 1

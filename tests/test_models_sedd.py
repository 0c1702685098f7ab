import math

import torch

from dlc.diffusion.absorbing import AbsorbingDiffusion
from dlc.models.sedd import SIZES, SEDDTransformer, apply_rotary, rotary_tables

VOCAB, LENGTH = 16, 12


def test_untrained_network_says_uniform_and_has_the_right_shape():
    model = SEDDTransformer(VOCAB, LENGTH, SIZES["tiny"])
    tokens = torch.randint(0, VOCAB + 1, (3, LENGTH))
    sigma = torch.tensor([0.01, 1.0, 6.0])
    log_score = model(tokens, sigma)
    assert log_score.shape == (3, LENGTH, VOCAB)
    # p(x_0 = y | x_t) = s_y (e^sigma - 1) = 1 / V everywhere.
    posterior = log_score.exp() * torch.expm1(sigma)[:, None, None]
    torch.testing.assert_close(posterior, torch.full_like(posterior, 1 / VOCAB))


def trained_looking(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.abs().sum() == 0:
                parameter.normal_(0, 0.05)
    return model.eval()


def test_attention_is_bidirectional():
    model = trained_looking(SEDDTransformer(VOCAB, LENGTH, SIZES["tiny"], dropout=0.0))
    tokens = torch.full((1, LENGTH), VOCAB)
    changed = tokens.clone()
    changed[0, -1] = 3  # reveal the last token: the first position's scores must move
    sigma = torch.tensor([1.0])
    assert not torch.allclose(model(tokens, sigma)[0, 0], model(changed, sigma)[0, 0])


def test_rotary_makes_attention_depend_on_relative_position_only():
    cos, sin = rotary_tables(32, 8)
    q, k = torch.randn(8), torch.randn(8)

    def score(i, j):
        qi = apply_rotary(q.expand(1, 1, 32, 8), cos, sin)[0, 0, i]
        kj = apply_rotary(k.expand(1, 1, 32, 8), cos, sin)[0, 0, j]
        return (qi * kj).sum()

    torch.testing.assert_close(score(3, 7), score(20, 24))
    torch.testing.assert_close(score(0, 0), (q * k).sum())


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    process = AbsorbingDiffusion(VOCAB)
    model = SEDDTransformer(VOCAB, LENGTH, SIZES["tiny"], dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    codes = torch.randint(0, 4, (32, LENGTH))  # only tokens 0..3 occur: learnable at once
    t = torch.rand(32) * 0.9 + 0.05
    uniform = torch.rand(codes.shape, generator=torch.Generator().manual_seed(0))
    noisy = process.corrupt(codes, t, uniform)
    sigma = process.noise.total(t)
    losses = []
    for _ in range(5):
        loss = process.score_entropy(model(noisy, sigma), noisy, codes, t).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and math.isfinite(losses[-1])


def test_sizes_match_the_papers_parameter_counts():
    """The SEDD paper: small 93.2M, medium 322.5M (V = 256 codes + mask, L = 512)."""
    with torch.device("meta"):
        counts = {name: sum(p.numel() for p in SEDDTransformer(256, 512, SIZES[name]).parameters())
                  for name in ("small", "medium")}
    assert round(counts["small"] / 1e6, 1) == 93.2
    assert round(counts["medium"] / 1e6, 1) == 322.5

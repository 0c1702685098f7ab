"""SEDD-absorb math against exact answers on a small known distribution over short codes."""

import math

import pytest
import torch

from dlc.diffusion.absorbing import AbsorbingDiffusion, LogLinearNoise, gumbel_argmax

VOCAB, LENGTH = 3, 3


def known_distribution(seed: int = 0) -> torch.Tensor:
    """A correlated distribution with full support over the V^L = 27 codes."""
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(2.0 * torch.randn(VOCAB ** LENGTH, generator=generator,
                                           dtype=torch.float64), dim=0)


GRID = torch.cartesian_prod(*[torch.arange(VOCAB)] * LENGTH)   # row k = code k in base V


def exact_log_score(probabilities, tokens, sigma):
    """log s_{i,y}(x_t) = log((1 - m) / m) + log p_0(x_0^i = y | unmasked tokens of x_t)."""
    out = torch.empty(*tokens.shape, VOCAB, dtype=torch.float64)
    m = 1 - torch.exp(-sigma.double())
    for b in range(len(tokens)):
        visible = tokens[b] != VOCAB
        weights = probabilities * (GRID[:, visible] == tokens[b][visible]).all(dim=1)
        for i in range(LENGTH):
            marginal = torch.zeros(VOCAB, dtype=torch.float64).index_add_(0, GRID[:, i], weights)
            out[b, i] = torch.log(marginal / weights.sum()) + torch.log((1 - m[b]) / m[b])
    return out


def oracle(probabilities):
    """The exact score as a lookup over all (V + 1)^L partially masked codes (vectorised)."""
    states = torch.cartesian_prod(*[torch.arange(VOCAB + 1)] * LENGTH)
    m_half = torch.tensor([math.log(2.0)], dtype=torch.float64)   # sigma with (1 - m) / m = 1
    table = torch.cat([exact_log_score(probabilities, state[None], m_half) for state in states])
    place = (VOCAB + 1) ** torch.arange(LENGTH - 1, -1, -1)

    def score_fn(tokens, sigma):
        m = 1 - torch.exp(-sigma.double())
        return table[(tokens * place).sum(-1)] + torch.log((1 - m) / m)[:, None, None]

    return score_fn


def codes_to_index(codes):
    return (codes * VOCAB ** torch.arange(LENGTH - 1, -1, -1)).sum(-1)


def total_variation(codes, probabilities):
    counts = torch.bincount(codes_to_index(codes), minlength=VOCAB ** LENGTH).double()
    return 0.5 * (counts / counts.sum() - probabilities).abs().sum().item()


def test_log_linear_noise():
    noise = LogLinearNoise(1e-3)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(noise.mask_prob(t), 1 - torch.exp(-noise.total(t)))
    torch.testing.assert_close(noise.mask_prob(t), (1 - 1e-3) * t)
    h = 1e-6  # rate is the derivative of the total noise
    torch.testing.assert_close(noise.rate(t[:2]),
                               (noise.total(t[:2] + h) - noise.total(t[:2] - h)) / (2 * h))


def test_corrupt_masks_at_rate_m():
    process = AbsorbingDiffusion(VOCAB)
    clean = torch.zeros(4000, 64, dtype=torch.long)
    t = torch.full((4000,), 0.4)
    uniform = torch.rand(clean.shape, generator=torch.Generator().manual_seed(0))
    noisy = process.corrupt(clean, t, uniform)
    assert (noisy == VOCAB).double().mean().item() == pytest.approx(0.4 * (1 - 1e-3), abs=3e-3)
    assert set(noisy.unique().tolist()) == {0, VOCAB}


def test_score_entropy_is_nonnegative_and_zero_at_the_conditional_truth():
    process = AbsorbingDiffusion(VOCAB)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, VOCAB, (64, LENGTH), generator=generator)
    t = torch.rand(64, generator=generator) * 0.98 + 0.01
    noisy = process.corrupt(clean, t, torch.rand(clean.shape, generator=generator))
    random_scores = torch.randn(64, LENGTH, VOCAB, generator=generator)
    assert (process.score_entropy(random_scores, noisy, clean, t) >= 0).all()
    m = process.noise.mask_prob(t)[:, None, None]
    truth = torch.full((64, LENGTH, VOCAB), -math.inf)
    truth.scatter_(-1, clean[..., None], torch.log((1 - m) / m).expand(-1, LENGTH, 1))
    torch.testing.assert_close(process.score_entropy(truth, noisy, clean, t),
                               torch.zeros(64), atol=1e-5, rtol=0)


def test_expected_loss_is_minimised_by_the_true_concrete_score():
    """E over x_0 ~ p(x_0 | x_t) of the loss is smallest, with zero gradient, at the exact
    concrete score of the known distribution."""
    probabilities = known_distribution()
    process = AbsorbingDiffusion(VOCAB)
    noisy = torch.tensor([[VOCAB, 1, VOCAB]])
    t = torch.tensor([0.6])
    sigma = process.noise.total(t.double())
    consistent = (GRID[:, 1] == 1)
    posterior = probabilities * consistent / (probabilities * consistent).sum()

    def expected_loss(log_score):
        return sum(posterior[k] * process.score_entropy(log_score, noisy, GRID[k][None], t)
                   for k in range(len(GRID)) if posterior[k] > 0)

    truth = exact_log_score(probabilities, noisy, sigma).float().requires_grad_()
    best = expected_loss(truth)
    best.backward()
    masked_grad = truth.grad[0, [0, 2]]
    assert masked_grad.abs().max().item() < 1e-4
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        perturbed = truth.detach() + 0.3 * torch.randn(truth.shape, generator=generator)
        assert expected_loss(perturbed).item() > best.item()


# With 20,000 draws over 27 codes a perfect sampler has TV of about 0.01. Tau-leaping's only
# error is that positions unmasked in the same step are drawn independently (measured:
# TV 0.028 at 16 steps, 0.014 at 128); Euler's is its first-order step (0.008 at 256 steps).
@pytest.mark.parametrize("method, steps", [("analytic", 128), ("euler", 256)])
def test_samplers_with_the_exact_score_reproduce_the_distribution(method, steps):
    probabilities = known_distribution()
    process = AbsorbingDiffusion(VOCAB)
    codes = process.sample(oracle(probabilities), batch=20_000, length=LENGTH, steps=steps,
                           method=method, generator=torch.Generator().manual_seed(0))
    assert codes.max().item() < VOCAB  # the mask never survives the final step
    assert total_variation(codes, probabilities) < 0.02


def test_eta_zero_is_the_plain_sampler_bit_for_bit_and_remasking_still_samples():
    probabilities = known_distribution(1)
    process = AbsorbingDiffusion(VOCAB)
    score = oracle(probabilities)

    def run(eta):
        return process.sample(score, 3000, LENGTH, 32, remask_eta=eta,
                              generator=torch.Generator().manual_seed(5),
                              remask_generator=torch.Generator().manual_seed(6))

    plain = process.sample(score, 3000, LENGTH, 32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(run(0.0), plain)
    remasked = run(0.05)
    assert not torch.equal(remasked, plain)
    assert total_variation(remasked, probabilities) < 0.05


def test_measured_remask_rate_inside_the_window_is_eta():
    probabilities = known_distribution(2)
    process = AbsorbingDiffusion(VOCAB)
    stats = []
    process.sample(oracle(probabilities), 4000, LENGTH, 64, remask_eta=0.05,
                   remask_window=(0.3, 0.55), generator=torch.Generator().manual_seed(0),
                   remask_generator=torch.Generator().manual_seed(1), stats=stats)
    assert stats and all(0.3 < t < 0.55 for t, _, _ in stats)
    decoded = sum(d for _, d, _ in stats)
    remasked = sum(r for _, _, r in stats)
    assert remasked / decoded == pytest.approx(0.05, abs=0.005)


def test_gumbel_argmax_draws_from_the_normalised_weights():
    weights = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    draws = gumbel_argmax(torch.log(weights * 7.0).expand(100_000, 3),
                          torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=3).double() / 100_000
    torch.testing.assert_close(frequencies, weights, atol=5e-3, rtol=0)

"""Improved-DDPM process against closed forms and an independent library (diffusers)."""

import math

import numpy as np
import pytest
import torch

from dlc.diffusion.gaussian import (
    GaussianDiffusion,
    cosine_alphas_cumprod,
    discretized_gaussian_log_likelihood,
    make_betas,
    normal_kl,
)


@pytest.mark.parametrize("schedule, theirs", [("linear", "linear"),
                                              ("cosine", "squaredcos_cap_v2")])
def test_betas_match_diffusers(schedule, theirs):
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs).betas.double()
    np.testing.assert_allclose(make_betas(schedule, 1000), reference.numpy(), rtol=1e-5,
                               atol=1e-7)


def test_cosine_alpha_bar_closed_form():
    steps, s = 1000, 0.008
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    alphas_cumprod = cosine_alphas_cumprod(steps)
    for t in (0, 10, 500, 900):  # before the 0.999 cap binds
        assert alphas_cumprod[t] == pytest.approx(f(t + 1) / f(0), rel=1e-12)
    assert alphas_cumprod[-1] < 1e-4  # x_T is (almost) pure noise


def test_posterior_is_bayes_rule():
    """q(x_{t-1} | x_t, x_0) from the product of the two Gaussians, written independently."""
    process = GaussianDiffusion.from_schedule("cosine", 200)
    abar, betas = process.alphas_cumprod, process.betas
    x0, xt = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    for step in (1, 50, 199):
        t = torch.full((6,), step)
        mean, var, _ = process.q_posterior(x0, xt, t)
        precision = 1 / (1 - abar[step - 1]) + (1 - betas[step]) / betas[step]
        expected_var = 1 / precision
        expected_mean = expected_var * (math.sqrt(abar[step - 1]) * x0 / (1 - abar[step - 1])
                                        + math.sqrt(1 - betas[step]) * xt / betas[step])
        torch.testing.assert_close(var.expand_as(mean), torch.full_like(mean, expected_var))
        torch.testing.assert_close(mean, expected_mean)


def test_q_sample_moments_and_inverse():
    process = GaussianDiffusion.from_schedule("linear", 1000)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 2.0)
    t = torch.full((200_000,), 300)
    noise = torch.randn(x0.shape, generator=generator)
    xt = process.q_sample(x0, t, noise)
    abar = process.alphas_cumprod[300]
    assert xt.mean().item() == pytest.approx(2 * math.sqrt(abar), abs=0.01)
    assert xt.var().item() == pytest.approx(1 - abar, rel=0.01)
    torch.testing.assert_close(process.predict_x0(xt, t, noise), x0, atol=1e-4, rtol=0)


def test_normal_kl_matches_torch_distributions():
    m1, m2 = torch.randn(50), torch.randn(50)
    lv1, lv2 = torch.randn(50), torch.randn(50)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, torch.exp(0.5 * lv1)),
        torch.distributions.Normal(m2, torch.exp(0.5 * lv2)))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected)


def test_discretized_likelihood_is_a_distribution_over_256_bins():
    bins = torch.linspace(-1, 1, 256)
    for mean, log_scale in ((0.1, -3.0), (-0.95, -2.0), (0.5, -6.0)):
        log_p = discretized_gaussian_log_likelihood(
            bins, torch.full_like(bins, mean), torch.full_like(bins, log_scale))
        assert log_p.exp().sum().item() == pytest.approx(1.0, abs=2e-3)


def test_learned_range_endpoints():
    process = GaussianDiffusion.from_schedule("cosine", 100, learn_sigma=True)
    xt, t = torch.zeros(2, 1, dtype=torch.float64), torch.tensor([5, 60])
    for v, expected in ((1.0, np.log(process.betas)),
                        (-1.0, process.posterior_log_variance_clipped)):
        output = torch.cat([torch.zeros_like(xt), torch.full_like(xt, v)], dim=1)
        _, log_var = process.split_output(output, xt, t)
        np.testing.assert_allclose(log_var.squeeze(1).numpy(), expected[[5, 60]])


def test_optimal_denoiser_has_zero_mse_and_variance_loss_only_trains_sigma():
    """For data concentrated at 0, eps = x_t / sqrt(1 - abar_t) is exact."""
    process = GaussianDiffusion.from_schedule("cosine", 1000, learn_sigma=True)
    scale = torch.as_tensor(np.sqrt(1 - process.alphas_cumprod), dtype=torch.float32)
    v = torch.zeros(1, requires_grad=True)

    def oracle(xt, t):
        return torch.cat([xt / scale[t][:, None], v.expand(len(xt), 1).clone()], dim=1)

    x0 = torch.zeros(512, 1)
    terms = process.training_losses(oracle, x0, torch.randint(1, 1000, (512,)))
    assert terms["mse"].abs().max().item() < 1e-8
    terms["loss"].mean().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all()


def _exact_model(sampler, mu, s, learn_sigma):
    """The exact eps(x_t) for data N(mu, s^2) and, with learn_sigma, the v that puts the
    reverse variance at its exact value beta_tilde_t + c0_t^2 Var(x_0 | x_t)."""
    abar = torch.as_tensor(sampler.alphas_cumprod)
    position = torch.zeros(int(sampler.timestep_map.max()) + 1, dtype=torch.long)
    position[torch.as_tensor(sampler.timestep_map)] = torch.arange(sampler.num_timesteps)

    def model(xt, t):
        i = position[t]
        a = abar[i][:, None].float()
        eps = (xt - a.sqrt() * mu) * (1 - a).sqrt() / (a * s ** 2 + 1 - a)
        if not learn_sigma:
            return eps
        var_x0 = s ** 2 * (1 - a) / (a * s ** 2 + 1 - a)
        c0 = torch.as_tensor(sampler.posterior_mean_coef_x0)[i][:, None]
        posterior_variance = torch.as_tensor(sampler.posterior_variance)[i][:, None]
        log_var = torch.log(posterior_variance + c0 ** 2 * var_x0)
        low = torch.as_tensor(sampler.posterior_log_variance_clipped)[i][:, None]
        high = torch.as_tensor(np.log(sampler.betas))[i][:, None]
        return torch.cat([eps, (2 * (log_var - low) / (high - low) - 1).float()], dim=1)

    return model


@pytest.mark.parametrize("learn_sigma, sampling_steps", [(False, 1000), (True, 50),
                                                          (True, 10)])
def test_ancestral_sampling_with_exact_model_recovers_gaussian(learn_sigma, sampling_steps):
    """With the exact mean and variance, every reverse step is exact for Gaussian data, so any
    respacing must give N(mu, s^2); with fixed variance only the full chain does."""
    mu, s = 1.5, 0.3
    process = GaussianDiffusion.from_schedule("cosine", 1000, learn_sigma=learn_sigma)
    sampler = process.respaced(sampling_steps)
    model = _exact_model(sampler, mu, s, learn_sigma)
    x = sampler.p_sample_loop(model, (10_000, 1), generator=torch.Generator().manual_seed(0))
    assert x.mean().item() == pytest.approx(mu, abs=0.015)
    assert x.std().item() == pytest.approx(s, rel=0.03)


def test_respacing_keeps_alpha_bars_and_maps_timesteps():
    process = GaussianDiffusion.from_schedule("linear", 1000)
    respaced = process.respaced(10)
    assert respaced.num_timesteps == 10
    np.testing.assert_allclose(respaced.alphas_cumprod,
                               process.alphas_cumprod[respaced.timestep_map])
    assert respaced.timestep_map[0] == 0 and respaced.timestep_map[-1] == 999
    same = process.respaced(1000)
    np.testing.assert_allclose(same.betas, process.betas)
    with pytest.raises(ValueError):
        process.respaced(0)


def test_vlb_term_known_answer_with_the_true_mean():
    """With the true epsilon, KL(q || p) is 0 at the posterior variance (v = -1) and
    0.5 (r - 1 - log r) / ln 2 bits with r = beta_tilde / beta at v = +1."""
    process = GaussianDiffusion.from_schedule("linear", 100, learn_sigma=True)
    x0, noise = torch.randn(4, 2, 3, 3, dtype=torch.float64), torch.randn(4, 2, 3, 3,
                                                                         dtype=torch.float64)
    t = torch.tensor([1, 10, 50, 99])
    xt = process.q_sample(x0, t, noise)
    for v, expected in ((-1.0, np.zeros(4)), (1.0, None)):
        output = torch.cat([noise, torch.full_like(noise, v)], dim=1)
        if expected is None:
            r = process.posterior_variance[t] / process.betas[t]
            expected = 0.5 * (r - 1 - np.log(r)) / np.log(2)
        np.testing.assert_allclose(process.vlb_terms(output, x0, xt, t).numpy(), expected,
                                   atol=1e-9)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_diffusers(eta):
    from diffusers import DDIMScheduler

    steps = 1000
    process = GaussianDiffusion.from_schedule("linear", steps, learn_sigma=False)
    scheduler = DDIMScheduler(num_train_timesteps=steps, trained_betas=process.betas,
                              clip_sample=False, set_alpha_to_one=True,
                              prediction_type="epsilon")
    scheduler.set_timesteps(steps)
    # diffusers keeps alpha-bar in float32: give it ours in float64 to compare the formulas
    scheduler.alphas_cumprod = torch.from_numpy(process.alphas_cumprod)
    generator = torch.Generator().manual_seed(0)
    for i in (999, 500, 10, 1):
        x, eps, noise = (torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64)
                         for _ in range(3))
        t = torch.full((3,), i)
        ours = process.ddim_step(eps, x, t, noise, eta=eta)
        theirs = scheduler.step(eps, i, x, eta=eta, variance_noise=noise).prev_sample
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)


def test_ddim_eta_one_has_the_ddpm_posterior_variance_and_mean():
    process = GaussianDiffusion.from_schedule("linear", 50, learn_sigma=False)
    x, eps = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    t = torch.tensor([20, 20])
    zero = torch.zeros_like(x)
    mean = process.ddim_step(eps, x, t, zero, eta=1.0)
    posterior_mean, variance, _ = process.q_posterior(process.predict_x0(x, t, eps), x, t)
    torch.testing.assert_close(mean, posterior_mean)
    spread = process.ddim_step(eps, x, t, torch.ones_like(x), eta=1.0) - mean
    torch.testing.assert_close(spread ** 2, variance.expand_as(spread))


def test_classifier_free_guidance_math_and_interval():
    from dlc.diffusion.gaussian import classifier_free_guidance

    calls = []

    def model(x, t, codes):
        calls.append(len(x))
        eps = codes.float().mean(dim=1, keepdim=True).expand(-1, 2) + x
        return torch.cat([eps, torch.full_like(x, 0.5) + codes[:, :2].float()], dim=1)

    x = torch.randn(3, 2)
    codes, null = torch.full((3, 4), 2), torch.full((3, 4), 9)
    t = torch.full((3,), 100)
    guided = classifier_free_guidance(model, 3.0, {"codes": null})
    out = guided(x, t, codes=codes)
    eps_c, eps_u = x + 2.0, x + 9.0
    torch.testing.assert_close(out[:, :2], eps_u + 3.0 * (eps_c - eps_u))
    torch.testing.assert_close(out[:, 2:], torch.full_like(x, 2.5))    # conditional variance
    assert calls == [6]                                                # one doubled batch
    unguided = classifier_free_guidance(model, 1.0, {"codes": null})(x, t, codes=codes)
    torch.testing.assert_close(unguided[:, :2], eps_c)
    assert not torch.allclose(unguided, out)                           # the scale matters
    interval = classifier_free_guidance(model, 3.0, {"codes": null}, max_t=50)
    torch.testing.assert_close(interval(x, t, codes=codes)[:, :2], eps_c)   # t > max_t
    torch.testing.assert_close(interval(x, torch.full((3,), 50), codes=codes), out)
    # An unconditional network has no null condition: guidance leaves it as it is.
    assert classifier_free_guidance(model, 3.0, {}) is model


def test_sample_loop_samplers_are_seeded_and_ddim_with_an_exact_point_mass_lands_on_it():
    process = GaussianDiffusion.from_schedule("linear", 1000, learn_sigma=False).respaced(20)
    target = torch.tensor([0.3, -0.7])

    alphas_cumprod = torch.as_tensor(GaussianDiffusion.from_schedule("linear", 1000)
                                     .alphas_cumprod)

    def exact(x, t):  # data = a point mass at mu: eps = (x - sqrt(abar) mu) / sqrt(1 - abar)
        abar = alphas_cumprod[t].view(-1, 1).float()
        return (x - abar.sqrt() * target) / (1 - abar).sqrt()

    x = process.sample_loop(exact, (5, 2), "ddim", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, target.expand(5, 2), atol=1e-4, rtol=0)
    a, b = (process.sample_loop(exact, (5, 2), "ddpm", generator=torch.Generator().manual_seed(1))
            for _ in range(2))
    assert torch.equal(a, b)


def test_min_snr_weights_the_mse_by_min_snr_gamma_over_snr():
    """Min-SNR-gamma: w_t = min(abar/(1-abar), gamma) / (abar/(1-abar)); the loss is w_t times
    the unweighted MSE, which terms["mse"] still reports; gamma none is L_simple."""
    plain = GaussianDiffusion.from_schedule("linear", 1000, learn_sigma=False)
    weighted = GaussianDiffusion.from_schedule("linear", 1000, learn_sigma=False,
                                               min_snr_gamma=5.0)
    abar = plain.alphas_cumprod
    snr = abar / (1 - abar)
    x0, noise = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    t = torch.tensor([0, 100, 400, 999])
    model = lambda x, step: 0.5 * x  # noqa: E731  (any fixed network)
    base = plain.training_losses(model, x0, t, noise=noise)
    terms = weighted.training_losses(model, x0, t, noise=noise)
    torch.testing.assert_close(terms["mse"], base["mse"])
    torch.testing.assert_close(base["loss"], base["mse"])
    expected = torch.tensor([min(snr[s], 5.0) / snr[s] for s in t.tolist()],
                            dtype=torch.float32)
    torch.testing.assert_close(terms["loss"], expected * base["mse"])
    assert snr[100] > 5.0 > snr[400]  # both regimes are tested: capped and weight 1
    respaced = weighted.respaced(50)
    np.testing.assert_allclose(respaced.mse_weights,
                               np.minimum(respaced.alphas_cumprod / (1 - respaced.alphas_cumprod),
                                          5.0) / (respaced.alphas_cumprod
                                                  / (1 - respaced.alphas_cumprod)))


def test_v_prediction_round_trips_and_the_exact_v_model_samples_the_gaussian():
    """v = sqrt(abar) eps - sqrt(1 - abar) x_0 inverts to eps = sqrt(abar) v + sqrt(1 - abar)
    x_t; a network giving the exact v (from the exact epsilon of N(mu, s^2) data) trains with
    zero MSE on v and samples N(mu, s^2) like the epsilon network does."""
    process = GaussianDiffusion.from_schedule("cosine", 1000, learn_sigma=True, prediction="v")
    x0, noise = torch.randn(8, 3), torch.randn(8, 3)
    t = torch.randint(0, 1000, (8,))
    xt = process.q_sample(x0, t, noise)
    torch.testing.assert_close(process.eps_from_v(xt, t, process.v_target(x0, t, noise)), noise)

    mu, s = 1.5, 0.3
    sampler = process.respaced(50)
    eps_model = _exact_model(sampler, mu, s, learn_sigma=True)
    abar = torch.as_tensor(process.alphas_cumprod)

    def v_model(x, step):
        eps, variance = eps_model(x, step).chunk(2, dim=1)
        a = abar[step][:, None].float()
        return torch.cat([(eps - (1 - a).sqrt() * x) / a.sqrt(), variance], dim=1)

    x = sampler.p_sample_loop(v_model, (10_000, 1), generator=torch.Generator().manual_seed(0))
    assert x.mean().item() == pytest.approx(mu, abs=0.015)
    assert x.std().item() == pytest.approx(s, rel=0.03)

    gamma = 5.0
    weighted = GaussianDiffusion.from_schedule("cosine", 1000, prediction="v",
                                               min_snr_gamma=gamma)
    snr = weighted.alphas_cumprod / (1 - weighted.alphas_cumprod)
    np.testing.assert_allclose(weighted.mse_weights, np.minimum(snr, gamma) / (snr + 1))
    with pytest.raises(ValueError, match="prediction"):
        GaussianDiffusion.from_schedule("cosine", 10, prediction="x0")

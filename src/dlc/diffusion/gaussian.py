"""Gaussian diffusion of improved DDPM (Nichol & Dhariwal 2021): schedules, the hybrid loss
L_simple + lambda * L_vlb with learned-range variance, and respaced ancestral sampling.

No network lives here: a model is any callable `model(x_t, t, **kwargs)` returning epsilon, or
[epsilon, v] stacked on dim 1 when the variance is learned (v in [-1, 1] interpolates the log
variance between the posterior variance and beta_t).
All schedule arithmetic is float64; tensors are cast to the data's dtype when gathered.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from dlc.config import DiTConfig

Model = Callable[..., torch.Tensor]


def cosine_alphas_cumprod(steps: int, s: float = 0.008) -> np.ndarray:
    """alpha-bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), betas capped at 0.999."""
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f(i + 1) / f(i), 0.999) for i in range(steps)]
    return np.cumprod(1.0 - np.array(betas, dtype=np.float64))


def make_betas(schedule: str, steps: int) -> np.ndarray:
    if schedule == "linear":  # DDPM's 1e-4 .. 0.02 for T = 1000, rescaled for other T
        scale = 1000 / steps
        return np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)
    if schedule == "cosine":
        alphas_cumprod = cosine_alphas_cumprod(steps)
        return 1.0 - alphas_cumprod / np.concatenate([[1.0], alphas_cumprod[:-1]])
    raise ValueError(f"unknown beta schedule {schedule!r} (linear or cosine)")


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, mean, log_scale) -> torch.Tensor:
    """log P(x) for images in [-1, 1] quantised to 256 bins (the DDPM decoder), elementwise."""
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_std_normal_cdf(inv_std * (centred + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_std * (centred - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def gaussian_log_likelihood(x, mean, log_var) -> torch.Tensor:
    """log N(x; mean, exp(log_var)) for continuous data, elementwise."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * torch.exp(-log_var))


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


class GaussianDiffusion:
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), t = 0 .. T-1, and its reverse.

    `timestep_map[t]` is the original-process step a respaced process feeds the model, so a
    model trained on T = 1000 steps samples with any subset of them.
    """

    def __init__(self, betas: np.ndarray, learn_sigma: bool = True, vlb_weight: float = 0.001,
                 decoder: str = "gaussian", timestep_map: np.ndarray | None = None,
                 min_snr_gamma: float | None = None, prediction: str = "eps"):
        if decoder not in ("gaussian", "discretized"):
            raise ValueError(f"decoder must be 'gaussian' or 'discretized', got {decoder!r}")
        if prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
        self.betas = np.asarray(betas, dtype=np.float64)
        self.num_timesteps = len(self.betas)
        self.learn_sigma, self.vlb_weight, self.decoder = learn_sigma, vlb_weight, decoder
        self.min_snr_gamma, self.prediction = min_snr_gamma, prediction
        self.timestep_map = (np.arange(self.num_timesteps) if timestep_map is None
                             else np.asarray(timestep_map))

        alphas = 1.0 - self.betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        # Posterior q(x_{t-1} | x_t, x_0) = N(c0 x_0 + ct x_t, beta_tilde_t).
        self.posterior_variance = (self.betas * (1.0 - self.alphas_cumprod_prev)
                                   / (1.0 - self.alphas_cumprod))
        # beta_tilde_0 = 0: clip its log to beta_tilde_1 (as improved DDPM does).
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        # Fixed-variance choice: beta_t ("large"), with beta_tilde_1 at t = 0 (improved DDPM).
        self.fixed_log_variance = np.log(np.append(self.posterior_variance[1], self.betas[1:]))
        self.posterior_mean_coef_x0 = (self.betas * np.sqrt(self.alphas_cumprod_prev)
                                       / (1.0 - self.alphas_cumprod))
        self.posterior_mean_coef_xt = ((1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas)
                                       / (1.0 - self.alphas_cumprod))
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)
        self.log_betas = np.log(self.betas)
        # Weight of each step's MSE: 1 (DDPM's L_simple), or Min-SNR-gamma (Hang et al. 2023):
        # min(SNR_t, gamma) / SNR_t for epsilon, min(SNR_t, gamma) / (SNR_t + 1) for v, with
        # SNR_t = abar_t / (1 - abar_t); both are min(SNR_t, gamma) times the x_0 error. It
        # lowers the many low-noise steps, which teach detail, against the high-noise ones,
        # which decide what the image is.
        snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        scale = snr if prediction == "eps" else snr + 1.0
        self.mse_weights = (np.ones_like(snr) if min_snr_gamma is None
                            else np.minimum(snr, min_snr_gamma) / scale)
        self._device_tables: dict = {}

    @classmethod
    def from_schedule(cls, schedule: str, steps: int, **kwargs) -> GaussianDiffusion:
        return cls(make_betas(schedule, steps), **kwargs)

    def respaced(self, sampling_steps: int) -> GaussianDiffusion:
        """The process restricted to `sampling_steps` evenly spaced steps (same alpha-bars)."""
        if not 1 <= sampling_steps <= self.num_timesteps:
            raise ValueError(f"sampling_steps must be in [1, {self.num_timesteps}]")
        keep = np.unique(np.round(np.linspace(0, self.num_timesteps - 1, sampling_steps))
                         .astype(int))
        alphas_cumprod = self.alphas_cumprod[keep]
        betas = 1.0 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])
        return GaussianDiffusion(betas, self.learn_sigma, self.vlb_weight, self.decoder,
                                 timestep_map=self.timestep_map[keep],
                                 min_snr_gamma=self.min_snr_gamma, prediction=self.prediction)

    # -- helpers ------------------------------------------------------------------------------
    def _table(self, array: np.ndarray, device: torch.device) -> torch.Tensor:
        """A schedule array on `device`, copied there once (not on every step of a GPU run)."""
        key = (id(array), device)
        if key not in self._device_tables:
            self._device_tables[key] = torch.as_tensor(array, device=device)
        return self._device_tables[key]

    def _gather(self, array: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        values = self._table(array, t.device)[t].to(like.dtype)
        return values.view(-1, *([1] * (like.ndim - 1)))

    def _model_t(self, t: torch.Tensor) -> torch.Tensor:
        return self._table(self.timestep_map, t.device)[t]

    # -- forward process ----------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return (self._gather(self.sqrt_alphas_cumprod, t, x0) * x0
                + self._gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def q_posterior(self, x0, xt, t):
        mean = (self._gather(self.posterior_mean_coef_x0, t, xt) * x0
                + self._gather(self.posterior_mean_coef_xt, t, xt) * xt)
        return (mean, self._gather(self.posterior_variance, t, xt),
                self._gather(self.posterior_log_variance_clipped, t, xt))

    def predict_x0(self, xt, t, eps):
        return (self._gather(self.sqrt_recip_alphas_cumprod, t, xt) * xt
                - self._gather(self.sqrt_recipm1_alphas_cumprod, t, xt) * eps)

    # -- reverse process ----------------------------------------------------------------------
    def v_target(self, x0, t, noise):
        """v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022)."""
        return (self._gather(self.sqrt_alphas_cumprod, t, x0) * noise
                - self._gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0)

    def eps_from_v(self, xt, t, v):
        """x_t = a x_0 + s eps and v = a eps - s x_0 with a^2 + s^2 = 1 give eps = a v + s x_t."""
        return (self._gather(self.sqrt_alphas_cumprod, t, xt) * v
                + self._gather(self.sqrt_one_minus_alphas_cumprod, t, xt) * xt)

    def split_output(self, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Model output -> (eps, log variance of p(x_{t-1} | x_t)); a v-prediction is turned
        into the epsilon it implies, so every sampler reads epsilon."""
        prediction, variance = output.chunk(2, dim=1) if self.learn_sigma else (output, None)
        eps = prediction if self.prediction == "eps" else self.eps_from_v(xt, t, prediction)
        if variance is None:
            return eps, self._gather(self.fixed_log_variance, t, xt)
        min_log = self._gather(self.posterior_log_variance_clipped, t, xt)
        max_log = self._gather(self.log_betas, t, xt)
        frac = (variance + 1) / 2
        return eps, frac * max_log + (1 - frac) * min_log

    def p_mean_variance(self, output, xt, t, clip_x0: float | None = None):
        """Mean and log variance of p(x_{t-1} | x_t), and the x_0 the model predicts.

        clip_x0 bounds the predicted x_0 to [-clip_x0, clip_x0] (1.0 for images in [-1, 1]):
        near t = T the x_0 prediction divides by sqrt(alpha-bar_t) ~ 0, so without a bound a
        small epsilon error becomes a huge x_0 (the cosine schedule's capped last beta makes
        the first step amplify it ~30x)."""
        eps, log_var = self.split_output(output, xt, t)
        x0 = self.predict_x0(xt, t, eps)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        mean, _, _ = self.q_posterior(x0, xt, t)
        return mean, log_var, x0

    def vlb_terms(self, output, x0, xt, t) -> torch.Tensor:
        """Per-sample L_t in bits per dimension: KL(q || p) for t > 0, decoder NLL at t = 0."""
        true_mean, _, true_log_var = self.q_posterior(x0, xt, t)
        mean, log_var, _ = self.p_mean_variance(output, xt, t)
        kl = _mean_flat(normal_kl(true_mean, true_log_var, mean, log_var)) / math.log(2.0)
        if self.decoder == "discretized":
            nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var)
        else:
            nll = -gaussian_log_likelihood(x0, mean, log_var)
        nll = _mean_flat(nll) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, model: Model, x0: torch.Tensor, t: torch.Tensor,
                        noise: torch.Tensor | None = None, **model_kwargs) -> dict:
        """w_t L_simple (the MSE of epsilon or v; w_t = 1 unless Min-SNR) + lambda * T * L_t,
        the VLB term training only the variance. terms["mse"] is the unweighted MSE."""
        noise = torch.randn_like(x0) if noise is None else noise
        xt = self.q_sample(x0, t, noise)
        output = model(xt, self._model_t(t), **model_kwargs)
        prediction = output.chunk(2, dim=1)[0] if self.learn_sigma else output
        target = noise if self.prediction == "eps" else self.v_target(x0, t, noise)
        terms = {"mse": _mean_flat((target - prediction) ** 2)}
        terms["loss"] = self._gather(self.mse_weights, t, terms["mse"]) * terms["mse"]
        if self.learn_sigma:
            # Stop the gradient through the mean: the VLB only teaches the variance.
            frozen = torch.cat([prediction.detach(), output.chunk(2, dim=1)[1]], dim=1)
            # L_vlb = sum over T steps, estimated by T * L_t for one uniform t.
            terms["vlb"] = self.vlb_terms(frozen, x0, xt, t) * self.num_timesteps
            terms["loss"] = terms["loss"] + self.vlb_weight * terms["vlb"]
        return terms

    def predict_eps(self, xt, t, x0):
        """The epsilon that x_t and x_0 imply (DDIM re-derives it after x_0 is clipped)."""
        return ((self._gather(self.sqrt_recip_alphas_cumprod, t, xt) * xt - x0)
                / self._gather(self.sqrt_recipm1_alphas_cumprod, t, xt))

    def p_step(self, output, xt, t, noise, clip_x0: float | None = None) -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1} ~ p(x_{t-1} | x_t) (the mean alone at t = 0)."""
        mean, log_var, _ = self.p_mean_variance(output, xt, t, clip_x0=clip_x0)
        nonzero = (t != 0).to(xt.dtype).view(-1, *([1] * (xt.ndim - 1)))
        return mean + nonzero * torch.exp(0.5 * log_var) * noise

    def ddim_step(self, output, xt, t, noise, eta: float = 0.0,
                  clip_x0: float | None = None) -> torch.Tensor:
        """DDIM (Song et al. 2021, eq. 12): x_{t-1} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev -
        sigma^2) eps + sigma z, sigma = eta sqrt((1 - abar_prev) / (1 - abar) (1 - abar /
        abar_prev)); eta = 0 is deterministic, eta = 1 has DDPM's posterior variance."""
        eps, _ = self.split_output(output, xt, t)
        x0 = self.predict_x0(xt, t, eps)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        eps = self.predict_eps(xt, t, x0)
        abar = self._gather(self.alphas_cumprod, t, xt)
        abar_prev = self._gather(self.alphas_cumprod_prev, t, xt)
        sigma = eta * torch.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
        mean = torch.sqrt(abar_prev) * x0 + torch.sqrt(1 - abar_prev - sigma ** 2) * eps
        nonzero = (t != 0).to(xt.dtype).view(-1, *([1] * (xt.ndim - 1)))
        return mean + nonzero * sigma * noise

    @torch.no_grad()
    def sample_loop(self, model: Model, shape: tuple[int, ...], sampler: str = "ddpm",
                    eta: float = 0.0, generator: torch.Generator | None = None,
                    clip_x0: float | None = None, device: torch.device | str = "cpu",
                    progress: bool = False, **model_kwargs) -> torch.Tensor:
        """x_T ~ N(0, I) -> x_0 over this (possibly respaced) process, by ancestral sampling
        ("ddpm") or DDIM ("ddim", stochasticity eta). All noise comes from `generator`."""
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be ddpm or ddim, got {sampler!r}")
        x = torch.randn(shape, generator=generator, device=device)
        steps = range(self.num_timesteps - 1, -1, -1)
        if progress:
            from tqdm.auto import tqdm
            steps = tqdm(steps, desc="sampling", leave=False)
        for i in steps:
            t = torch.full((shape[0],), i, device=device, dtype=torch.long)
            output = model(x, self._model_t(t), **model_kwargs)
            noise = (torch.randn(shape, generator=generator, device=device) if i > 0
                     else torch.zeros(shape, device=device))
            x = (self.p_step(output, x, t, noise, clip_x0) if sampler == "ddpm"
                 else self.ddim_step(output, x, t, noise, eta, clip_x0))
        return x

    def p_sample_loop(self, model: Model, shape: tuple[int, ...], **kwargs) -> torch.Tensor:
        """Ancestral sampling x_T ~ N(0, I) -> x_0 (see sample_loop)."""
        return self.sample_loop(model, shape, "ddpm", **kwargs)


def classifier_free_guidance(model: Model, scale: float, null_kwargs: dict,
                             max_t: int | None = None) -> Model:
    """A model whose epsilon is eps_u + scale (eps_c - eps_u) on every channel, eps_u from the
    same network given `null_kwargs` (the null code); for a v-prediction network the same mix
    of v is the same guidance, epsilon being affine in v at one x_t. The learned variance is
    the conditional one. With max_t, guidance is applied only at (original-scale) steps
    t <= max_t (guidance interval); elsewhere, and when scale is 1, one conditional pass is all
    that runs. The samplers give every image of a batch the same t, so t[0] decides for the
    batch."""
    if not null_kwargs:  # an unconditional network: nothing to guide with
        return model

    def guided(x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        if scale == 1.0 or (max_t is not None and int(t[0]) > max_t):
            return model(x, t, **kwargs)
        both = {key: torch.cat([kwargs[key], null_kwargs[key]]) for key in null_kwargs}
        conditional, unconditional = model(torch.cat([x, x]), torch.cat([t, t]),
                                           **both).chunk(2)
        channels = x.shape[1]
        eps_c, rest = conditional[:, :channels], conditional[:, channels:]
        eps_u = unconditional[:, :channels]
        return torch.cat([eps_u + scale * (eps_c - eps_u), rest], dim=1)

    return guided


def build_process(cfg: DiTConfig) -> GaussianDiffusion:
    """DiT's process: the discretised decoder likelihood at t = 0, as its reference code."""
    d = cfg.diffusion
    return GaussianDiffusion.from_schedule(d.schedule, d.steps, learn_sigma=d.learn_sigma,
                                           vlb_weight=d.vlb_weight, decoder="discretized",
                                           min_snr_gamma=d.min_snr_gamma,
                                           prediction=d.prediction)


def sample_latents(cfg: DiTConfig, model: Model, process: GaussianDiffusion,
                   condition: dict, null: dict, shape, generator: torch.Generator,
                   device: torch.device, autocast) -> torch.Tensor:
    """Latents for one batch of conditions: respaced ancestral/DDIM sampling with CFG."""
    s = cfg.sample

    def network(x, t, **kwargs):
        with autocast:
            return model(x, t, **kwargs).float()

    guided = classifier_free_guidance(network, s.cfg_scale, null, s.cfg_max_t)
    return process.respaced(s.steps).sample_loop(guided, shape, s.sampler,
                                                 generator=generator, device=device,
                                                 **condition)

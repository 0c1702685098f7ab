"""SEDD with the absorbing ("mask") graph (Lou, Meng and Ermon 2024) and the DLC remasking
sampler. No network lives here: a score model is any callable
`score_fn(tokens (B, L) long, sigma (B,) float) -> log_score (B, L, V)`, the log concrete score
log p_t(x with x^i = y) / p_t(x) for every position i and every real token y in [0, V).
Only masked positions use it (an unmasked token never changes under this graph).

Notation: mask = V; sigma(t) is the total noise; m(t) = 1 - exp(-sigma(t)) is the probability that
a token is masked at time t. With the log-linear schedule m(t) = (1 - eps) t.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LogLinearNoise:
    """sigma(t) = -log(1 - (1 - eps) t): the masked fraction grows linearly in t."""

    eps: float = 1e-3

    def total(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-(1 - self.eps) * t)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma / dt."""
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def mask_prob(self, t: torch.Tensor) -> torch.Tensor:
        """m(t) = 1 - exp(-sigma(t))."""
        return (1 - self.eps) * t


def gumbel_argmax(log_weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One categorical draw per row from unnormalised log weights, Gumbel-max in float64
    (float32 Gumbel noise visibly biases rare tokens)."""
    uniform = torch.rand(log_weights.shape, dtype=torch.float64, generator=generator,
                         device=log_weights.device)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
    return (log_weights.double() + gumbel).argmax(dim=-1)


class AbsorbingDiffusion:
    def __init__(self, vocab_size: int, noise: LogLinearNoise | None = None):
        self.vocab_size = vocab_size
        self.mask = vocab_size
        self.noise = noise or LogLinearNoise()

    # -- forward process ----------------------------------------------------------------------
    def corrupt(self, tokens: torch.Tensor, t: torch.Tensor,
                uniform: torch.Tensor | None = None) -> torch.Tensor:
        """x_t: every token independently replaced by the mask with probability m(t);
        `uniform` (tokens' shape, U(0, 1)) are the draws, fresh ones when not given."""
        if uniform is None:
            uniform = torch.rand(tokens.shape, device=tokens.device)
        masked = uniform < self.noise.mask_prob(t)[:, None]
        return torch.where(masked, torch.full_like(tokens, self.mask), tokens)

    # -- loss -----------------------------------------------------------------------------------
    def score_entropy(self, log_score: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor,
                      t: torch.Tensor) -> torch.Tensor:
        """Per-sequence diffusion-weighted denoising score entropy, (B,).

        At a masked position the true ratio given x_0 is r = exp(-sigma) / (1 - exp(-sigma))
        = (1 - m) / m for y = x_0 and 0 for every other y, so the score entropy
            sum_y s_y - r log s_{x_0} + r (log r - 1)
        is >= 0 and 0 exactly at s = r e_{x_0}. It is weighted by sigma'(t) (SEDD's DWDSE) and
        summed over masked positions; unmasked positions contribute nothing.
        """
        masked = noisy == self.mask                                        # (B, L)
        m = self.noise.mask_prob(t)[:, None]
        ratio = ((1 - m) / m).expand_as(noisy)                            # r, (B, L)
        log_score = log_score.float()
        log_score_clean = log_score.gather(-1, clean[..., None])
        entropy = (torch.logsumexp(log_score, dim=-1).exp() - ratio * log_score_clean[..., 0]
                   + ratio * (torch.log(ratio) - 1))
        entropy = torch.where(masked, entropy, torch.zeros_like(entropy))
        return self.noise.rate(t) * entropy.sum(dim=-1)

    # -- sampling -------------------------------------------------------------------------------
    def _sigma(self, t: float, batch: int, device) -> torch.Tensor:
        """The total noise at time t for every row, as the score network takes it."""
        return self.noise.total(torch.full((batch,), t, dtype=torch.float64,
                                           device=device)).float()

    def _unmask_log_weights(self, log_score: torch.Tensor, t: float, s: float,
                            method: str) -> torch.Tensor:
        """Log weights over [tokens..., mask] of a masked position moving from t to s < t.

        analytic (Tweedie tau-leaping): P(y) = (m_t - m_s) / (1 - m_t) s_y, P(mask) = m_s / m_t
          (exact for the true score: P(y) = (m_t - m_s) / m_t p(x_0 = y | x_t)).
        euler: P(y) = (t - s) sigma'(t) s_y, P(mask) = 1 - sum_y P(y), clamped at 0.
        """
        log_score = log_score.double()
        t_, s_ = (torch.tensor(v, dtype=torch.float64, device=log_score.device) for v in (t, s))
        m_t, m_s = self.noise.mask_prob(t_), self.noise.mask_prob(s_)
        if method == "analytic":
            log_tokens = log_score + torch.log((m_t - m_s) / (1 - m_t))
            log_stay = torch.log(m_s / m_t).expand(log_score.shape[:-1])
        elif method == "euler":
            log_tokens = log_score + torch.log((t_ - s_) * self.noise.rate(t_))
            stay = (1 - log_tokens.exp().sum(-1)).clamp_min(0.0)
            log_stay = torch.log(stay)
        else:
            raise ValueError(f"unknown sampler {method!r} (analytic or euler)")
        return torch.cat([log_tokens, log_stay[..., None]], dim=-1)

    @torch.no_grad()
    def sample(self, score_fn: ScoreFn, batch: int, length: int, steps: int,
               method: str = "analytic", t_end: float = 1e-5, remask_eta: float = 0.0,
               remask_window: tuple[float, float] = (0.3, 0.55),
               generator: torch.Generator | None = None,
               remask_generator: torch.Generator | None = None, device: str = "cpu",
               stats: list | None = None) -> torch.Tensor:
        """Codes (batch, length) from all-mask at t = 1 down to t_end in `steps` steps, then one
        denoising step that never outputs the mask.

        Remasking (the DLC paper's eq. 4): at every step with t0 < t < t1,
          (a) every already-decoded token returns to the mask with probability eta,
          (b) a still-masked position moves eta * (1 - P(mask)) of its probability to the mask,
          (c) the unmasking jump uses dt + eta * (1 - t) instead of dt, to compensate.
        Remasking draws come from `remask_generator`, so eta = 0 reproduces the plain sampler
        bit for bit under the same `generator`. `stats`, if given, receives per step
        (t, decoded tokens at its start, of them remasked).
        """
        tokens = torch.full((batch, length), self.mask, dtype=torch.long, device=device)
        times = torch.linspace(1.0, t_end, steps + 1, dtype=torch.float64).tolist()
        t0, t1 = remask_window
        for t, s in zip(times[:-1], times[1:]):
            remasking = remask_eta > 0 and t0 < t < t1
            log_score = score_fn(tokens, self._sigma(t, batch, device))
            target = max(s - remask_eta * (1 - t), 0.0) if remasking else s
            log_weights = self._unmask_log_weights(log_score, t, target, method)
            if remasking:
                probs = torch.softmax(log_weights, dim=-1)
                probs = (1 - remask_eta) * probs
                probs[..., self.mask] += remask_eta
                log_weights = torch.log(probs)
            proposal = gumbel_argmax(log_weights, generator)
            masked = tokens == self.mask
            new_tokens = torch.where(masked, proposal, tokens)
            if remasking:
                draw = torch.rand(tokens.shape, generator=remask_generator, device=device)
                remask = ~masked & (draw < remask_eta)
                new_tokens = torch.where(remask, torch.full_like(tokens, self.mask), new_tokens)
                if stats is not None:
                    stats.append((t, int((~masked).sum()), int(remask.sum())))
            tokens = new_tokens
        return self.denoise(score_fn, tokens, t_end, generator)

    def denoise(self, score_fn: ScoreFn, tokens: torch.Tensor, t: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Final step: every still-masked position takes a token y ~ s_y (never the mask)."""
        log_score = score_fn(tokens, self._sigma(t, len(tokens), tokens.device))
        proposal = gumbel_argmax(log_score, generator)
        return torch.where(tokens == self.mask, proposal, tokens)


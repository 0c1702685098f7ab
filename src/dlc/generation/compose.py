"""Hybrid codes from two or more source codes: token mixing (each position from a source drawn
by weight) and the continuous baseline's sampling from the average of the sources' SEM
distributions. Shared by the `compose` and `composition-study` stages.
"""

from __future__ import annotations

import numpy as np

from dlc.config import ComposeConfig


def source_weights(weights: list[float] | None, sources: int) -> np.ndarray:
    """compose.weights normalised to sum to 1 (None: equal weights)."""
    if weights is None:
        return np.full(sources, 1.0 / sources)
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != sources or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"compose.weights {weights} must be {sources} non-negative numbers "
                         "with a positive sum (one per source)")
    return w / w.sum()


def mix_tokens(codes: np.ndarray, n: int, weights: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """(S, L) source codes -> (n, L) hybrids: position l of hybrid i is codes[s_il, l] with
    s_il ~ Categorical(weights), independently."""
    chosen = rng.choice(len(codes), size=(n, codes.shape[1]), p=weights)
    return codes[chosen, np.arange(codes.shape[1])[None, :]]


def sample_average(probabilities: np.ndarray, n: int, weights: np.ndarray, tau: float,
                   rng: np.random.Generator) -> np.ndarray:
    """(S, L, V) SEM distributions -> (n, L) codes sampled from the weighted average at
    temperature tau (tau = 0: its argmax), by Gumbel-max in float64."""
    average = np.einsum("s,slv->lv", weights, np.asarray(probabilities, np.float64))
    log_p = np.log(np.clip(average, 1e-300, None))
    if tau == 0:
        return np.broadcast_to(log_p.argmax(-1), (n, len(log_p))).copy()
    gumbel = -np.log(-np.log(rng.uniform(size=(n, *log_p.shape))))
    return (log_p[None] / tau + gumbel).argmax(-1)


def hybrids(cfg: ComposeConfig, codes: np.ndarray,
            probabilities: np.ndarray | None = None) -> np.ndarray:
    """compose.samples hybrids (n, L) of the (S, L) source codes by compose.method, drawn from
    compose.seed; `average` needs the sources' (S, L, V) SEM distributions. The one
    implementation `compose` and `dlc.Pipeline` share."""
    if len(codes) < 2:
        raise ValueError("compose needs two or more sources")
    weights = source_weights(cfg.weights, len(codes))
    rng = np.random.default_rng(cfg.seed)
    if cfg.method == "token":
        return mix_tokens(np.asarray(codes, np.int64), cfg.samples, weights, rng)
    if probabilities is None:
        raise ValueError("compose.method: average needs the sources' SEM distributions")
    return sample_average(probabilities, cfg.samples, weights, cfg.tau, rng)

"""Hybrid codes from two or more source codes: token mixing (each position from a source drawn
by weight), the continuous baseline's sampling from the average of the sources' SEM
distributions, and attribute transplant (the positions that carry an attribute from one
source, the rest from the other). Shared by `compose`, `composition-study` and dlc.Pipeline.
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


def transplant(codes: np.ndarray, positions: np.ndarray, source: int, n: int) -> np.ndarray:
    """(2, L) source codes -> (n, L) copies of one hybrid: `positions` (L,) bool from source
    `source`, every other position from the other source."""
    if len(codes) != 2:
        raise ValueError(f"the attribute method takes two sources, got {len(codes)}")
    if positions.shape != (codes.shape[1],):
        raise ValueError(f"positions {positions.shape} do not match codes of length "
                         f"{codes.shape[1]}")
    hybrid = np.where(positions, codes[source], codes[1 - source])
    return np.repeat(hybrid[None], n, axis=0)


def hybrids(cfg: ComposeConfig, codes: np.ndarray, probabilities: np.ndarray | None = None,
            positions: np.ndarray | None = None) -> np.ndarray:
    """compose.samples hybrids (n, L) of the (S, L) source codes by compose.method, drawn from
    compose.seed; `average` needs the sources' (S, L, V) SEM distributions, `attribute` the
    (L,) positions carrying compose.attribute (`dlc.metrics.positions.carrying`). The one
    implementation `compose` and `dlc.Pipeline` share."""
    if len(codes) < 2:
        raise ValueError("compose needs two or more sources")
    weights = source_weights(cfg.weights, len(codes))
    rng = np.random.default_rng(cfg.seed)
    if cfg.method == "token":
        return mix_tokens(np.asarray(codes, np.int64), cfg.samples, weights, rng)
    if cfg.method == "attribute":
        if positions is None:
            raise ValueError("compose.method: attribute needs the positions carrying "
                             f"{cfg.attribute!r}")
        return transplant(np.asarray(codes, np.int64), positions, cfg.attribute_source,
                          cfg.samples)
    if probabilities is None:
        raise ValueError("compose.method: average needs the sources' SEM distributions")
    return sample_average(probabilities, cfg.samples, weights, cfg.tau, rng)

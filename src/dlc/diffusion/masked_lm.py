"""LLaDA's masked diffusion over token sequences (Nie et al. 2025), used for text -> code.

Forward process: at time t ~ U(eps, 1) (one t per sequence) every maskable token is replaced
by the mask id independently with probability t. The model predicts the clean tokens at the
masked positions; the loss, an upper bound on the negative log-likelihood, is

    L = E_t E_mask [ (1 / t) * sum_{i masked} -log p(x_i | x_t) ] / (maskable tokens)

Sampling (the code span only): start with every code position masked; at step k of K the time
goes from t = 1 - (k - 1) / K to s = 1 - k / K. The model proposes a token for every masked
position (Gumbel-max at `temperature`, restricted to the allowed ids: the code vocabulary),
and all but the round(n * s) least confident (`low_confidence`) or a random subset (`random`)
of the proposals are kept; those stay masked for the next step. After K steps nothing is
masked.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def corrupt(tokens: torch.Tensor, t: torch.Tensor, mask_id: int, maskable: torch.Tensor,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy tokens, masked) with each maskable token masked with probability t (B,)."""
    draws = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    masked = (draws < t[:, None]) & maskable
    return torch.where(masked, torch.full_like(tokens, mask_id), tokens), masked


def loss_from_logits(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
                     t: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
    """The formula above for one batch: cross-entropy on masked positions, weighted 1/t,
    summed per sequence, divided by its maskable count, averaged over the batch."""
    nll = F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none")
    per_sequence = (nll * masked).sum(1) / t / maskable.sum(1).clamp(min=1)
    return per_sequence.mean()


def training_loss(logits_fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor,
                  mask_id: int, maskable: torch.Tensor, eps: float = 1e-3,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    t = eps + (1 - eps) * torch.rand(len(tokens), generator=generator, device=tokens.device)
    noisy, masked = corrupt(tokens, t, mask_id, maskable, generator)
    return loss_from_logits(logits_fn(noisy), tokens, masked, t, maskable)


@torch.no_grad()
def sample(logits_fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor,
           span: slice, mask_id: int, allowed: torch.Tensor, steps: int,
           temperature: float = 0.0, remasking: str = "low_confidence",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill tokens[:, span] (set to mask_id by the caller's prompt layout) in `steps` steps;
    `allowed` (V,) bool says which ids may come out. Returns the filled (B, N) tokens."""
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"remasking must be low_confidence or random, got {remasking!r}")
    tokens = tokens.clone()
    tokens[:, span] = mask_id
    length = tokens[:, span].shape[1]
    # Only the allowed columns take part: a pretrained vocabulary has ~30k ids and the codes
    # 64, so noise and softmax over the allowed ones alone are ~500x less work, same law.
    allowed_ids = allowed.nonzero()[:, 0].to(tokens.device)          # (A,)
    for k in range(1, steps + 1):
        still_masked = tokens[:, span] == mask_id
        logits = logits_fn(tokens)[:, span][..., allowed_ids].double()  # (B, L, A)
        if temperature > 0:
            uniform = torch.rand(logits.shape, generator=generator, device=logits.device,
                                 dtype=torch.float64).clamp_(1e-300, 1.0)
            choice = (logits / temperature - torch.log(-torch.log(uniform))).argmax(-1)
        else:
            choice = logits.argmax(-1)
        proposal = allowed_ids[choice]                                  # (B, L) token ids
        if remasking == "low_confidence":
            confidence = logits.softmax(-1).gather(-1, choice[..., None])[..., 0]
        else:
            confidence = torch.rand(proposal.shape, generator=generator,
                                    device=logits.device, dtype=torch.float64)
        confidence = confidence.masked_fill(~still_masked, float("inf"))  # decided: keep
        remain = round(length * (1 - k / steps))      # masks left after this step
        order = confidence.argsort(dim=1)             # least confident first
        stay = torch.zeros_like(still_masked)
        stay.scatter_(1, order[:, :remain], True)
        span_tokens = torch.where(still_masked & ~stay, proposal, tokens[:, span])
        tokens[:, span] = span_tokens
    return tokens

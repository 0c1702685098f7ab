"""DINOv2's self-distillation losses, written out: DINO (centred teacher, sharpened by a low
temperature), iBOT (the same on masked patch tokens) and KoLeo (spread the embeddings out).

The teacher's targets must not collapse onto one prototype. Two ways, as in DINOv2:
- `teacher_probabilities`: DINO's centring, logits minus an EMA of their batch mean (`center`,
  updated in place, averaged over processes under DDP);
- `sinkhorn_knopp`: SwAV's equipartition, the DINOv2 paper's choice. A few alternating
  normalisations make the batch's targets use every prototype equally, so images that look
  alike must still be told apart by something the two views share.
The student sees every crop, the teacher only the two global ones.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F


def teacher_temperature(step: int, warmup_temp: float, temp: float, warmup_steps: int) -> float:
    """Linear warm-up from warmup_temp to temp, then constant."""
    if step >= warmup_steps:
        return temp
    return warmup_temp + (temp - warmup_temp) * step / warmup_steps


def cosine(step: int, total: int, start: float, end: float) -> float:
    """start -> end along a half cosine over `total` steps (teacher momentum, weight decay)."""
    progress = min(1.0, step / max(1, total))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(step: int, total: int, peak: float, end: float, warmup: int) -> float:
    """Linear warm-up to `peak`, then cosine to `end` (the learning rate)."""
    if step < warmup:
        return peak * step / warmup
    return cosine(step - warmup, total - warmup, peak, end)


def _mean_over_processes(rows: torch.Tensor) -> torch.Tensor:
    """The mean of the rows of every process together (their counts may differ: iBOT's
    masked patches), so that DDP centres the teacher as one process would."""
    total = _over_processes(torch.cat([rows.sum(0), rows.new_tensor([len(rows)])]))
    return total[:-1] / total[-1]


@torch.no_grad()
def teacher_probabilities(teacher_logits: torch.Tensor, center: torch.Tensor, temp: float,
                          center_momentum: float) -> torch.Tensor:
    """softmax((t - center) / temp); then center <- m * center + (1 - m) * mean(t)."""
    probabilities = torch.softmax((teacher_logits.float() - center) / temp, dim=-1)
    batch_mean = _mean_over_processes(teacher_logits.float())
    center.mul_(center_momentum).add_(batch_mean, alpha=1 - center_momentum)
    return probabilities


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temp: float, iterations: int = 3) -> torch.Tensor:
    """Targets (B, K) for B rows of logits: Q = exp(t / temp), then alternately give every
    prototype (column) the mass 1/K and every row the mass 1/B, over the rows of every
    process together; returned with rows summing to 1."""
    logits = teacher_logits.float() / temp
    largest = logits.max() if logits.numel() else logits.new_tensor(float("-inf"))
    q = torch.exp(logits - _over_processes(largest, "MAX"))  # no overflow; scale cancels
    rows, prototypes = _over_processes(q.new_tensor(len(q))), q.shape[1]
    for _ in range(iterations):
        q = q / (_over_processes(q.sum(0)) * prototypes)   # each prototype: mass 1/K
        q = q / (q.sum(1, keepdim=True) * rows)                 # each row: mass 1/B
    return q * rows


def _over_processes(value: torch.Tensor, op: str = "SUM") -> torch.Tensor:
    """`value` reduced (SUM or MAX) over every process; itself in a single process."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=getattr(dist.ReduceOp, op))
    return value


def dino_loss(student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor],
              student_temp: float) -> torch.Tensor:
    """Cross-entropy H(teacher view i, student view j) averaged over all pairs with i != j
    (student views are the globals first, in the teacher's order, then the locals)."""
    total, pairs = 0.0, 0
    for j, logits in enumerate(student_logits):
        log_p = F.log_softmax(logits.float() / student_temp, dim=-1)
        for i, q in enumerate(teacher_probs):
            if i == j:
                continue
            total = total - (q * log_p).sum(-1).mean()
            pairs += 1
    return total / pairs


def ibot_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor,
              student_temp: float, masked_images: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on the masked patches (M, K) of a (B, N) mask, in mask.nonzero() order:
    the mean over each image's masked patches, summed over images and divided by
    `masked_images` (by default the number of images with any masked patch: the mean over
    them; under DDP, the global batch's count over the number of processes)."""
    log_p = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    per_patch = -(teacher_probs * log_p).sum(-1)                      # (M,)
    counts = mask.sum(1)                                               # (B,)
    if per_patch.numel() == 0:
        return student_logits.sum() * 0.0
    if masked_images is None:
        masked_images = (counts > 0).sum()
    image = mask.nonzero()[:, 0]
    return (per_patch / counts[image]).sum() / masked_images


def koleo_loss(embeddings: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy surrogate: -mean log(distance to the nearest other
    embedding), on L2-normalised vectors (B, D)."""
    x = F.normalize(embeddings.float(), dim=-1, eps=eps)
    distances = torch.cdist(x, x)
    distances = distances + torch.eye(len(x), device=x.device) * 1e9  # never yourself
    return -torch.log(distances.min(-1).values + eps).mean()


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's contrastive loss (NT-Xent) over two views (B, D) of the same B images: each of
    the 2B embeddings should pick its other view, by cosine / temperature, out of the 2B - 1
    others (the batch's other images are the negatives). Mean over the 2B."""
    z = F.normalize(torch.cat([first, second]).float(), dim=-1)
    scores = z @ z.T / temperature
    scores = scores.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device),
                                float("-inf"))
    batch = len(first)
    partner = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return F.cross_entropy(scores, partner)


def random_patch_mask(batch: int, patches: int, mask_prob: float, ratio: tuple[float, float],
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, N) bool: a fraction mask_prob of the images get a ratio ~ U(ratio) of their patches
    masked, chosen uniformly (iBOT; DINOv2 draws blocks, uniform patches are the simpler
    variant of the same objective)."""
    device = generator.device if generator is not None else None
    masked_images = torch.rand(batch, generator=generator, device=device) < mask_prob
    ratios = ratio[0] + (ratio[1] - ratio[0]) * torch.rand(batch, generator=generator,
                                                           device=device)
    counts = (ratios * patches).round().long() * masked_images
    order = torch.rand(batch, patches, generator=generator, device=device).argsort(-1)
    return order < counts[:, None]

"""The authors' checkpoints (github.com/lavoiems/DiscreteLatentCode) as our models, tensor by
tensor: every key of theirs is mapped or the conversion fails naming it, and every tensor of
ours must be filled. The equality of outputs is tested against fixtures their own code wrote
(tests/fixtures/authors/make_fixtures.py).

DiT (their dit/models.py, DiTSEM): the same network under other names. Their DLC embedder's
table (L, V + 1, hidden), the null token at index V, is our code table flattened row
p (V + 1) + token; their fixed positions are copied as saved (they put the column coordinate in
the first half of the channels, our sincos_2d the row: the tensor in the file rules).

SEDD (their sedd/model/transformer.py, the absorbing graph, shared embedding): three
differences, each an exact re-parametrisation:
    - their LayerNorms carry a weight w (no bias), ours none. modulate(n(x) w) = w (n(x) (1 +
      scale) + shift / w), so w goes into the columns of the next linear and the shift rows
      of the adaLN linear are divided by it (|w| near 0 is refused);
    - their rotary embedding rotates channel j with j + d/2 (rotate_half), ours 2i with
      2i + 1: the q and k rows of each head are permuted (our 2i <- their i, 2i + 1 <- i + d/2),
      which leaves every q . k unchanged;
    - their output has a column for the mask token V (zeroed by their scatter at masked
      positions, never read by a sampler): it is dropped; their attention output has no bias,
      ours a zero one.

SEM teacher (their dinov2 fork: DinoVisionTransformerWithSEM and the DINO head, the
`teacher` entry of teacher_checkpoint.pth) into our SEMEncoder over timm's DINOv2 ViT:
    - timm's keys for DINOv2 with registers: registers -> reg_token, the class token's position
      added to the class token (timm adds positions to patches only), chunked block names
      (blocks.<chunk>.<i>) flattened;
    - the patch positions resampled to our grid as their forward resamples them at that input
      size (bicubic, with anti-aliasing, to the output size: their SEM config), once, so
      timm's forward at the preset's img_size uses them unchanged;
    - their SEM head (sem_embed, sem_norm, sem_out) is ours (to_logits, norm, from_simplex), at
      their LayerNorm epsilon (sem.norm_eps 1e-6); their sem_cls_norm is never called by
      their forward and is dropped;
    - the DINO head's prototypes are their weight-normalised last layer's direction
      (weight_v); its scale weight_g (1 at their init; trainable in their code) has no
      counterpart here (our head scores cosines) and is dropped, its largest deviation from 1
      reported: it only matters to continue SEM training from their teacher.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from dlc.models.dit import DiT, DiTSize
from dlc.models.sedd import SEDDSize, SEDDTransformer
from dlc.models.sem import SEMEncoder

SMALLEST_NORM_WEIGHT = 1e-6
# How their SEM config (dinov2/configs/train/vitl14_sem_L512.yaml) resamples positions.
THEIR_SEM_POSITIONS = {"mode": "bicubic", "antialias": True}
THEIR_SEM_NORM_EPS = 1e-6


class ConversionError(ValueError):
    """A checkpoint that is not in the layout this module converts."""


def _check_all_used(theirs: dict, used: set, what: str) -> None:
    unmapped = sorted(set(theirs) - used)
    if unmapped:
        raise ConversionError(f"{what}: {len(unmapped)} tensors have no counterpart here "
                              f"(first: {', '.join(unmapped[:5])})")


def _load(model: torch.nn.Module, ours: dict, what: str) -> torch.nn.Module:
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    if missing or extra:
        raise ConversionError(f"{what}: the checkpoint lacks {', '.join(missing[:5])}" if missing
                              else f"{what}: no place here for {', '.join(extra[:5])}")
    for key, value in ours.items():
        if value.shape != expected[key].shape:
            raise ConversionError(f"{what}: {key} is {tuple(value.shape)} in the checkpoint, "
                                  f"{tuple(expected[key].shape)} here")
    model.load_state_dict({k: v.float() for k, v in ours.items()})
    return model


def _require(theirs: dict, key: str, what: str) -> torch.Tensor:
    if key not in theirs:
        raise ConversionError(f"{what}: no tensor {key} (not a checkpoint of this kind)")
    return theirs[key]


def _count_blocks(theirs: dict, suffix: str) -> int:
    return sum(1 for key in theirs if key.startswith("blocks.") and key.endswith(suffix))


def dit_shape(theirs: dict, what: str) -> dict:
    """What their DiTSEM weights say about the network: depth, hidden, patch, channels, the
    latent side, learn_sigma and the code shape L x V (heads are not in the weights)."""
    table = _require(theirs, "sem_embedder.embedding_table", what)
    patch_weight = _require(theirs, "x_embedder.proj.weight", what)
    positions = _require(theirs, "pos_embed", what)
    hidden, in_channels, patch = patch_weight.shape[0], patch_weight.shape[1], \
        patch_weight.shape[-1]
    grid = round(positions.shape[1] ** 0.5)
    out_channels = _require(theirs, "final_layer.linear.weight", what).shape[0] // patch ** 2
    if out_channels not in (in_channels, 2 * in_channels):
        raise ConversionError(f"{what}: {out_channels} output channels for {in_channels} in")
    return {"depth": _count_blocks(theirs, ".attn.qkv.weight"), "hidden": hidden,
            "patch": patch, "in_channels": in_channels, "side": grid * patch,
            "learn_sigma": out_channels == 2 * in_channels, "L": table.shape[0],
            "V": table.shape[1] - 1}


def dit_from_authors(theirs: dict[str, torch.Tensor], heads: int, what: str) -> DiT:
    """Our DLC-conditioned DiT holding their DiTSEM weights. Their embedder must have the null
    token (trained with class_dropout_prob > 0): guidance needs it."""
    shape = dit_shape(theirs, what)
    model = DiT(DiTSize(shape["depth"], shape["hidden"], heads), shape["side"],
                shape["in_channels"], shape["patch"], shape["learn_sigma"], condition="code",
                code_length=shape["L"], code_vocab=shape["V"])
    table = theirs["sem_embedder.embedding_table"]
    ours = {"patch_embed.weight": theirs["x_embedder.proj.weight"],
            "patch_embed.bias": theirs["x_embedder.proj.bias"],
            "pos_embed": theirs["pos_embed"],
            "code_embedder.table.weight": table.reshape(-1, table.shape[-1])}  # (L (V+1), D)
    renames = {"t_embedder.mlp.": "t_embedder.mlp.", "final_layer.linear.": "final.linear.",
               "final_layer.adaLN_modulation.1.": "final.modulation.1."}
    for i in range(shape["depth"]):
        renames |= {f"blocks.{i}.attn.qkv.": f"blocks.{i}.attn.qkv.",
                    f"blocks.{i}.attn.proj.": f"blocks.{i}.attn.proj.",
                    f"blocks.{i}.mlp.fc1.": f"blocks.{i}.mlp.0.",
                    f"blocks.{i}.mlp.fc2.": f"blocks.{i}.mlp.2.",
                    f"blocks.{i}.adaLN_modulation.1.": f"blocks.{i}.modulation.1."}
    used = {"x_embedder.proj.weight", "x_embedder.proj.bias", "pos_embed",
            "sem_embedder.embedding_table"}
    for key, value in theirs.items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        if prefix is not None:
            ours[renames[prefix] + key[len(prefix):]] = value
            used.add(key)
    _check_all_used(theirs, used, what)
    return _load(model, ours, what)


def _rotate_half_to_pairs(head_dim: int) -> torch.Tensor:
    """Row order turning rotate_half's channel layout into interleaved pairs."""
    half = torch.arange(head_dim // 2)
    return torch.stack([half, half + head_dim // 2], dim=1).flatten()


def _divide_shift_rows(weight: torch.Tensor, bias: torch.Tensor, chunks: int, chunk: int,
                       norm_weight: torch.Tensor, what: str):
    """adaLN linear (chunks * D, C): the rows of shift chunk `chunk` divided by the norm's
    weight (D,) folded into the next linear."""
    if norm_weight.abs().min() < SMALLEST_NORM_WEIGHT:
        raise ConversionError(f"{what}: a LayerNorm weight is below {SMALLEST_NORM_WEIGHT} in "
                              "magnitude; folding it into the next layer would not be exact")
    width = norm_weight.shape[0]
    rows = slice(chunk * width, (chunk + 1) * width)
    weight, bias = weight.clone(), bias.clone()
    weight[rows] /= norm_weight[:, None]
    bias[rows] /= norm_weight
    return weight, bias


def sedd_shape(theirs: dict, what: str) -> dict:
    """depth, hidden, heads, cond_dim, L and V of their SEDD weights (absorbing graph)."""
    if "vocab_embed.embedding_table" in theirs:
        raise ConversionError(f"{what}: a SEDD with per-position (unshared) embeddings; only "
                              "the shared embedding (their configs' default) converts")
    embedding = _require(theirs, "vocab_embed.embedding", what)
    inverse_frequencies = _require(theirs, "rotary_emb.inv_freq", what)
    hidden, head_dim = embedding.shape[1], 2 * inverse_frequencies.shape[0]
    expected = 10000 ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    if not torch.allclose(inverse_frequencies.float(), expected):
        raise ConversionError(f"{what}: rotary frequencies of a base other than 10000")
    return {"depth": _count_blocks(theirs, ".attn_qkv.weight"), "hidden": hidden,
            "heads": hidden // head_dim,
            "cond_dim": _require(theirs, "sigma_map.mlp.2.weight", what).shape[0],
            "L": _require(theirs, "pos_embed", what).shape[0],
            "V": embedding.shape[0] - 1}


def sedd_from_authors(theirs: dict[str, torch.Tensor], dropout: float, what: str):
    """Our SEDD transformer holding their SEDD weights (see the module docstring)."""
    shape = sedd_shape(theirs, what)
    hidden, heads = shape["hidden"], shape["heads"]
    model = SEDDTransformer(shape["V"], shape["L"], SEDDSize(hidden, shape["depth"], heads,
                                                             shape["cond_dim"]), dropout)
    order = _rotate_half_to_pairs(hidden // heads)
    ours = {"token_embedding.weight": theirs["vocab_embed.embedding"],
            "position_embedding": theirs["pos_embed"][None]}
    used = {"vocab_embed.embedding", "pos_embed", "rotary_emb.inv_freq"}
    for layer in ("0", "2"):
        for kind in ("weight", "bias"):
            key = f"sigma_map.mlp.{layer}.{kind}"
            ours[f"sigma_embedding.mlp.{layer}.{kind}"] = _require(theirs, key, what)
            used.add(key)
    for i in range(shape["depth"]):
        block = {name: _require(theirs, f"blocks.{i}.{name}", what) for name in (
            "norm1.weight", "attn_qkv.weight", "attn_out.weight", "norm2.weight",
            "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
            "adaLN_modulation.weight", "adaLN_modulation.bias")}
        used |= {f"blocks.{i}.{name}" for name in block}
        norm1, norm2 = block["norm1.weight"], block["norm2.weight"]
        # (3 D, D) rows [q|k|v][head][channel]: q and k reordered per head, w1 in the columns.
        qkv = block["attn_qkv.weight"].view(3, heads, hidden // heads, hidden).clone()
        qkv[:2] = qkv[:2, :, order]
        ours[f"blocks.{i}.qkv.weight"] = qkv.reshape(3 * hidden, hidden) * norm1[None]
        ours[f"blocks.{i}.attn_out.weight"] = block["attn_out.weight"]
        ours[f"blocks.{i}.attn_out.bias"] = torch.zeros(hidden)
        ours[f"blocks.{i}.mlp.0.weight"] = block["mlp.0.weight"] * norm2[None]
        for name in ("mlp.0.bias", "mlp.2.weight", "mlp.2.bias"):
            ours[f"blocks.{i}.{name}"] = block[name]
        weight, bias = block["adaLN_modulation.weight"], block["adaLN_modulation.bias"]
        weight, bias = _divide_shift_rows(weight, bias, 6, 0, norm1, what)  # shift_msa
        weight, bias = _divide_shift_rows(weight, bias, 6, 3, norm2, what)  # shift_mlp
        ours[f"blocks.{i}.modulation.weight"], ours[f"blocks.{i}.modulation.bias"] = \
            weight, bias
    final = {name: _require(theirs, f"output_layer.{name}", what) for name in (
        "norm_final.weight", "linear.weight", "linear.bias", "adaLN_modulation.weight",
        "adaLN_modulation.bias")}
    used |= {f"output_layer.{name}" for name in final}
    norm, vocab = final["norm_final.weight"], shape["V"]
    ours["output.weight"] = final["linear.weight"][:vocab] * norm[None]   # mask column dropped
    ours["output.bias"] = final["linear.bias"][:vocab]
    ours["final_modulation.weight"], ours["final_modulation.bias"] = _divide_shift_rows(
        final["adaLN_modulation.weight"], final["adaLN_modulation.bias"], 2, 0, norm, what)
    _check_all_used(theirs, used, what)
    return _load(model, ours, what)


def sedd_ema_weights(checkpoint: dict, what: str) -> dict[str, torch.Tensor]:
    """Their checkpoint.pth keeps the EMA as a list over model.parameters(): named here by
    the model's state dict (its keys in order, less the rotary buffer)."""
    names = [key for key in checkpoint["model"] if key != "rotary_emb.inv_freq"]
    shadow = checkpoint["ema"]["shadow_params"]
    if len(shadow) != len(names) or any(
            p.shape != checkpoint["model"][n].shape for n, p in zip(names, shadow)):
        raise ConversionError(f"{what}: its EMA ({len(shadow)} tensors) does not match its "
                              f"model's {len(names)} parameters")
    return {**dict(zip(names, shadow)),
            "rotary_emb.inv_freq": checkpoint["model"]["rotary_emb.inv_freq"]}


def _resample_positions(positions: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, M*M, D) patch positions -> (1, grid*grid, D), as their forward does at that grid."""
    side, width = round(positions.shape[1] ** 0.5), positions.shape[-1]
    if side == grid:
        return positions
    # (1, M*M, D) -> (1, D, M, M) -> resample -> (1, grid*grid, D)
    square = positions.float().reshape(1, side, side, width).permute(0, 3, 1, 2)
    resampled = F.interpolate(square, size=(grid, grid), **THEIR_SEM_POSITIONS)
    return resampled.permute(0, 2, 3, 1).reshape(1, grid * grid, width)


def sem_from_authors(teacher: dict[str, torch.Tensor], encoder: SEMEncoder,
                     what: str) -> tuple[SEMEncoder, float]:
    """`encoder` (built from the preset's sem params) holding their SEM teacher; also the
    largest |weight_g - 1| of their DINO head (dropped, see the module docstring)."""
    if encoder.nce_head is not None:
        raise ConversionError(f"{what}: their teacher has no NT-Xent head "
                              "(sem.loss.nce_weight must be 0)")
    if encoder.sem.norm.eps != THEIR_SEM_NORM_EPS:
        raise ConversionError(f"{what}: their SEM LayerNorm has epsilon {THEIR_SEM_NORM_EPS}, "
                              f"sem.norm_eps is {encoder.sem.norm.eps}")
    theirs = {re.sub(r"^backbone\.blocks\.\d+\.(\d+)\.", r"backbone.blocks.\1.", key): value
              for key, value in teacher.items()}                # chunked blocks flattened
    positions = _require(theirs, "backbone.pos_embed", what)     # (1, 1 + M*M, D)
    grid = encoder.backbone.patch_embed.grid_size[0]
    scale = _require(theirs, "dino_head.last_layer.weight_g", what)
    ours = {"backbone.cls_token": _require(theirs, "backbone.cls_token", what)
            + positions[:, :1],
            "backbone.reg_token": _require(theirs, "backbone.register_tokens", what),
            "backbone.pos_embed": _resample_positions(positions[:, 1:], grid),
            "mask_token": _require(theirs, "backbone.mask_token", what).reshape(-1),
            "dino_head.prototypes": _require(theirs, "dino_head.last_layer.weight_v", what)}
    used = {"backbone.cls_token", "backbone.register_tokens", "backbone.pos_embed",
            "backbone.mask_token", "dino_head.last_layer.weight_g",
            "dino_head.last_layer.weight_v", "backbone.sem_cls_norm.weight",
            "backbone.sem_cls_norm.bias"}
    renames = {"backbone.sem_embed.": "sem.to_logits.", "backbone.sem_norm.": "sem.norm.",
               "backbone.sem_out.": "sem.from_simplex.", "backbone.patch_embed.":
               "backbone.patch_embed.", "backbone.blocks.": "backbone.blocks.",
               "backbone.norm.": "backbone.norm.", "dino_head.mlp.": "dino_head.mlp."}
    for key, value in theirs.items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        if prefix is not None and key not in used:
            ours[renames[prefix] + key[len(prefix):]] = value
            used.add(key)
    _check_all_used(theirs, used, what)
    return _load(encoder, ours, what), float((scale - 1).abs().max())

"""Stage `convert-authors`: a DiT, SEDD or SEM teacher checkpoint written by the authors' code
(github.com/lavoiems/DiscreteLatentCode) as a run folder of ours (model.safetensors or
encoder.safetensors, and meta.json, as train-dit / train-sedd / train-sem write them), so
sample-dit, sample-codes, extract-codes and the Python pipeline use it. `dlc.models.authors`
maps the tensors.

Their files, as their training writes and their samplers read them:
    dit    checkpoints/checkpoint_<n>/model.safetensors (the online weights, --weights model)
           or custom_checkpoint_0.pkl beside it (the EMA, --weights ema); a torch file with
           an "ema" key is read there; "_orig_mod." (torch.compile) and "module." (DDP)
           prefixes are dropped
    sedd   checkpoint.pth: {"model": state dict, "ema": {"shadow_params": [...]}, ...}
    sem    eval/<iteration>/teacher_checkpoint.pth: {"teacher": backbone.* and dino_head.*};
           the teacher is the EMA of the student, so only --weights ema

The checkpoint must have the preset's sizes (dit.size and dit.patch, sedd.size, the sem
backbone and head) and code shape (sem.length, sem.vocab); a mismatch is an error naming both.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from dlc import io as dio
from dlc.config import Config, to_dict
from dlc.models import authors
from dlc.models.dit import SIZES as DIT_SIZES
from dlc.models.sedd import SIZES as SEDD_SIZES
from dlc.models.sem import build_encoder
from dlc.train.checkpoint import save_weights

log = logging.getLogger(__name__)
PREFIXES = ("_orig_mod.", "module.")


def run(cfg: Config, *, model: str, checkpoint: str | Path, weights: str,
        out: str | Path) -> Path:
    """`dlc convert-authors`: their `model` checkpoint into the run folder `out`."""
    if model not in ("dit", "sedd", "sem") or weights not in ("ema", "model"):
        raise ValueError(f"--model {model!r} --weights {weights!r}: dit, sedd or sem; ema or "
                         "model")
    if model == "sem" and weights != "ema":
        raise ValueError("--model sem: their teacher_checkpoint.pth holds the teacher (the "
                         "EMA) only: --weights ema")
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint file")
    what = str(checkpoint)
    preset = cfg.active
    if model == "dit":
        converted, meta = _dit(preset, _read_dit(checkpoint, weights), what)
    elif model == "sedd":
        converted, meta = _sedd(preset, _read_sedd(checkpoint, weights, what), what)
    else:
        converted, meta = _sem(preset, _read_teacher(checkpoint), what)
    weights_file = out / ("encoder.safetensors" if model == "sem" else "model.safetensors")
    out.mkdir(parents=True, exist_ok=True)
    save_weights(weights_file, converted)
    dio.write_json(out / "meta.json", {
        **meta, "L": preset.sem.length, "V": preset.sem.vocab, "precision": "float32",
        "parameters": sum(p.numel() for p in converted.parameters()),
        "converted_from": {"file": str(checkpoint), "sha256": dio.sha256_file(checkpoint),
                           "weights": weights, "code": "github.com/lavoiems/DiscreteLatentCode"},
        f"{'encoder' if model == 'sem' else 'model'}_sha256": dio.sha256_file(weights_file),
        **dio.run_metadata({model: meta[model]})})
    log.info("%s %s weights of %s -> %s", model, weights, checkpoint, out)
    return out


def _strip(state: dict) -> dict:
    for prefix in PREFIXES:
        state = {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def _torch_file(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip or torch errors: the file is not a checkpoint
        raise ValueError(f"{path}: not a torch checkpoint ({str(error).splitlines()[0]})") \
            from None


def _read_dit(path: Path, weights: str) -> dict:
    state = load_file(path) if path.suffix == ".safetensors" else _torch_file(path)
    if "ema" in state and not isinstance(state["ema"], torch.Tensor):
        state = state["ema"] if weights == "ema" else state.get("model", state)
    return _strip(state)


def _read_sedd(path: Path, weights: str, what: str) -> dict:
    state = _torch_file(path)
    if not isinstance(state, dict) or "model" not in state or "ema" not in state:
        raise ValueError(f"{path}: not their SEDD checkpoint.pth (no model and ema entries)")
    state = {**state, "model": _strip(state["model"])}
    return authors.sedd_ema_weights(state, what) if weights == "ema" else state["model"]


def _read_teacher(path: Path) -> dict:
    state = _torch_file(path)
    if not isinstance(state, dict) or "teacher" not in state:
        raise ValueError(f"{path}: not their teacher_checkpoint.pth (no teacher entry)")
    return _strip(state["teacher"])


def _dit(preset, theirs: dict, what: str):
    cfg, size = preset.dit, DIT_SIZES[preset.dit.size]
    shape = authors.dit_shape(theirs, what)
    found = (shape["depth"], shape["hidden"], shape["patch"], shape["learn_sigma"],
             shape["L"], shape["V"])
    expected = (size.depth, size.hidden, cfg.patch, cfg.diffusion.learn_sigma,
                preset.sem.length, preset.sem.vocab)
    if found != expected:
        raise ValueError(f"{what}: (depth, hidden, patch, learn_sigma, L, V) = {found}; the "
                         f"preset's dit.size {cfg.size}, dit.patch and sem params: {expected}")
    model = authors.dit_from_authors(theirs, size.heads, what)
    side = shape["side"]
    return model, {"condition": "code", "feature_dim": 0,
                   "latent_shape": [shape["in_channels"], side, side], "dit": to_dict(cfg)}


def _sedd(preset, theirs: dict, what: str):
    cfg, size = preset.sedd, SEDD_SIZES[preset.sedd.size]
    shape = authors.sedd_shape(theirs, what)
    found = tuple(shape[k] for k in ("depth", "hidden", "heads", "cond_dim", "L", "V"))
    expected = (size.depth, size.hidden, size.heads, size.cond_dim, preset.sem.length,
                preset.sem.vocab)
    if found != expected:
        raise ValueError(f"{what}: (depth, hidden, heads, cond_dim, L, V) = {found}; the "
                         f"preset's sedd.size {cfg.size} and sem params: {expected}")
    return authors.sedd_from_authors(theirs, cfg.dropout, what), {"sedd": to_dict(cfg)}


def _sem(preset, teacher: dict, what: str):
    """The preset's SEM encoder (its backbone, head and L x V: a mismatch fails naming the
    tensor and both shapes) holding their teacher."""
    encoder, scale_dropped = authors.sem_from_authors(
        teacher, build_encoder(preset.sem, pretrained=False), what)
    if scale_dropped > 0:
        log.warning("%s: their DINO head's prototype scales differ from 1 by up to %.3g; ours "
                    "has none (codes and features are unaffected)", what, scale_dropped)
    return encoder, {"sem": to_dict(preset.sem), "dino_head_scale_dropped": scale_dropped}

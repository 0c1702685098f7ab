"""Checkpoints that resume exactly: model, EMA, optimiser, step, RNG and data position.

Layout (one folder per step, a `latest` pointer written last, so a half-written checkpoint is
never picked up):
    <dir>/step-00001500/model.safetensors, ema.safetensors, state.pt, meta.json
    <dir>/latest            -> "step-00001500"
state.pt holds plain types only and is read with `torch.load(weights_only=True)`, so a
results folder from elsewhere cannot run code when resumed. A checkpoint records the hash of
the params that made it; resuming under other params is refused
(the run starts over) instead of silently mixing two configurations, except `train.steps`
where the lr is constant after warm-up (`lengthenable`): there a finished run given more steps
goes on from its last one. meta.json also holds the
sha256 of every file: a checkpoint whose files do not match or do not load (a disk error, a
truncated copy) is skipped with a warning and the one before it is used.
"""

from __future__ import annotations

import logging
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from dlc.io import atomic_path, read_json, sha256_file, write_bytes, write_json

log = logging.getLogger(__name__)
CHECKPOINT_FILES = ("model.safetensors", "ema.safetensors", "state.pt")


def rng_state() -> dict[str, Any]:
    """Every global RNG's state in types `torch.load(weights_only=True)` reads: tensors, str,
    int, float, tuples (numpy's key array as a tensor, not a pickled ndarray)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss,
                       cached)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights(path: Path, module: torch.nn.Module) -> None:
    """safetensors, atomically; tensors that share memory (tied embeddings) are stored once."""
    with atomic_path(path) as tmp:
        save_model(module, str(tmp))


def load_weights(module: torch.nn.Module, path: str | Path,
                 built_from: str) -> torch.nn.Module:
    """Trained weights into `module` (eval mode); a missing or mismatched file fails naming
    the file and what the module was built from ("the sem params", ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: trained weights not found")
    try:
        load_model(module, str(path), strict=True)
    except (RuntimeError, OSError, SafetensorError) as error:
        raise ValueError(f"{path}: does not fit {built_from} "
                         f"({str(error).splitlines()[0]})") from None
    return module.eval()


def check_code_shape(run: str | Path, meta: dict, length: int, vocab: int) -> None:
    """A run trained on codes of another L or V cannot serve these params: say so by name."""
    if (meta["L"], meta["V"]) != (length, vocab):
        raise ValueError(f"{run}: trained on L={meta['L']}, V={meta['V']} codes; the sem params "
                         f"say L={length}, V={vocab}")


def save(directory: str | Path, step: int, model: torch.nn.Module,
         ema: torch.nn.Module | None, state: dict[str, Any], params_sha256: str,
         keep: int = 2) -> Path:
    """Write step folder, then point `latest` at it, then drop all but the newest `keep`
    (0: drop none) and every folder past `step`: those are another run's (other params, or
    steps since lowered), and would otherwise outrank this run's own in the pruning."""
    directory = Path(directory)
    folder = directory / f"step-{step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / "model.safetensors", model)
    if ema is not None:
        save_weights(folder / "ema.safetensors", ema)
    with atomic_path(folder / "state.pt") as tmp:
        torch.save({**state, "step": step, "rng": rng_state()}, tmp)
    files = {path.name: sha256_file(path) for path in sorted(folder.iterdir())
             if path.name in CHECKPOINT_FILES}
    write_json(folder / "meta.json", {"step": step, "params_sha256": params_sha256,
                                      "sha256": files})
    write_bytes(directory / "latest", folder.name.encode())
    folders = sorted(directory.glob("step-*"))
    upto = folders.index(folder) + 1            # this run's: this step and the ones before it
    for old in [*(folders[:upto][:-keep] if keep else []), *folders[upto:]]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _candidates(directory: Path) -> list[Path]:
    """Step folders to try, newest first: the one `latest` names, then the older ones."""
    pointer = directory / "latest"
    if not pointer.is_file():
        return []
    named = directory / pointer.read_text().strip()
    older = sorted((p for p in directory.glob("step-*") if p.name < named.name), reverse=True)
    return [named, *older]


def _verified(folder: Path) -> dict[str, Any]:
    """meta.json of a step folder whose files all match their recorded hashes."""
    meta = read_json(folder / "meta.json")
    for name, digest in meta.get("sha256", {}).items():
        if sha256_file(folder / name) != digest:
            raise ValueError(f"{folder / name} does not match its recorded sha256")
    return meta


def lengthenable(section: dict[str, Any]) -> dict[str, Any]:
    """A stage's params as its checkpoints record them when its lr is constant after warm-up:
    without `train.steps`. No step then depends on the run's length, so a run given more steps
    resumes from its last checkpoint and ends where a run asked for them from the start ends;
    given fewer, it resumes from a checkpoint at or before its new end, if one is kept."""
    return {**section, "train": {k: v for k, v in section["train"].items() if k != "steps"}}


def load_latest(directory: str | Path, model: torch.nn.Module, ema: torch.nn.Module | None,
                params_sha256: str, last_step: int | None = None) -> dict[str, Any] | None:
    """Restore the newest intact checkpoint made with the same params, at or before
    `last_step` when given; None if there is none."""
    for folder in _candidates(Path(directory)):
        try:
            meta = _verified(folder)
            if meta["params_sha256"] != params_sha256:
                log.warning("%s was made with other params: starting over", folder)
                return None
            if last_step is not None and meta["step"] > last_step:
                log.info("%s is past this run's %d steps: trying the one before it", folder,
                         last_step)
                continue
            load_model(model, str(folder / "model.safetensors"), strict=True)
            if ema is not None:
                load_model(ema, str(folder / "ema.safetensors"), strict=True)
            # weights_only: a state.pt runs no code, whoever wrote the results folder
            state = torch.load(folder / "state.pt", weights_only=True)
        except (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError,
                SafetensorError) as error:
            log.warning("checkpoint %s is unreadable (%s): trying the one before it", folder,
                        str(error).splitlines()[0] if str(error) else type(error).__name__)
            continue
        set_rng_state(state.pop("rng"))
        log.info("resumed from %s (step %d)", folder, state["step"])
        return state
    return None


def resume(directory: str | Path, model: torch.nn.Module, ema: torch.nn.Module | None,
           optimizer: torch.optim.Optimizer, params_sha256: str,
           steps: int) -> tuple[list[dict], int]:
    """(loss history, first step) of a run of `steps` steps: restored from the newest
    checkpoint made with the same params at or before its end (model, EMA, optimiser, RNG),
    or ([], 0) for a fresh start."""
    state = load_latest(directory, model, ema, params_sha256, steps)
    if state is None:
        return [], 0
    optimizer.load_state_dict(state["optimizer"])
    return state["history"], state["step"]

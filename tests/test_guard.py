"""Non-finite steps: skipped (no optimiser or EMA update), counted, and a run stopped when they
persist, on the host path (plain AdamW) and the device path (fused AdamW reads `found_inf`);
then injected into every training stage."""

import contextlib
import dataclasses

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from dlc.diffusion import masked_lm
from dlc.diffusion.absorbing import AbsorbingDiffusion
from dlc.diffusion.gaussian import GaussianDiffusion
from dlc.stages import train_dit, train_sedd, train_sem, train_text2code, train_vae
from dlc.train.ema import make_ema, update_ema
from dlc.train.guard import COLUMN, NonFiniteError, NonFiniteGuard

from .test_dit_stages import setup  # noqa: F401  (the fixture: images, VAE, latents, codes)
from .test_text2code import write_captioned_codes

NAN = float("nan")


def _steps(fused: bool, losses: list[float], tmp_path, patience: int = 3):
    """A linear model trained on the given loss scale per step (NaN: a divergence); returns
    the weights after each step, the EMA, and the guard."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    ema = make_ema(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused)
    guard = NonFiniteGuard(optimizer, patience, tmp_path / "checkpoints", [])
    weights = []
    for step, scale in enumerate(losses, start=1):
        loss = model(torch.ones(4, 3)).pow(2).mean() * scale
        optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        update_ema(ema, model, 0.5, guard.step(step, loss, grad_norm))
        weights.append(model.weight.detach().clone())
    return weights, ema, guard, optimizer


@pytest.mark.parametrize("fused", [False, True], ids=["host", "device"])
def test_a_non_finite_step_changes_nothing_and_is_counted(fused, tmp_path):
    weights, ema, guard, optimizer = _steps(fused, [1, NAN, 1], tmp_path)
    clean, clean_ema, _, _ = _steps(fused, [1, 1], tmp_path)
    assert torch.equal(weights[1], weights[0])            # the NaN step moved nothing
    assert torch.equal(weights[2], clean[1])              # as if it had never happened
    assert torch.equal(ema.weight, clean_ema.weight)
    assert int(optimizer.state[optimizer.param_groups[0]["params"][0]]["step"]) == 2
    assert guard.skipped(3) == {COLUMN: 1}


@pytest.mark.parametrize("fused", [False, True], ids=["host", "device"])
def test_patience_steps_in_a_row_stop_the_run_naming_them(fused, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step-00000001")
    with pytest.raises(NonFiniteError) as error:
        _, _, guard, _ = _steps(fused, [1, NAN, float("inf"), NAN, 1], tmp_path, patience=3)
        guard.check()   # the device path finds out when it next looks (a log or checkpoint)
    message = str(error.value)
    assert "steps 2 to 4" in message
    assert "step-00000001" in message and "is kept" in message


def test_a_finite_step_resets_the_streak(tmp_path):
    _, _, guard, _ = _steps(False, [NAN, NAN, 1, NAN, NAN, 1], tmp_path, patience=3)
    assert guard.skipped(6) == {COLUMN: 4}


def test_a_resumed_run_counts_on(tmp_path):
    optimizer = torch.optim.AdamW(torch.nn.Linear(1, 1).parameters())
    guard = NonFiniteGuard(optimizer, 3, tmp_path, [{"step": 10, COLUMN: 2}])
    assert guard.skipped(10) == {COLUMN: 2}


@contextlib.contextmanager
def nan_loss(owner, name: str, calls: set[int]):
    """While active, owner.name's loss (a tensor, a dict's "loss", a tuple's first item) is NaN
    on its `calls`-th calls (1-based): a divergence at those training steps."""
    real, count = getattr(owner, name), {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        count["n"] += 1
        if count["n"] not in calls:
            return out
        if isinstance(out, dict):
            return {**out, "loss": out["loss"] * NAN}
        if isinstance(out, tuple):
            return (out[0] * NAN, *out[1:])
        return out * NAN

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(owner, name, poisoned)
        yield


def _stages(preset, folder):
    """name -> (the loss to poison, train(out, patience) -> its final weights file)."""
    length, vocab = preset.sem.length, preset.sem.vocab

    def patient(section, patience):
        return dataclasses.replace(section, train=dataclasses.replace(
            section.train, nonfinite_patience=patience))

    return {
        "sem": ((train_sem, "_loss"), lambda out, k: train_sem.train(
            patient(preset.sem, k), folder / "images.parquet", out) / "encoder.safetensors"),
        "sedd": ((AbsorbingDiffusion, "score_entropy"), lambda out, k: train_sedd.train(
            patient(preset.sedd, k), folder / "codes" / "train", length, vocab, out)
            / "model.safetensors"),
        "dit": ((GaussianDiffusion, "training_losses"), lambda out, k: train_dit.train(
            patient(preset.dit, k), preset.vae, folder / "latents", folder / "codes",
            folder / "vae", length, vocab, out) / "model.safetensors"),
        "vae": ((train_vae, "_loss"), lambda out, k: train_vae.train(
            patient(preset.vae, k), folder / "images.parquet", out) / "model"),
        "text": ((masked_lm, "training_loss"), lambda out, k: train_text2code.train(
            patient(preset.text, k), write_captioned_codes(folder, preset), length, vocab, out)
            / "model.safetensors"),
    }


def _finite(path) -> bool:
    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
    return bool(files) and all(torch.isfinite(t).all() for f in files
                               for t in load_file(str(f)).values())


@pytest.mark.parametrize("stage", ["sem", "sedd", "dit", "vae", "text"])
def test_every_training_stage_skips_a_nan_step_and_stops_on_a_streak(stage, setup,  # noqa: F811
                                                                     tmp_path):
    preset, folder = setup
    (owner, name), train = _stages(preset, folder)[stage]
    with nan_loss(owner, name, {3}):                 # one bad step (of 4): skipped, counted
        weights = train(tmp_path / "once", 2)
    assert _finite(weights)
    rows = pd.read_csv(tmp_path / "once" / "loss.csv")
    assert rows[COLUMN].iloc[-1] == 1

    with nan_loss(owner, name, {2, 3, 4}), pytest.raises(NonFiniteError) as error:
        train(tmp_path / "streak", 2)                # steps 2 and 3 in a row: stop at 3
    assert "steps 2 to 3" in str(error.value)
    assert "step-00000002" in str(error.value)       # the checkpoint before the stop is kept
    kept = tmp_path / "streak" / "checkpoints" / "step-00000002"
    assert _finite(kept / "model.safetensors")
    assert not (weights.parent.parent / "streak" / weights.name).exists()   # no final weights

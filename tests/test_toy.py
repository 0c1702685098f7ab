"""Section 3 stages at micro size: files, exact resume, and the metrics' contract."""

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dlc.io import read_json
from dlc.stages import toy_eval, toy_report, toy_train

from .conftest import preempted_at


@pytest.fixture
def toy_cfg(micro_config):
    return micro_config.toy


@pytest.mark.parametrize("variant", ["unconditional", "oracle", "gmm"])
def test_train_then_evaluate_writes_the_contract(toy_cfg, tmp_path, variant):
    run = tmp_path / variant
    toy_train.train(toy_cfg, 4, variant, run)
    meta = read_json(run / "meta.json")
    assert meta["samples_seen"] == toy_cfg.train.steps * toy_cfg.train.batch_size
    assert (meta["gmm"] is not None) == (variant == "gmm")
    assert (run / "loss.csv").read_text().startswith("step,mse")
    metrics = toy_eval.evaluate(toy_cfg, run, run)
    assert read_json(run / "metrics.json") == metrics
    for key in ("kde_kl", "knn_kl", "mode_kl", "modes_covered", "off_mode_fraction"):
        assert np.isfinite(metrics[key]) and np.isfinite(metrics[f"{key}_floor"])
    assert metrics["kde_kl_excess"] == pytest.approx(metrics["kde_kl"] - metrics["kde_kl_floor"])
    samples = np.load(run / "samples.npy")
    assert samples.shape == (toy_cfg.eval.samples, 2) and np.isfinite(samples).all()


def test_training_is_deterministic_and_resumes_exactly(toy_cfg, tmp_path):
    cfg = dataclasses.replace(toy_cfg, train=dataclasses.replace(toy_cfg.train, steps=30))
    toy_train.train(cfg, 4, "gmm", tmp_path / "straight", checkpoint_every=10)
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))

    with preempted_at(toy_train, 25), pytest.raises(KeyboardInterrupt):
        toy_train.train(cfg, 4, "gmm", tmp_path / "resumed", checkpoint_every=10)
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    assert (tmp_path / "resumed" / "checkpoints" / "latest").read_text() == "step-00000020"

    toy_train.train(cfg, 4, "gmm", tmp_path / "resumed", checkpoint_every=10)
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)
    history = (tmp_path / "resumed" / "loss.csv").read_text()
    assert history == (tmp_path / "straight" / "loss.csv").read_text()


def test_checkpoint_of_other_params_is_not_resumed(toy_cfg, tmp_path):
    toy_train.train(toy_cfg, 1, "oracle", tmp_path, checkpoint_every=10)
    other = dataclasses.replace(toy_cfg, seed=toy_cfg.seed + 1)
    toy_train.train(other, 1, "oracle", tmp_path, checkpoint_every=1000)
    assert read_json(tmp_path / "meta.json")["seed"] == toy_cfg.seed + 1


def test_mismatched_model_is_a_clear_error(toy_cfg, tmp_path):
    toy_train.train(toy_cfg, 1, "unconditional", tmp_path)
    wider = dataclasses.replace(toy_cfg, model=dataclasses.replace(toy_cfg.model, width=64))
    with pytest.raises(ValueError, match="model.safetensors: does not fit toy.model"):
        toy_eval.evaluate(wider, tmp_path, tmp_path)


def test_report_gathers_every_run(toy_cfg, tmp_path):
    runs = tmp_path / "runs"
    for modes in toy_cfg.modes:
        for variant in toy_cfg.variants:
            run = toy_report.run_dir(runs, modes, variant)
            toy_train.train(toy_cfg, modes, variant, run)
            toy_eval.evaluate(toy_cfg, run, run)
    summary = toy_report.summarize(toy_cfg, runs, tmp_path / "out")
    assert set(summary["results"]) == {f"K{k}" for k in toy_cfg.modes}
    assert set(summary["results"]["K4"]) == set(toy_cfg.variants)
    for name in ("kld.json", "kld_vs_modes.png", "samples.png", "loss.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from dlc.data import codes as codes_io
from dlc.generation import codes as code_sampling
from dlc.stages import sample_codes, train_sedd

from .conftest import assert_close_weights, preempted_at, two_process_ddp


def write_codes(folder, split, n, length, vocab, seed):
    """Codes with structure: position p holds (first token + p) mod V."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, vocab, n)
    codes = ((first[:, None] + np.arange(length)) % vocab).astype(codes_io.numpy_dtype(vocab))
    meta = {"L": length, "V": vocab, "producer": "test", "dataset": "shapes", "split": split}
    codes_io.write_shard(folder / split / "part-00000.parquet",
                         [f"{split}-{i}" for i in range(n)], np.zeros(n), codes, meta)
    return codes


@pytest.fixture
def setup(micro_config, tmp_path):
    preset = micro_config.active
    length, vocab = preset.sem.length, preset.sem.vocab
    write_codes(tmp_path / "codes", "train", 200, length, vocab, 0)
    write_codes(tmp_path / "codes", "test", 40, length, vocab, 1)
    return preset.sedd, tmp_path, length, vocab


def test_train_sample_and_report(setup):
    cfg, folder, length, vocab = setup
    run = train_sedd.train(cfg, folder / "codes" / "train", length, vocab, folder / "sedd")
    for name in ("model.safetensors", "meta.json", "loss.csv", "loss.png"):
        assert (run / name).is_file()
    manifest = code_sampling.generate(cfg, run, folder / "generated", length, vocab)
    assert manifest["rows"] == cfg.sample.samples and len(manifest["shards"]) == 3
    generated = codes_io.read_codes(folder / "generated", length, vocab)
    assert generated.codes.shape == (cfg.sample.samples, length)
    assert generated.codes.max() < vocab  # the mask token never comes out
    assert (generated.frame["source"] == "sedd").all() and (generated.frame["label"] == -1).all()
    assert generated.metadata["producer"]["sampler"]["steps"] == cfg.sample.steps
    frame = pd.read_parquet(folder / "generated" / "part-00000.parquet")
    assert list(frame.columns) == ["image_id", "label", "codes", "source"]

    result = sample_codes.write_report(cfg, folder / "generated", folder / "codes", length, vocab,
                                       folder / "report.json", folder / "marginals.png")
    assert 0 <= result["tv_per_position"] <= 1 and result["n"] == 24
    assert result["exact_train_copies_floor"] >= 0 and (folder / "marginals.png").is_file()

    # a rerun with the same model and settings keeps every shard
    before = generated.codes.copy()
    (folder / "generated" / "part-00001.parquet").unlink()
    code_sampling.generate(cfg, run, folder / "generated", length, vocab)
    assert np.array_equal(codes_io.read_codes(folder / "generated").codes, before)

    # two tasks, the second finishing first: the manifest waits for both; same codes
    split = folder / "split"
    assert code_sampling.generate(cfg, run, split, length, vocab, task=1, tasks=2) is None
    assert sorted(p.name for p in split.glob("part-*")) == ["part-00001.parquet"]
    assert not (split / codes_io.MANIFEST).exists()
    assert code_sampling.generate(cfg, run, split, length, vocab, task=0, tasks=2) is not None
    assert np.array_equal(codes_io.read_codes(split).codes, before)

    # another remask_eta is another sampler: its shards are not taken for the old ones
    remasked = code_sampling.with_remask_eta(cfg, 0.5)
    assert remasked.sample.remask_eta == 0.5 and cfg.sample.remask_eta == 0.0
    code_sampling.generate(remasked, run, split, length, vocab)
    assert codes_io.read_codes(split).metadata["producer"]["sampler"]["remask_eta"] == 0.5


def test_resume_after_a_crash_equals_uninterrupted_training(setup):
    cfg, folder, length, vocab = setup
    straight = train_sedd.train(cfg, folder / "codes" / "train", length, vocab, folder / "a")
    with preempted_at(train_sedd, 3), pytest.raises(KeyboardInterrupt):
        train_sedd.train(cfg, folder / "codes" / "train", length, vocab, folder / "b")
    resumed = train_sedd.train(cfg, folder / "codes" / "train", length, vocab, folder / "b")
    a, b = (load_file(str(p / "model.safetensors")) for p in (straight, resumed))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_more_steps_continue_a_finished_run_to_the_longer_runs_weights(setup, caplog):
    """The lr is constant after warm-up, so train.steps is not part of what a checkpoint must
    match: a finished run asked for 2 steps more resumes from its last step (no restart) and
    ends bit-equal to a run asked for them from the start; asked for fewer again, it resumes
    from the checkpoint at its end."""
    cfg, folder, length, vocab = setup
    steps = cfg.train.steps
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps + 2))
    args = (folder / "codes" / "train", length, vocab)
    first = load_file(str(train_sedd.train(cfg, *args, folder / "b") / "model.safetensors"))
    straight = load_file(str(train_sedd.train(longer, *args, folder / "a") / "model.safetensors"))
    with caplog.at_level(logging.INFO, logger="dlc.train.checkpoint"):
        continued = train_sedd.train(longer, *args, folder / "b")
    assert f"(step {steps})" in caplog.text
    continued = load_file(str(continued / "model.safetensors"))
    assert all(torch.equal(straight[key], continued[key]) for key in straight)
    assert not all(torch.equal(first[key], continued[key]) for key in first)
    shortened = load_file(str(train_sedd.train(cfg, *args, folder / "b") / "model.safetensors"))
    assert all(torch.equal(first[key], shortened[key]) for key in first)


def test_two_processes_with_ddp_train_what_one_process_trains(setup):
    """Times and masks are drawn for the global batch and split by rank, so two processes
    train one process's model (dropout off: its masks are drawn inside each process)."""
    import dataclasses

    cfg, folder, length, vocab = setup
    cfg = dataclasses.replace(cfg, dropout=0.0)
    args = (cfg, folder / "codes" / "train", length, vocab)
    two_process_ddp(train_sedd.train, *args, folder / "ddp")
    single = train_sedd.train(*args, folder / "single")
    assert_close_weights(single / "model.safetensors", folder / "ddp" / "model.safetensors",
                         atol=1e-5)
    ddp_loss = pd.read_csv(folder / "ddp" / "loss.csv")["loss"]   # rank 0's half batch
    assert not np.allclose(ddp_loss, pd.read_csv(single / "loss.csv")["loss"])


def test_codes_of_another_shape_are_refused(setup):
    cfg, folder, length, vocab = setup
    with pytest.raises(ValueError, match="params say L="):
        train_sedd.train(cfg, folder / "codes" / "train", length + 1, vocab, folder / "x")
    run = train_sedd.train(cfg, folder / "codes" / "train", length, vocab, folder / "sedd")
    with pytest.raises(ValueError, match="the sem params say"):
        code_sampling.generate(cfg, run, folder / "gen", length, vocab * 2)


def test_tv_against_direct_computation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (300, 4))
    b = rng.integers(0, 5, (200, 4))
    for position in range(4):
        pa = np.bincount(a[:, position], minlength=5) / 300
        pb = np.bincount(b[:, position], minlength=5) / 200
        assert sample_codes.per_position_tv(a, b, 5)[position] == pytest.approx(
            0.5 * np.abs(pa - pb).sum())
    assert sample_codes.per_position_tv(a, a, 5).max() == 0

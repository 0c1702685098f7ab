"""train-dit and sample-dit on micro data: outputs, bit-exact resume, task-split sampling
assembled in code order whatever order the tasks finish in, and errors for stale inputs."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dlc import io as dio
from dlc.data import codes as codes_io
from dlc.generation import images as image_sampling
from dlc.generation.images import score_attributes
from dlc.models import vae as vae_lib
from dlc.models.dit import build_dit, load_dit
from dlc.stages import cache_latents, data, train_dit, train_judge, train_vae

from .conftest import assert_close_weights, preempted_at, two_process_ddp


@pytest.fixture
def setup(micro_config, tmp_path):
    """Images, a random-weight VAE, its latent cache, and codes for the train/test images."""
    preset = micro_config.active
    data.write_table(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    torch.manual_seed(0)
    vae_lib.build_vae(preset.vae.model, 32).save_pretrained(tmp_path / "vae" / "model")
    train_vae.evaluate(preset.vae, tmp_path / "images.parquet", tmp_path / "vae")
    cache_latents.cache(preset.vae, tmp_path / "images.parquet", tmp_path / "vae",
                        tmp_path / "latents")
    frame, _ = dio.read_parquet(tmp_path / "images.parquet")
    length, vocab = preset.sem.length, preset.sem.vocab
    for split in ("train", "test", "holdout"):
        rows = frame[frame["split"] == split]
        rng = np.random.default_rng(len(rows))
        codes = rng.integers(0, vocab, (len(rows), length))
        meta = {"L": length, "V": vocab, "producer": "test", "dataset": "shapes",
                "split": split}
        codes_io.write_shard(tmp_path / "codes" / split / "part-00000.parquet",
                             rows["image_id"].tolist(), np.zeros(len(rows)),
                             codes.astype(np.uint8), meta,
                             columns=rows[["shape", "colour", "size", "background", "texture"]],
                             features=rng.normal(size=(len(rows), 12)))
    train_judge.train(preset.judge, tmp_path / "images.parquet", 32, tmp_path / "judge")
    return preset, tmp_path


def train(preset, folder, out, condition="code"):
    return train_dit.train(preset.dit, preset.vae, folder / "latents", folder / "codes",
                           folder / "vae", preset.sem.length, preset.sem.vocab, folder / out,
                           condition)


def test_training_writes_the_run_folder(setup):
    preset, folder = setup
    run = train(preset, folder, "dit")
    for name in ("model.safetensors", "meta.json", "loss.csv", "loss.png", "samples.png"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "meta.json").read_text())
    assert meta["latent_shape"] == [4, 16, 16] and meta["condition"] == "code"
    assert meta["final"]["images_per_s"] > 0 and np.isfinite(meta["final"]["loss"])
    baseline = train(preset, folder, "uncond", condition="none")
    model, meta = load_dit(preset.dit, baseline, preset.sem.length, preset.sem.vocab)
    assert meta["condition"] == "none" and not hasattr(model, "code_embedder")


def test_resume_after_a_crash_equals_uninterrupted_training(setup):
    preset, folder = setup
    straight = train(preset, folder, "a")
    with preempted_at(train_dit, 3), pytest.raises(KeyboardInterrupt):
        train(preset, folder, "b")
    resumed = train(preset, folder, "b")
    a, b = (load_file(str(p / "model.safetensors")) for p in (straight, resumed))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_stale_latent_cache_is_refused(setup):
    preset, folder = setup
    report = dio.read_json(folder / "vae" / "vae.json")
    dio.write_json(folder / "vae" / "vae.json", {**report, "scaling_factor": 0.123})
    with pytest.raises(ValueError, match="re-run `dlc cache-latents`"):
        train(preset, folder, "dit")


def test_sampling_split_over_tasks_assembles_in_code_order(setup):
    preset, folder = setup
    run = train(preset, folder, "dit")
    cfg = preset.dit
    args = (cfg, preset.vae, run, folder / "codes" / "test", folder / "vae",
            preset.sem.length, preset.sem.vocab)
    # task 1 of 2 finishes first: nothing is assembled until task 0 has written its batches
    assert image_sampling.generate(*args, folder / "split", folder / "images.parquet", 1, 2) is None
    assert not (folder / "split" / "samples.npz").exists()
    summary = image_sampling.generate(*args, folder / "split", folder / "images.parquet", 0, 2,
                                      judge=folder / "judge")
    whole = image_sampling.generate(*args, folder / "whole", folder / "images.parquet")
    split = np.load(folder / "split" / "samples.npz")["arr_0"]
    assert split.shape == (cfg.sample.samples, 32, 32, 3) and split.dtype == np.uint8
    assert np.array_equal(split, np.load(folder / "whole" / "samples.npz")["arr_0"])
    assert summary["batch_seeds"] == whole["batch_seeds"]
    attributes = summary["attributes"]
    for key in ("match", "chance", "judge_on_sources"):
        assert set(attributes[key]) == {"shape", "colour", "size", "background", "texture",
                                        "all"}
        assert all(0 <= value <= 1 for value in attributes[key].values())
    train_judge.write_none(folder / "none", "no judge here")
    assert score_attributes(folder / "none", split, None, None, None) == {
        "skipped": "no judge here"}
    assert len(list((folder / "split" / "images").glob("*.png"))) == cfg.sample.samples
    assert (folder / "split" / "grid.png").is_file()
    codes = codes_io.read_codes(folder / "codes" / "test")
    ids = np.concatenate([np.load(p)["image_ids"] for p in
                          sorted((folder / "split" / "shards").glob("*.npz"))])
    assert ids.tolist() == codes.image_ids[:cfg.sample.samples].tolist()
    # a rerun keeps every batch; new settings redo them
    stamp = (folder / "split" / "shards" / "batch-00000.npz").stat().st_mtime_ns
    image_sampling.generate(*args, folder / "split")
    assert (folder / "split" / "shards" / "batch-00000.npz").stat().st_mtime_ns == stamp
    guided = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, cfg_scale=4.0))
    image_sampling.generate(guided, *args[1:], folder / "split")
    assert (folder / "split" / "shards" / "batch-00000.npz").stat().st_mtime_ns != stamp
    with pytest.raises(ValueError, match="task 2 is not in"):
        image_sampling.generate(*args, folder / "x", None, 2, 2)


def test_two_processes_with_ddp_train_what_one_process_trains(setup):
    """gloo on CPU: two processes split each global batch, draw the global batch's noise,
    times and dropped codes and keep their halves, and rank 0 writes the run; the weights
    equal one process's on the same global batches up to the float order of the gradient
    all-reduce."""
    preset, folder = setup
    two_process_ddp(train, preset, folder, "ddp")
    meta = json.loads((folder / "ddp" / "meta.json").read_text())
    assert meta["final"]["step"] == preset.dit.train.steps
    assert (folder / "ddp" / "samples.png").is_file()
    single = train(preset, folder, "single") / "model.safetensors"
    assert_close_weights(single, folder / "ddp" / "model.safetensors", atol=1e-5)
    single = load_file(str(single))
    torch.manual_seed(preset.dit.train.seed)  # the initial weights of both runs
    initial = build_dit(preset.dit, meta["latent_shape"], preset.sem.length,
                        preset.sem.vocab).state_dict()
    assert max((single[k] - initial[k]).abs().max().item() for k in single) > 1e-3


def test_keep_checkpoints_zero_keeps_every_one(setup):
    preset, folder = setup
    train_cfg = dataclasses.replace(preset.dit.train, steps=6, checkpoint_every=2,
                                    keep_checkpoints=0)
    every = dataclasses.replace(preset, dit=dataclasses.replace(preset.dit, train=train_cfg))
    run = train(every, folder, "all")
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == [
        "step-00000002", "step-00000004", "step-00000006"]          # the last step's too

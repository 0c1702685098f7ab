import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from dlc.stages import data, train_sem
from dlc.train.batches import StepBatches

from .conftest import preempted_at


@pytest.fixture
def sem_run(micro_config, tmp_path):
    """A micro images table and the micro SEM params (iBOT on, to cover it too)."""
    preset = micro_config.active
    data.run(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    loss = dataclasses.replace(preset.sem.loss, ibot_weight=1.0)
    return dataclasses.replace(preset.sem, loss=loss), tmp_path / "images.parquet"


def test_training_writes_the_run_folder(sem_run, tmp_path):
    cfg, images = sem_run
    out = train_sem.train(cfg, images, tmp_path / "run")
    for name in ("encoder.safetensors", "meta.json", "loss.csv", "loss.png"):
        assert (out / name).is_file(), name
    header = (out / "loss.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "dino", "koleo", "ibot", "lr", "momentum", "teacher_temp"} <= set(header)
    encoder = train_sem.load_encoder(cfg, out / "encoder.safetensors")
    assert encoder.codes(torch.randn(2, 3, 32, 32)).shape == (2, cfg.length)


def test_resume_after_a_crash_equals_uninterrupted_training(sem_run, tmp_path):
    cfg, images = sem_run
    straight = train_sem.train(cfg, images, tmp_path / "straight")

    # crash in step 3: the checkpoint of step 2 is on disk by then
    with preempted_at(train_sem, 3), pytest.raises(KeyboardInterrupt):
        train_sem.train(cfg, images, tmp_path / "resumed")
    assert (tmp_path / "resumed/checkpoints/latest").read_text() == "step-00000002"
    resumed = train_sem.train(cfg, images, tmp_path / "resumed")

    a = load_file(str(straight / "encoder.safetensors"))
    b = load_file(str(resumed / "encoder.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (straight / "loss.csv").read_text() == (resumed / "loss.csv").read_text()


def test_layer_wise_lr_decay_groups(micro_config):
    cfg = micro_config.active.sem
    encoder = train_sem.build_encoder(cfg)
    groups = train_sem.parameter_groups(encoder, layer_decay=0.5, patch_embed_mult=0.2)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(encoder.named_parameters())
    depth = len(encoder.backbone.blocks)  # 1 block: embeddings get 0.5^2, the block 0.5
    assert by_param[id(named["backbone.patch_embed.proj.weight"])]["lr_mult"] == pytest.approx(
        0.5 ** (depth + 1) * 0.2)
    assert by_param[id(named["backbone.cls_token"])]["lr_mult"] == pytest.approx(0.25)
    assert by_param[id(named["backbone.cls_token"])]["wd_mult"] == 0.0
    assert by_param[id(named["backbone.blocks.0.attn.qkv.weight"])]["lr_mult"] == 0.5
    assert by_param[id(named["backbone.blocks.0.attn.qkv.bias"])]["wd_mult"] == 0.0
    assert by_param[id(named["sem.to_logits.weight"])]["lr_mult"] == 1.0
    assert by_param[id(named["sem.to_logits.weight"])]["wd_mult"] == 1.0
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_processes_split_each_global_batch():
    single = list(StepBatches(3, 5, 8, rank=0, world=1))
    halves = [list(StepBatches(3, 5, 8, rank=r, world=2)) for r in (0, 1)]
    assert single == [list(range(24, 32)), list(range(32, 40))]
    for step, batch in enumerate(single):
        assert halves[0][step] + halves[1][step] == batch
    with pytest.raises(ValueError, match="not divisible"):
        StepBatches(0, 1, 9, rank=0, world=2)


def test_a_wrong_encoder_file_is_a_clear_error(micro_config, tmp_path):
    cfg = micro_config.active.sem
    with pytest.raises(FileNotFoundError, match="run `dlc train-sem`"):
        train_sem.load_encoder(cfg, tmp_path / "encoder.safetensors")
    other = dataclasses.replace(cfg, length=cfg.length + 1)
    from dlc.train.checkpoint import save_weights

    save_weights(tmp_path / "encoder.safetensors", train_sem.build_encoder(other))
    with pytest.raises(ValueError, match="encoder.safetensors: does not fit the sem params"):
        train_sem.load_encoder(cfg, tmp_path / "encoder.safetensors")


def _ddp_worker(rank: int, cfg, images, out, port: int) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    train_sem.train(cfg, images, out)
    torch.distributed.destroy_process_group()


def test_two_processes_train_with_ddp_on_cpu(sem_run, tmp_path):
    """gloo on CPU: two processes split each global batch and rank 0 writes the run."""
    import socket

    cfg, images = sem_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(cfg, images, tmp_path / "ddp", port),
                                nprocs=2, join=True)
    assert (tmp_path / "ddp" / "encoder.safetensors").is_file()
    history = (tmp_path / "ddp" / "loss.csv").read_text().splitlines()
    assert len(history) == cfg.train.steps + 1

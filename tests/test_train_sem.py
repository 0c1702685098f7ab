import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from dlc.models.sem import build_encoder, load_encoder
from dlc.stages import data, train_sem
from dlc.train import distributed
from dlc.train.batches import StepBatches, StepRandom

from .conftest import assert_close_weights, preempted_at, two_process_ddp


@pytest.fixture
def sem_run(micro_config, tmp_path):
    """A micro images table and the micro SEM params with every loss on (DINO, iBOT, NT-Xent)
    and object paste, whatever the preset says, to cover them."""
    preset = micro_config.active
    data.write_table(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    loss = dataclasses.replace(preset.sem.loss, dino_weight=1.0, ibot_weight=1.0, nce_weight=1.0)
    crops = dataclasses.replace(preset.sem.crops, object_paste=0.5)
    return (dataclasses.replace(preset.sem, loss=loss, crops=crops),
            tmp_path / "images.parquet")


def test_training_writes_the_run_folder(sem_run, tmp_path):
    cfg, images = sem_run
    out = train_sem.train(cfg, images, tmp_path / "run")
    for name in ("encoder.safetensors", "meta.json", "loss.csv", "loss.png"):
        assert (out / name).is_file(), name
    header = (out / "loss.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "dino", "koleo", "ibot", "nce", "lr", "momentum", "teacher_temp"} <= set(
        header)
    encoder = load_encoder(cfg, out / "encoder.safetensors")
    assert encoder.codes(torch.randn(2, 3, 32, 32)).shape == (2, cfg.length)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["precision"] == distributed.resolve_precision(torch.device("cpu"),
                                                              cfg.train.precision)


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


def test_without_dino_and_ibot_the_teacher_runs_no_forward(sem_run, tmp_path, monkeypatch):
    """NT-Xent and KoLeo alone: the teacher is only the EMA of the student, never evaluated."""
    cfg, images = sem_run
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, dino_weight=0.0,
                                                            ibot_weight=0.0))
    make_ema = train_sem.make_ema

    def teacher_without_forward(encoder):
        teacher = make_ema(encoder)
        teacher.forward = lambda *args, **kwargs: pytest.fail("the teacher ran a forward")
        return teacher

    monkeypatch.setattr(train_sem, "make_ema", teacher_without_forward)
    out = train_sem.train(cfg, images, tmp_path / "run")
    header = (out / "loss.csv").read_text().splitlines()[0].split(",")
    assert {"koleo", "nce"} <= set(header) and not {"dino", "ibot"} & set(header)


def test_layer_wise_lr_decay_groups(micro_config):
    cfg = micro_config.active.sem
    encoder = build_encoder(cfg)
    groups = train_sem.parameter_groups(encoder, layer_decay=0.5, patch_embed_mult=0.2)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(encoder.named_parameters())
    depth = len(encoder.backbone.blocks)  # 1 block: embeddings get 0.5^2, the block 0.5
    stem = [name for name in named if name.startswith("backbone.patch_embed")]
    assert stem  # the preset's convolutional stem, or timm's one convolution
    for name in stem:
        assert by_param[id(named[name])]["lr_mult"] == pytest.approx(0.5 ** (depth + 1) * 0.2)
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


def test_processes_draw_their_rows_of_the_global_batch():
    """StepRandom: the halves of two processes are one process's draws; another step or
    seed draws other numbers; the global generator is seeded per (seed, step, rank)."""
    single = StepRandom(7, 3)
    whole = [single.rand(8, 2), single.randn(8), single.randint(10, 8, 3)]
    halves = []
    for rank in (0, 1):
        draws = StepRandom(7, 3, rank, 2)
        halves.append([draws.rand(8, 2), draws.randn(8), draws.randint(10, 8, 3)])
    for k, tensor in enumerate(whole):
        assert torch.equal(torch.cat([halves[0][k], halves[1][k]]), tensor)
    assert not torch.equal(StepRandom(7, 4).rand(8), StepRandom(7, 3).rand(8))
    assert not torch.equal(StepRandom(8, 3).rand(8), StepRandom(7, 3).rand(8))
    with pytest.raises(ValueError, match="not divisible"):
        StepRandom(7, 3, 0, 2).rand(9)
    inside = []   # dropout and drop path: the global generator, by (seed, step, rank)
    for rank in (0, 1, 0):
        StepRandom(7, 3, rank, 2)
        inside.append(torch.rand(4))
    assert torch.equal(inside[0], inside[2]) and not torch.equal(inside[0], inside[1])


def test_a_wrong_encoder_file_is_a_clear_error(micro_config, tmp_path):
    cfg = micro_config.active.sem
    with pytest.raises(FileNotFoundError, match="run `dlc train-sem`"):
        load_encoder(cfg, tmp_path / "encoder.safetensors")
    other = dataclasses.replace(cfg, length=cfg.length + 1)
    from dlc.train.checkpoint import save_weights

    save_weights(tmp_path / "encoder.safetensors", build_encoder(other))
    with pytest.raises(ValueError, match="encoder.safetensors: does not fit the sem params"):
        load_encoder(cfg, tmp_path / "encoder.safetensors")


@pytest.mark.parametrize("centering", ["centre", "sinkhorn"])
def test_two_processes_with_ddp_train_what_one_process_trains(sem_run, tmp_path, centering):
    """gloo on CPU: two processes split each global batch, draw the global batch's iBOT
    masks and keep their halves, centre the teacher on the mean of both, and rank 0 writes
    the run. With KoLeo, NT-Xent and drop path off (all per process, as in DINOv2: nearest
    neighbours and negatives within the process's batch, masks drawn inside each process), the
    encoder equals one process's. Teacher momentum 0 makes the saved teacher the student, which
    moves ~1e-3 in these steps. Sinkhorn-Knopp normalises over both processes' rows."""
    cfg, images = sem_run
    cfg = dataclasses.replace(
        cfg, loss=dataclasses.replace(cfg.loss, koleo_weight=0.0, nce_weight=0.0),
        head=dataclasses.replace(cfg.head, centering=centering),
        backbone=dataclasses.replace(cfg.backbone, drop_path=0.0),
        train=dataclasses.replace(cfg.train, momentum=0.0, momentum_end=0.0))
    two_process_ddp(train_sem.train, cfg, images, tmp_path / "ddp")
    single = train_sem.train(cfg, images, tmp_path / "single")
    assert_close_weights(single / "encoder.safetensors", tmp_path / "ddp" / "encoder.safetensors",
                         atol=1e-5)
    assert (tmp_path / "ddp" / "encoder.safetensors").is_file()
    history = (tmp_path / "ddp" / "loss.csv").read_text().splitlines()
    assert len(history) == cfg.train.steps + 1

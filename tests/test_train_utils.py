import math

import pytest
import torch

from dlc.train import checkpoint
from dlc.train.batches import task_share
from dlc.train.ema import make_ema, update_ema
from dlc.train.schedules import lr_factor


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, "cosine", 10, 110) == pytest.approx(0.1)
    assert lr_factor(9, "cosine", 10, 110) == pytest.approx(1.0)
    assert lr_factor(10, "cosine", 10, 110) == pytest.approx(1.0)
    assert lr_factor(60, "cosine", 10, 110) == pytest.approx(0.5)
    assert lr_factor(110, "cosine", 10, 110) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(500, "constant", 10, 110) == 1.0
    assert lr_factor(35, "cosine", 10, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_ema_update_is_the_convex_combination():
    model = torch.nn.Linear(3, 2)
    ema = make_ema(model)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    update_ema(ema, model, decay=0.9)
    for name, value in ema.state_dict().items():
        expected = 0.9 * before[name] + 0.1 * model.state_dict()[name]
        torch.testing.assert_close(value, expected)
    assert not any(p.requires_grad for p in ema.parameters())


def test_checkpoint_round_trip_and_pruning(tmp_path):
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    for step in (10, 20, 30):
        checkpoint.save(tmp_path, step, model, ema, {"extra": step}, "hash-a", keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000020", "step-00000030"]
    checkpoint.save(tmp_path / "all", 10, model, ema, {}, "hash-a", keep=0)
    checkpoint.save(tmp_path / "all", 20, model, ema, {}, "hash-a", keep=0)
    assert len(list((tmp_path / "all").glob("step-*"))) == 2  # keep 0: none dropped
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    checkpoint.save(tmp_path, 40, model, ema, {"extra": 40}, "hash-a")
    fresh_model, fresh_ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    state = checkpoint.load_latest(tmp_path, fresh_model, fresh_ema, "hash-a")
    assert state["step"] == 40 and state["extra"] == 40
    torch.testing.assert_close(fresh_model.weight, model.weight)
    torch.testing.assert_close(torch.rand(3), expected)  # RNG restored
    assert checkpoint.load_latest(tmp_path, fresh_model, fresh_ema, "hash-b") is None
    assert checkpoint.load_latest(tmp_path / "none", fresh_model, fresh_ema, "hash-a") is None


def test_a_new_run_drops_the_later_checkpoints_of_an_old_one(tmp_path):
    """An old run of other params left steps 140 and 150: the new run's step 30 is kept and
    resumable (pruning by name alone would drop it for them), and they are gone."""
    model = torch.nn.Linear(2, 2)
    for step in (140, 150):
        checkpoint.save(tmp_path, step, model, None, {}, "old-params", keep=2)
    assert checkpoint.load_latest(tmp_path, model, None, "new-params") is None
    checkpoint.save(tmp_path, 30, model, None, {}, "new-params", keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000030"]
    assert checkpoint.load_latest(tmp_path, model, None, "new-params")["step"] == 30


def test_warmed_up_ema_decay():
    from dlc.train.ema import warmed_up_decay

    assert warmed_up_decay(0, 0.999) == pytest.approx(0.1)
    assert warmed_up_decay(90, 0.999) == pytest.approx(0.91)
    assert warmed_up_decay(100_000, 0.999) == 0.999
    # the initial weights' share of the average after 1,000 steps: tiny, not 0.999^1000 = 37%
    share = 1.0
    for step in range(1000):
        share *= warmed_up_decay(step, 0.999)
    assert share < 1e-3


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_checkpoint_is_skipped_for_the_one_before_it(tmp_path, damage):
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    checkpoint.save(tmp_path, 10, model, ema, {"extra": 10}, "hash-a")
    with torch.no_grad():
        model.weight.add_(1.0)
    checkpoint.save(tmp_path, 20, model, ema, {"extra": 20}, "hash-a")
    target = tmp_path / "step-00000020" / "model.safetensors"
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":   # still a valid safetensors file: only the recorded hash sees it
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        target.unlink()
    fresh_model, fresh_ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    state = checkpoint.load_latest(tmp_path, fresh_model, fresh_ema, "hash-a")
    assert state["step"] == 10
    torch.testing.assert_close(fresh_model.weight, model.weight - 1.0)


class RunsCode:
    """A pickle that, loaded with weights_only=False, would create `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_state_that_would_run_code_is_never_unpickled(tmp_path):
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    checkpoint.save(tmp_path, 10, model, ema, {"extra": 10}, "hash-a")
    checkpoint.save(tmp_path, 20, model, ema, {"extra": RunsCode(tmp_path / "marker")}, "hash-a")
    assert not (tmp_path / "marker").exists()
    state = checkpoint.load_latest(tmp_path, model, ema, "hash-a")
    assert state["step"] == 10                   # step 20 refused, the one before it used
    assert not (tmp_path / "marker").exists()


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    import random

    import numpy as np

    model = torch.nn.Linear(2, 2)
    np.random.seed(3), random.seed(3), torch.manual_seed(3)
    checkpoint.save(tmp_path, 1, model, None, {}, "hash-a")
    expected = np.random.rand(), random.random(), torch.rand(1)
    np.random.seed(4), random.seed(4), torch.manual_seed(4)
    checkpoint.load_latest(tmp_path, model, None, "hash-a")
    assert (np.random.rand(), random.random(), torch.rand(1)) == expected


def test_task_shares_cover_every_piece_once_and_a_bad_task_is_refused():
    shares = [task_share(10, task, 3) for task in range(3)]
    assert shares[1] == [1, 4, 7]
    assert sorted(i for share in shares for i in share) == list(range(10))
    with pytest.raises(ValueError, match="task 3 is not in"):
        task_share(10, 3, 3)

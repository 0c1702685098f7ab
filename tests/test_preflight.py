"""`dlc preflight` on the imagenet preset pointed at tiny assets in the real formats: it passes
and plans the jobs; a missing path fails in one line naming it; a file that does not load, or
GPUs that do not divide a batch, fail naming the key."""

from __future__ import annotations

import copy
import json
import subprocess

import numpy as np
import pytest
import yaml

from dlc import config
from dlc.stages import preflight

from . import imagenet_assets
from .conftest import BIN, ENV, ROOT

BENCHMARKS = ROOT / "benchmarks/results"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return imagenet_assets.build(tmp_path_factory.mktemp("imagenet-assets"))


@pytest.fixture
def params(assets):
    return imagenet_assets.imagenet_params(assets)


def test_every_path_loads_and_the_plan_lists_the_gpu_jobs(params, tmp_path, capsys):
    cfg = config.parse(params)
    result = preflight.run(cfg, out=tmp_path / "preflight.json", benchmarks=BENCHMARKS)
    assert set(result["checked"]) == {
        "data.folder.train_dir", "data.folder.val_dir", "sem.backbone.weights",
        "vae.pretrained", "evaluate.reference_batch", "evaluate.inception_weights", "text.model",
        "text.captions"}
    per_class = {"train_dir": 8, "val_dir": 4}
    assert result["images"] == {   # the unreadable file is counted: `dlc data` skips it later
        **{f"data.folder.{tree}": n * len(imagenet_assets.CLASSES) + (tree == "train_dir")
           for tree, n in per_class.items()},
        "text.captions": 2 * 5}    # the first shard's complete pairs, times the shards
    jobs = {job["rule"]: job for job in result["jobs"]}
    assert set(jobs) == set(params["presets"]["imagenet"]["resources"])
    dit = params["presets"]["imagenet"]["dit"]["train"]
    rate = max(row["images_per_s"] for row in
               json.loads((BENCHMARKS / "dit_h200.json").read_text())["train"])
    assert jobs["train_dit"]["gpu_hours"] == pytest.approx(
        dit["steps"] * dit["batch_size"] / rate / 3600)
    assert jobs["train_sem"]["gpu_hours"] is None           # no measurement: said so
    printed = capsys.readouterr().out
    assert "train_dit" in printed and "not measured" in printed
    assert json.loads((tmp_path / "preflight.json").read_text())["jobs"] == result["jobs"]


def test_a_missing_path_fails_in_one_line_naming_it(params, assets, tmp_path):
    broken = copy.deepcopy(params)
    missing = tmp_path / "nowhere" / "sd-vae-ft-ema"
    broken["presets"]["imagenet"]["vae"]["pretrained"] = str(missing)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(broken))
    result = subprocess.run([str(BIN / "dlc"), "preflight"], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert f"vae.pretrained {missing}: no such file or folder" in errors[0]


def test_a_file_that_does_not_load_is_named(params, assets, tmp_path):
    garbage = tmp_path / "inception.pth"
    garbage.write_bytes(b"not torch weights")
    params["presets"]["imagenet"]["evaluate"]["inception_weights"] = str(garbage)
    with pytest.raises(ValueError, match=f"evaluate.inception_weights {garbage}: does not load"):
        preflight.run(config.parse(params))
    params["presets"]["imagenet"]["data"]["folder"]["val_dir"] = str(assets["train_dir"] / "..")
    with pytest.raises(ValueError, match="class 'train' is not a class of"):
        preflight.run(config.parse(params))


def test_a_reference_batch_with_statistics_of_another_network_is_refused(params, tmp_path):
    reference = tmp_path / "reference.npz"
    np.savez(reference, arr_0=np.zeros((2, 8, 8, 3), np.uint8), mu=np.zeros(8),
             sigma=np.eye(8))
    params["presets"]["imagenet"]["evaluate"]["reference_batch"] = str(reference)
    with pytest.raises(ValueError, match=r"reference_batch .*: does not load \(mu is \(8,\), "
                                         r"the Inception statistics need \(2048,\)\)"):
        preflight.run(config.parse(params))


def test_gpus_that_do_not_divide_the_batch_are_refused(params):
    params["presets"]["imagenet"]["resources"]["train_dit"]["gpu"] = 3
    batch = params["presets"]["imagenet"]["dit"]["train"]["batch_size"]
    with pytest.raises(ValueError, match=rf"resources.train_dit: 3 GPUs x 1 nodes = 3 "
                                         rf"processes do not divide dit.train.batch_size {batch}"):
        preflight.run(config.parse(params))

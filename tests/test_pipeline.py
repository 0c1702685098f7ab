"""dlc.Pipeline on a finished micro run: every call gives the bytes its CLI stage wrote; `dlc
export` folders load in a fresh process with no params.yaml; bad folders and codes fail
clearly; the notebook tour executes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from dlc import Pipeline
from dlc.config import ConfigError
from dlc.data.codes import read_codes
from dlc.data.sources import ImageTable

from .conftest import BIN, ENV, ROOT

TINY = "results/tiny"


@pytest.fixture(scope="module")
def pipe(micro_run):
    return Pipeline.from_run(micro_run / TINY, params=micro_run / "params.yaml")


def samples(folder) -> np.ndarray:
    return np.load(folder / "samples.npz")["arr_0"]


def test_each_call_gives_the_bytes_of_its_stage(micro_run, pipe):
    run = micro_run / TINY
    length, vocab = pipe.length, pipe.vocab
    test_codes = read_codes(run / "codes/test", length, vocab)
    table = ImageTable(run / "data/images.parquet", "test")
    pictures = [table.raw(i) for i in range(12)]       # PIL in, as a user has them
    assert np.array_equal(pipe.encode(pictures).numpy(), test_codes.codes[:12])
    as_arrays = pipe.encode([np.asarray(p) for p in pictures[:3]])     # uint8 arrays in
    assert np.array_equal(as_arrays.numpy(), test_codes.codes[:3])
    probabilities = pipe.distributions(pictures[:3])
    assert probabilities.shape == (3, length, vocab)
    assert torch.allclose(probabilities.sum(-1), torch.ones(3, length), atol=1e-5)

    decoded = samples(run / "dit/decoded")                  # sample-dit on the test codes
    assert np.array_equal(pipe.decode(test_codes.codes[:len(decoded)]), decoded)
    sedd_codes = read_codes(run / "sedd/codes", length, vocab).codes    # sample-codes
    assert np.array_equal(pipe.sample_codes(len(sedd_codes)).numpy(), sedd_codes)
    generated = samples(run / "generate/dlc")               # generate: SEDD codes, then DiT
    assert np.array_equal(pipe.generate(len(generated)), generated)

    written = read_codes(run / "text2code/codes", length, vocab)      # text2code (the study)
    prompts = list(dict.fromkeys(written.frame["caption"]))
    per_prompt = len(written.frame) // len(prompts)
    assert np.array_equal(pipe.text(prompts, per_prompt).numpy(), written.codes)


def test_compose_gives_the_bytes_of_dlc_compose(micro_run, pipe, tmp_path):
    run = micro_run / TINY
    train = read_codes(run / "codes/train", pipe.length, pipe.vocab)
    sources = train.frame["image_id"].iloc[:2].tolist()
    out = tmp_path / "compose"
    subprocess.run([str(BIN / "dlc"), "compose", "--sources", *sources, "--codes",
                    str(run / "codes/train"), "--dit", str(run / "dit"), "--vae",
                    str(run / "vae"), "--out", str(out)], cwd=micro_run, env=ENV, check=True,
                   capture_output=True)
    hybrids = pipe.compose(np.stack([train.lookup(i) for i in sources]))
    assert np.array_equal(hybrids.numpy(), read_codes(out / "codes", pipe.length,
                                                      pipe.vocab).codes)
    assert np.array_equal(pipe.decode(hybrids), samples(out))
    with pytest.raises(ValueError, match="needs the source images"):
        pipe.compose(hybrids[:2], method="average")


def test_overrides_change_what_they_name_only(pipe):
    codes = pipe.sample_codes(4, steps=4, seed=3)
    assert codes.shape == (4, pipe.length) and codes.min() >= 0 and codes.max() < pipe.vocab
    assert np.array_equal(pipe.sample_codes(4, steps=4, seed=3).numpy(), codes.numpy())
    assert not np.array_equal(pipe.sample_codes(4, steps=4, seed=4).numpy(), codes.numpy())
    one = pipe.decode(codes, seed=5, cfg_scale=1.0)
    assert one.dtype == np.uint8 and one.shape[0] == 4 and one.shape[-1] == 3
    assert np.array_equal(pipe.decode(codes, seed=5, cfg_scale=1.0), one)
    assert not np.array_equal(pipe.decode(codes, seed=5, cfg_scale=4.0), one)


def test_bad_codes_and_missing_parts_fail_clearly(pipe, micro_run):
    with pytest.raises(ValueError, match=rf"codes must be \(B, {pipe.length}\)"):
        pipe.decode(np.zeros((2, pipe.length + 1), np.int64))
    with pytest.raises(ValueError, match=rf"integers in \[0, {pipe.vocab}\)"):
        pipe.decode(np.full((2, pipe.length), pipe.vocab))
    partial = Pipeline(pipe.length, pipe.vocab, {"sem": pipe.parts["sem"]}, pipe.compose_cfg)
    with pytest.raises(ValueError, match="no dit part"):
        partial.decode(np.zeros((1, pipe.length), np.int64))
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        Pipeline.from_run(micro_run / "results/nothing", params=micro_run / "params.yaml")


def test_export_loads_in_a_fresh_process_without_params(micro_run, tmp_path):
    folder = tmp_path / "exported"
    subprocess.run([str(BIN / "dlc"), "export", "--run", TINY, "--out", str(folder)],
                   cwd=micro_run, env=ENV, check=True, capture_output=True)
    manifest = json.loads((folder / "pipeline.json").read_text())
    assert set(manifest["parts"]) == {"sem", "sedd", "dit", "vae", "text"}
    for part in ("sem", "sedd", "dit", "text"):
        assert (folder / part / "config.json").is_file()
        assert (folder / part / "model.safetensors").is_file()
    assert (folder / "vae/config.json").is_file()                       # a diffusers folder
    card = (folder / "README.md").read_text()
    assert "license: mit" in card and "judge_fd_dlc" in card and "## Params" in card

    elsewhere = tmp_path / "elsewhere"     # no params.yaml, no results/ here
    elsewhere.mkdir()
    script = ("import sys, numpy as np; from dlc import Pipeline; "
              "pipe = Pipeline.from_pretrained(sys.argv[1]); "
              "np.save(sys.argv[2], pipe.generate(int(sys.argv[3])))")
    expected = samples(micro_run / TINY / "generate/dlc")
    subprocess.run([sys.executable, "-c", script, str(folder), "images.npy",
                    str(len(expected))], cwd=elsewhere, env=ENV, check=True)
    assert np.array_equal(np.load(elsewhere / "images.npy"), expected)


def test_a_broken_export_folder_fails_naming_what_is_wrong(micro_run, tmp_path):
    folder = Pipeline.from_run(micro_run / TINY, params=micro_run / "params.yaml") \
        .save_pretrained(tmp_path / "exported")
    with pytest.raises(FileNotFoundError, match="not a dlc pipeline folder"):
        Pipeline.from_pretrained(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    config = json.loads((other / "dit/config.json").read_text())
    (other / "dit/config.json").write_text(json.dumps({**config, "L": config["L"] * 2}))
    with pytest.raises(ConfigError, match=r"dit/config.json: codes of L=\d+ .*another pipeline"):
        Pipeline.from_pretrained(other)
    shutil.rmtree(other / "dit")
    with pytest.raises(FileNotFoundError, match="part dit named in .* is missing"):
        Pipeline.from_pretrained(other)


def test_the_notebook_tour_executes_on_a_finished_run(micro_run):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "docs/notebooks/tour.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(micro_run)}}).execute()
    pictures = [output for cell in notebook.cells for output in cell.get("outputs", [])
                if "image/png" in output.get("data", {})]
    assert len(pictures) >= 8

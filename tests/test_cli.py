import importlib
import inspect
import subprocess
from pathlib import Path

import pytest
import yaml

from dlc import cli

from .conftest import ENV

STAGES = tuple(stage.name for stage in cli.STAGES) + ("schema", "params")


def run_dlc(*args, cwd=None):
    return subprocess.run(["dlc", *args], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=300)


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for stage in STAGES:
        assert stage in text


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_explains_its_options(stage, capsys):
    with pytest.raises(SystemExit):
        cli.main([stage, "--help"])
    assert "--" in capsys.readouterr().out


def test_every_stage_module_is_one_in_the_table():
    modules = {path.stem for path in (Path(cli.__file__).parent / "stages").glob("*.py")}
    assert modules - {"__init__"} == {stage.name.replace("-", "_") for stage in cli.STAGES}


@pytest.mark.parametrize("stage", cli.STAGES, ids=lambda stage: stage.name)
def test_each_stage_run_takes_its_arguments_by_name(stage):
    """run(cfg, *, ...): its keywords are the command's arguments, and those without a default
    are the command's required ones, so the table and the function cannot drift apart."""
    parameters = list(inspect.signature(importlib.import_module(stage.module).run).parameters
                      .values())
    assert parameters[0].name == "cfg"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[1:])
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "stage").choices[stage.name]
    given = {a.dest: a for a in sub._actions}
    names = {a.flag.lstrip("-").replace("-", "_") for a in stage.args}
    names |= {"task", "tasks"} if stage.tasks else set()
    names |= {"params"} if stage.params_path else set()
    assert {p.name for p in parameters[1:]} == names
    for p in parameters[1:]:
        if p.name in given and p.name != "params":
            needed = given[p.name].required or not given[p.name].option_strings
            assert needed == (p.default is inspect.Parameter.empty), p.name


def test_bad_params_fail_with_the_key_and_no_traceback(tmp_path, micro):
    micro["toy"]["train"]["lr"] = "fast"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(micro))
    result = run_dlc("toy-train", "--params", str(params), "--modes", "4",
                     "--variant", "oracle", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "toy.train.lr: expected a number, got 'fast'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_input_names_the_path(tmp_path, micro):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(micro))
    result = run_dlc("toy-eval", "--params", str(params), "--model", str(tmp_path / "absent"),
                     "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "absent/meta.json: missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_stage_writes_table_report_preview_and_log(tmp_path, micro):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(micro))
    out = tmp_path / "data"
    result = run_dlc("data", "--params", str(params), "--out", str(out / "images.parquet"),
                     "--report", str(out / "report.json"), "--preview",
                     str(out / "preview.png"), "--log", str(tmp_path / "logs" / "data.log"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["images.parquet", "preview.png",
                                                     "report.json"]
    assert "wrote 300 rows" in (tmp_path / "logs" / "data.log").read_text()


@pytest.mark.parametrize("args, message", [
    (["extract-codes", "--images", "{tmp}/images.parquet", "--encoder", "{tmp}/enc.safetensors",
      "--out", "{tmp}/codes"], "enc.safetensors: encoder weights not found"),
    (["probe", "--codes", "{tmp}/codes", "--out", "{tmp}/probe.json"],
     "codes/train: codes not found"),
    (["train-sedd", "--codes", "{tmp}/codes", "--out", "{tmp}/sedd"],
     "codes/train: codes not found"),
    (["sample-codes", "--model", "{tmp}/sedd", "--out", "{tmp}/gen", "--codes", "{tmp}/codes",
      "--report", "{tmp}/r.json", "--figure", "{tmp}/f.png"], "sedd/meta.json: missing"),
])
def test_dlc_stages_name_their_missing_inputs(tmp_path, micro, args, message):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(micro))
    result = run_dlc(*[a.format(tmp=tmp_path) for a in args], "--params", str(params))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_text_model_section_that_is_null_is_named(tmp_path, micro):
    micro["presets"]["tiny"]["text_pretrained"] = None
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(micro))
    result = run_dlc("train-text2code", "--section", "text_pretrained", "--codes",
                     str(tmp_path / "codes"), "--out", str(tmp_path / "text"), "--params",
                     str(params))
    assert result.returncode == 2
    assert "text_pretrained is null in this preset" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "text").exists()

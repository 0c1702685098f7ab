"""A full or read-only disk: a stage fails with exit 2 and a message naming the output it was
writing, no traceback, nothing half-written under a final name; the rerun after space is freed
completes (a training stage ends with the weights of a run that never failed). The outputs sit
on a small tmpfs, which needs root to mount: elsewhere these tests are skipped."""

import os
import subprocess

import pytest
import yaml

from .conftest import ENV, micro_params

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def remount(mount, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


def dlc(folder, *args):
    return subprocess.run(["dlc", *args, "--params", str(folder / "params.yaml")],
                          capture_output=True, text=True, env=ENV, timeout=600)


def leftovers(root) -> list[str]:
    return [str(p) for p in root.rglob("*.tmp")]


def test_a_full_disk_fails_cleanly_and_the_rerun_completes(tmp_path, disk):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(micro_params()))
    table = disk / "data" / "images.parquet"
    data = ("data", "--out", str(table), "--report", str(disk / "data" / "report.json"))
    failed = dlc(tmp_path, *data)
    assert failed.returncode == 2, failed.stderr
    assert f"{table}: cannot write it, no space left on the device" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not table.exists() and not leftovers(disk)

    remount(disk, "size=16m")
    assert dlc(tmp_path, *data).returncode == 0
    assert table.is_file()


def test_a_training_stage_on_a_full_disk_resumes_to_the_same_weights(tmp_path, disk):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(micro_params()))
    images = tmp_path / "images.parquet"
    assert dlc(tmp_path, "data", "--out", str(images), "--report",
               str(tmp_path / "report.json")).returncode == 0
    clean = dlc(tmp_path, "train-sem", "--images", str(images), "--out", str(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr

    failed = dlc(tmp_path, "train-sem", "--images", str(images), "--out", str(disk / "sem"))
    assert failed.returncode == 2, failed.stderr
    assert "cannot write it, no space left on the device" in failed.stderr
    assert str(disk / "sem") in failed.stderr and "Traceback" not in failed.stderr
    assert not (disk / "sem" / "encoder.safetensors").exists() and not leftovers(disk)

    remount(disk, "size=16m")
    rerun = dlc(tmp_path, "train-sem", "--images", str(images), "--out", str(disk / "sem"))
    assert rerun.returncode == 0, rerun.stderr
    assert ((disk / "sem" / "encoder.safetensors").read_bytes()
            == (tmp_path / "clean" / "encoder.safetensors").read_bytes())


def test_a_read_only_output_folder_fails_naming_it(tmp_path, disk):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(micro_params()))
    remount(disk, "ro")
    table = disk / "data" / "images.parquet"
    failed = dlc(tmp_path, "data", "--out", str(table), "--report", str(disk / "report.json"))
    assert failed.returncode == 2
    assert f"{table}: cannot write it, read-only file system" in failed.stderr
    assert "Traceback" not in failed.stderr

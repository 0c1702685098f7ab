"""research/sem/sem_probe_sweep.py at micro size: a run's row, and its trace of the student and
the teacher along the run (every checkpoint kept)."""

import pytest
from conftest import import_research

from dlc import config
from dlc.stages import data


@pytest.fixture(scope="module")
def sweep():
    return import_research("sem_probe_sweep")


def test_trace_probes_student_and_teacher_at_every_checkpoint(sweep, micro, tmp_path):
    preset = config.parse(micro, "micro params").active
    data.write_table(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    row = sweep.sweep_one("micro", ["sem.train.steps=8"], micro, "tiny",
                          tmp_path / "images.parquet", tmp_path / "work", trace_every=2)
    targets = set(preset.probe.targets)
    assert set(row["top1"]) == targets
    # steps 2, 4 and 6 (the last step writes the encoder, not a checkpoint), none dropped
    assert [point["step"] for point in row["trace"]] == [2, 4, 6]
    for point in row["trace"]:
        for role in ("student", "teacher"):
            assert set(point[role]) == targets
            assert all(0 <= top1["codes"] <= 1 for top1 in point[role].values())
    encoders = tmp_path / "work" / "micro" / "trace" / "step-00000006"
    assert (encoders / "student" / "probe.json").read_text() != (
        encoders / "teacher" / "probe.json").read_text()

"""research/sem/sem_argmax_loss.py at micro size: the four readings of a trained encoder and the
probe on each."""

from conftest import import_research

from dlc import config
from dlc.stages import data, train_sem


def test_every_reading_is_probed(micro, tmp_path):
    bench = import_research("sem_argmax_loss")
    preset = config.parse(micro, "micro params").active
    data.write_table(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    run = train_sem.train(preset.sem, tmp_path / "images.parquet", tmp_path / "sem")
    row = bench.measure(preset, run / "encoder.safetensors", tmp_path / "images.parquet")
    assert row["L"] == preset.sem.length and set(row["top1"]) == set(preset.probe.targets)
    for top1 in row["top1"].values():
        assert set(top1) == {"summary", "probabilities", "codes", "features"}
        assert all(0 <= value <= 1 for value in top1.values())
    assert 1 / preset.sem.vocab <= row["mean_max_probability"] <= 1
    assert 1 <= row["tokens_used_per_position"] <= preset.sem.vocab

"""The report stage: every section from a run's results files, stage times from the job logs,
the claims computed from the numbers, and a missing input named."""

import json

import numpy as np
import pytest

from dlc.stages import report
from dlc.viz import image_grid, save_image


def _metrics(fd, kid, kid_std=0.001):
    space = {"fd": fd, "kid": kid, "kid_std": kid_std, "precision": 0.5, "recall": 0.4,
             "vendi": 3.0}
    return {"judge": space, "effnet": {**space, "fd": 10 * fd}}


FAKE = {
    "toy/kld.json": {"results": {"K4": {v: {"kde_kl_excess": 0.01, "knn_kl": 0.2,
                                            "knn_kl_floor": 0.0, "off_mode_fraction": 0.1}
                                        for v in ("unconditional", "oracle", "gmm")}}},
    "probe.json": {"top1": {"shape": {"codes": 0.9, "features": 0.8}}},
    "judge/judge.json": {"accuracy": {"shape": 0.99}},
    "vae/vae.json": {"reconstruction": {"mean": {"psnr_mean": 29.0}}, "n": 100},
    "sedd/samples.json": {"tv_per_position": 0.09, "tv_per_position_floor": 0.05,
                          "nearest_train_hamming": 60.0, "nearest_train_hamming_floor": 10.0},
    "dit/decoded/samples.json": {"n": 100, "git_rev": "abc1234", "attributes": {
        "match": {"shape": 0.8, "all": 0.5}, "chance": {"shape": 0.13, "all": 0.01},
        "judge_on_vae": {"shape": 0.95, "all": 0.9},
        "judge_on_sources": {"shape": 0.99, "all": 0.97}}},
    "fid_dlc.json": {"n": 100, "metrics": _metrics(4.0, 0.010)},
    "fid_encode_decode.json": {"n": 100, "metrics": _metrics(3.8, 0.009)},
    "fid_unconditional.json": {"n": 100, "metrics": _metrics(20.0, 0.050)},
    "fid_real.json": {"n": 100, "metrics": _metrics(1.0, 0.001)},
    "fid_vae.json": {"n": 100, "metrics": _metrics(2.0, 0.004)},
    "fid_eta_sweep.json": {"n": 50, "curve": [
        {"remask_eta": eta, "seeds": 3, "metrics": {s: {"fd_mean": fd, "fd_std": 0.1,
                                                        "kid_mean": 0.01, "kid_std": 0.001}
                                                    for s in ("judge", "effnet")}}
        for eta, fd in ((0.0, 5.0), (0.05, 4.0))]},
    "composition.json": {"pairs": 4, "samples_per_pair": 8, "source_split": "test",
                         "attribute_positions": {"attribute": "colour", "source": "B",
                                                 "positions": [3, 5]},
                         "methods": {"dlc_token": {"novel": 0.2, "novel_ci": [0.1, 0.35],
                                                   "mixing": 0.4, "mixing_ci": [0.3, 0.5],
                                                   "vendi": 3.0}}},
    "text2code.json": {"samples_per_prompt": 8, "held_out": {"shape": 0.6, "all": 0.4},
                       "seen": {"shape": 0.9, "all": 0.8},
                       "paraphrase": {"shape": 0.7, "colour": 0.3, "all": 0.2},
                       "read_from_codes": {"held_out": {"shape": 0.65, "all": 0.45}},
                       "prompt_blind": {"seen": {"shape": 0.125}},
                       "per_paraphrase": [{"prompt": "a crimson disc", "unseen_words":
                                           ["crimson", "disc"], "colour": 0.25, "all": 0.125}],
                       "novelty": {"pool": "train (100 images)",
                                   "floor (test)": {"judge_distance": 1.5, "code_hamming": 9.0,
                                                    "exact_code_copies": 0.0},
                                   "held_out": {"judge_distance": 2.5, "code_hamming": 30.0,
                                                "exact_code_copies": 0.0}}},
}


@pytest.fixture
def run(tmp_path):
    results = tmp_path / "results" / "tiny"
    for relative, content in FAKE.items():
        path = report._path(results, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    for relative in report.FIGURES.values():
        path = report._path(results, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(image_grid(np.zeros((1, 8, 8, 3), np.uint8), columns=1), path)
    logs = tmp_path / "results" / "logs"
    (logs / "tiny").mkdir(parents=True)
    (logs / "toy").mkdir(parents=True)
    (logs / "tiny" / "train_dit.log").write_text(
        "2026-12-06 10:00:00,000 INFO dlc: dlc train-dit done in 50.0 s\n"   # an earlier run
        "2026-12-06 11:00:00,000 INFO dlc.stages.train_dit: trained\n"
        "2026-12-06 11:10:00,000 INFO dlc: dlc train-dit done in 600.0 s\n")
    (logs / "tiny" / "probe.log").write_text(      # beside train-dit: counted once
        "2026-12-06 11:05:00,000 INFO dlc: dlc probe done in 120.0 s\n")
    (logs / "toy" / "train-K4-oracle.log").write_text(
        "2026-12-06 10:59:00,000 INFO dlc: dlc toy-train done in 60.0 s\n")
    params = tmp_path / "params.yaml"
    params.write_text("preset: tiny\n")
    return results, logs, params


def test_every_section_and_the_claims_come_from_the_files(run):
    results, logs, params = run
    headline = report.write("tiny", results, logs, params, results / "report.md")
    text = (results / "report.md").read_text()
    for section in ("## The claims", "## Section 3", "## What the codes hold", "## VAE",
                    "## SEDD", "## Does the image follow its code?", "## Generation",
                    "## Remasking strength eta", "## Composition", "## Text -> code",
                    "## Time"):
        assert section in text, section
    assert "abc1234" in text and "4.00 / 20.00 = **0.20**" in text and "holds" in text
    assert "0.200 [0.100, 0.350]" in text and "the 2 positions where colour" in text
    assert "| paraphrase | 0.700 | 0.300 | 0.200 |" in text
    assert "(unseen: crimson, disc): colour 0.25" in text
    assert "before the DiT draws them" in text and "| held_out | 0.650 | - | 0.450 |" in text
    assert "| floor (test) | 1.500 | 9.000 | 0.000 |" in text
    assert "Prompt-blind level" in text and "| seen | 0.125 | - |" in text
    assert headline["judge_fd_ratio_dlc_unconditional"] == pytest.approx(0.2)
    assert headline["judge_fd_dlc_over_encode_decode"] == pytest.approx(4.0 / 3.8 - 1)
    assert headline["effnet_kid_gap_in_std"] == pytest.approx(0.04 / np.hypot(0.001, 0.001))
    assert headline["decoded_shape"] == 0.8 and headline["vae_ceiling_shape"] == 0.95
    # The last "done in" line of each log; some job ran 10:58-10:59 and 11:00-11:10.
    assert headline["jobs_seconds"] == pytest.approx(780.0)
    assert headline["busy_minutes"] == pytest.approx(11.0)
    for name in report.FIGURES:
        assert (results / "report" / name).is_file()
        assert f"report/{name}" in text
    curve = (results / "eta_curve.csv").read_text().splitlines()
    assert curve[0].startswith("remask_eta,judge_fd") and len(curve) == 3
    assert json.loads((results / "report.json").read_text()) == headline


def test_a_missing_input_is_named(run):
    results, logs, params = run
    (results / "fid_unconditional.json").unlink()
    with pytest.raises(FileNotFoundError, match="fid_unconditional.json"):
        report.write("tiny", results, logs, params, results / "report.md")
    assert not (results / "report.md").exists()

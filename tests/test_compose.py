"""Composition: hybrids take every token from a source, follow the weights, the averaged SEM
distribution at temperature tau, and the stage end to end on micro data."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from dlc.data import codes as codes_io
from dlc.generation.compose import mix_tokens, sample_average, source_weights
from dlc.metrics.positions import carrying, position_map
from dlc.stages import compose, composition_study, train_dit

from .test_dit_stages import setup  # noqa: F401  (the fixture: images, VAE, latents, codes)


def test_every_token_of_a_hybrid_comes_from_a_source_at_its_position():
    rng = np.random.default_rng(0)
    sources = rng.integers(0, 50, (3, 40))
    hybrids = mix_tokens(sources, 500, np.full(3, 1 / 3), rng)
    assert hybrids.shape == (500, 40)
    assert ((hybrids[:, None, :] == sources[None]).any(axis=1)).all()
    only_first = mix_tokens(sources, 10, np.array([1.0, 0.0, 0.0]), rng)
    assert (only_first == sources[0]).all()


def test_hybrids_follow_the_source_weights():
    rng = np.random.default_rng(1)
    sources = np.array([[0] * 200, [1] * 200])
    hybrids = mix_tokens(sources, 100, np.array([0.8, 0.2]), rng)
    assert (hybrids == 0).mean() == pytest.approx(0.8, abs=0.01)


def test_weights_are_checked_and_normalised():
    assert source_weights(None, 4).tolist() == [0.25] * 4
    assert source_weights([2, 6], 2).tolist() == [0.25, 0.75]
    with pytest.raises(ValueError, match="one per source"):
        source_weights([1, 1, 1], 2)


def peaked(tokens, vocab, confidence=0.97):
    """SEM-like distributions (L, V) with `confidence` on the given tokens."""
    p = np.full((len(tokens), vocab), (1 - confidence) / (vocab - 1))
    p[np.arange(len(tokens)), tokens] = confidence
    return p


def test_average_at_tau_zero_draws_only_source_tokens():
    rng = np.random.default_rng(2)
    vocab = 16
    sources = rng.integers(0, vocab, (2, 30))
    probabilities = np.stack([peaked(s, vocab) for s in sources])
    for tau in (0.0, 1e-3):
        codes = sample_average(probabilities, 200, np.array([0.5, 0.5]), tau, rng)
        assert ((codes[:, None, :] == sources[None]).any(axis=1)).all(), tau


def test_average_at_tau_one_samples_the_weighted_average():
    rng = np.random.default_rng(3)
    probabilities = np.array([[[0.7, 0.2, 0.1]], [[0.1, 0.1, 0.8]]])   # S=2, L=1, V=3
    weights = np.array([0.25, 0.75])
    codes = sample_average(probabilities, 40_000, weights, 1.0, rng)
    expected = weights @ probabilities[:, 0]
    counts = np.bincount(codes[:, 0], minlength=3) / len(codes)
    np.testing.assert_allclose(counts, expected, atol=0.01)
    sharp = sample_average(probabilities, 40_000, weights, 0.5, rng)
    squared = expected ** 2 / (expected ** 2).sum()
    np.testing.assert_allclose(np.bincount(sharp[:, 0], minlength=3) / 40_000, squared,
                               atol=0.01)


def test_compose_stage_writes_codes_images_grid_and_vendi(setup, tmp_path):  # noqa: F811
    preset, folder = setup
    run = train_dit.train(preset.dit, preset.vae, folder / "latents", folder / "codes",
                          folder / "vae", preset.sem.length, preset.sem.vocab, folder / "dit")
    test_codes = codes_io.read_codes(folder / "codes" / "test")
    sources = test_codes.image_ids[:2].tolist()
    preset = dataclasses.replace(preset, compose=dataclasses.replace(preset.compose,
                                                                     samples=6))
    result = compose.compose_sources(preset, sources, folder / "codes" / "test", run,
                                     folder / "vae", tmp_path / "composed",
                                     folder / "images.parquet", judge_dir=folder / "judge")
    assert result["n"] == 6 and result["shared_with_a_source"] == 1.0
    assert result["vendi_judge"] >= 1
    composed = codes_io.read_codes(tmp_path / "composed" / "codes")
    assert (composed.frame["source"] == "composed").all() and len(composed) == 6
    assert np.load(tmp_path / "composed" / "samples.npz")["arr_0"].shape == (6, 32, 32, 3)
    assert (tmp_path / "composed" / "grid.png").stat().st_size > 200
    assert json.loads((tmp_path / "composed" / "compose.json").read_text())["sources"] == sources
    attribute = dataclasses.replace(preset, compose=dataclasses.replace(
        preset.compose, method="attribute", attribute="colour", attribute_source=1, samples=2))
    result = compose.compose_sources(attribute, sources, folder / "codes" / "test", run,
                                     folder / "vae", tmp_path / "transplant")
    information = position_map(test_codes.codes, test_codes.frame, preset.judge.attributes)
    assert result["attribute_positions"] == np.flatnonzero(
        carrying(information, "colour")).tolist()
    a, b = (test_codes.lookup(i) for i in sources)
    expected = np.where(carrying(information, "colour"), b, a)
    assert (codes_io.read_codes(tmp_path / "transplant" / "codes").codes == expected).all()
    with pytest.raises(ValueError, match="two or more"):
        compose.compose_sources(preset, sources[:1], folder / "codes" / "test", run, folder / "vae",
                                tmp_path / "one")
    with pytest.raises(ValueError, match="no codes for"):
        compose.compose_sources(preset, [sources[0], "nope"], folder / "codes" / "test", run,
                                folder / "vae", tmp_path / "missing")


def test_composition_scores_of_a_hand_made_table():
    classes = {"shape": ["circle", "square", "star", "triangle"],
               "colour": ["blue", "red"]}
    a = pd.DataFrame({"shape": ["circle"] * 4, "colour": ["blue"] * 4})
    b = pd.DataFrame({"shape": ["square"] * 4, "colour": ["red"] * 4})
    target = pd.DataFrame({"shape": ["circle"] * 4, "colour": ["red"] * 4})
    predicted = pd.DataFrame({"shape": ["circle", "circle", "square", "star"],
                              "colour": ["red", "blue", "blue", "red"]})
    scores = composition_study.composition_scores(predicted, a, b, classes, target)
    assert scores["inheritance"] == {"shape": 0.75, "colour": 1.0}
    assert scores["chance"] == {"shape": 0.5, "colour": 1.0}
    # row 0 mixes (shape from A, colour from B) and is the held-out target; row 2 mixes too
    assert scores["mixing"] == 0.5 and scores["novel"] == 0.25


def test_pairs_surround_each_held_out_combination():
    frame = pd.DataFrame({"shape": ["circle", "circle", "star", "star", "square"],
                          "colour": ["red", "blue", "blue", "red", "red"]})
    pairs = composition_study.draw_pairs(frame, [["circle", "blue"]], 5,
                                         np.random.default_rng(0))
    assert len(pairs) == 5
    assert (frame.loc[pairs["a"], "shape"] == "circle").all()
    assert (frame.loc[pairs["a"], "colour"] != "blue").all()
    assert (frame.loc[pairs["b"], "colour"] == "blue").all()
    assert (frame.loc[pairs["b"], "shape"] != "circle").all()
    with pytest.raises(ValueError, match="no source pair"):
        composition_study.draw_pairs(frame, [["triangle", "red"]], 1, np.random.default_rng(0))


def test_the_study_on_micro_data(setup, tmp_path):  # noqa: F811
    """With the continuous baseline: a DiT trained on the codes table's features column."""
    preset, folder = setup
    args = (preset.dit, preset.vae, folder / "latents", folder / "codes", folder / "vae",
            preset.sem.length, preset.sem.vocab)
    run = train_dit.train(*args, folder / "dit")
    baseline = train_dit.train(*args, folder / "dit_features", "features")
    result = composition_study.study(preset, folder / "codes", run, folder / "vae",
                                     folder / "images.parquet", folder / "judge",
                                     tmp_path / "composition.json", tmp_path / "grid.png",
                                     tmp_path / "position_map.png", baseline)
    cfg = preset.compose
    assert result["pairs"] == cfg.pairs_per_combination * len(preset.data.shapes.holdout)
    assert set(result["methods"]) == {"dlc_token", "dlc_attribute", "reconstruction", "random",
                                      "held_out_codes", "continuous_average",
                                      "continuous_reconstruction"}
    assert set(result["position_map"]) == set(preset.judge.attributes)
    assert (tmp_path / "position_map.png").stat().st_size > 200
    made = codes_io.read_codes(tmp_path / "composition_continuous" / "codes", features=True)
    table = codes_io.read_codes(folder / "codes" / cfg.source_split, features=True)
    k, pairs = cfg.samples_per_pair, result["pairs"]
    assert made.features.shape == (2 * pairs * k, table.features.shape[1])
    drawn = composition_study.draw_pairs(table.frame, preset.data.shapes.holdout,
                                         cfg.pairs_per_combination,
                                         np.random.default_rng(cfg.seed))
    a, b = table.features[[drawn["a"][0], drawn["b"][0]]].astype(np.float32)
    assert (made.features[:k] == made.features[0]).all()          # one mean, k seeds
    np.testing.assert_allclose(made.features[0], (a + b) / 2, atol=2e-3)
    average = pairs * k   # then the sources' own features, alternately
    assert np.array_equal(made.features[average:average + 2], np.stack([a, b]))
    # dlc_attribute: B's tokens at the positions carrying the colour, A's elsewhere
    transplanted = result["attribute_positions"]
    assert transplanted["attribute"] == cfg.attribute and transplanted["source"] == "B"
    positions = np.zeros(preset.sem.length, bool)
    positions[transplanted["positions"]] = True
    composed = codes_io.read_codes(tmp_path / "composition" / "codes").codes
    first = pairs * k                         # after the dlc_token rows
    a, b = table.codes[[drawn["a"][0], drawn["b"][0]]]
    assert (composed[first:first + k] == np.where(positions, b, a)).all()
    # held_out_codes: codes of images that have the pair's held-out combination itself
    ceiling = codes_io.read_codes(folder / "codes" / cfg.ceiling_split)
    first = 4 * pairs * k       # after dlc_token, dlc_attribute, reconstruction and random
    target = ((ceiling.frame["shape"] == drawn["shape"][0])
              & (ceiling.frame["colour"] == drawn["colour"][0])).to_numpy()
    own = {row.tobytes() for row in ceiling.codes[target]}
    assert all(row.tobytes() in own for row in composed[first:first + k])
    for method, scores in result["methods"].items():
        assert 0 <= scores["novel"] <= 1
        low, high = scores["novel_ci"]
        assert low <= scores["novel"] <= high
        assert sum(c["n"] for c in scores["per_combination"].values()) == pairs * k
        assert scores["vendi"] >= 1
        if method == "held_out_codes":           # neither A nor B: nothing to inherit
            assert "mixing" not in scores and "inheritance" not in scores
        else:
            assert 0 <= scores["mixing"] <= 1
            assert set(scores["inheritance"]) == set(preset.judge.attributes)
    assert (tmp_path / "grid.png").stat().st_size > 200

"""Where attributes live in the code: per-position mutual information against closed forms on
hand-made codes tables, and the attribute transplant of composition."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from dlc.generation.compose import hybrids, transplant
from dlc.metrics.positions import carrying, entropy, mutual_information, position_map


def hand_made_table():
    """8 rows: position 0 copies the shape (2 values), position 1 the colour (4 values),
    position 2 is constant, position 3 is independent of both (balanced), position 4 is the
    colour's parity (half of its information)."""
    shape = np.array(["circle", "star"] * 4)
    colour = np.repeat(["red", "green", "blue", "white"], 2)
    colour_id = np.repeat(np.arange(4), 2)
    codes = np.stack([np.tile([0, 1], 4), colour_id, np.zeros(8, int),
                      np.array([0, 1, 1, 0, 0, 1, 1, 0]),
                      colour_id % 2], axis=1)
    return codes, pd.DataFrame({"shape": shape, "colour": colour})


def test_mutual_information_against_closed_forms():
    codes, frame = hand_made_table()
    shape = mutual_information(codes, frame["shape"].to_numpy())
    colour = mutual_information(codes, frame["colour"].to_numpy())
    log2 = np.log(2)
    # I(c; a) = H(a) when the token determines a, 0 when independent, H(f(a)) for a function.
    np.testing.assert_allclose(shape, [log2, 0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(colour, [0, 2 * log2, 0, 0, log2], atol=1e-12)
    assert entropy(frame["colour"].to_numpy()) == pytest.approx(2 * log2)


def test_the_map_is_normalised_and_names_the_carrying_positions():
    codes, frame = hand_made_table()
    information = position_map(codes, frame, ["shape", "colour"])
    np.testing.assert_allclose(information["shape"], [1, 0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(information["colour"], [0, 1, 0, 0, 0.5], atol=1e-12)
    assert carrying(information, "colour").tolist() == [False, True, False, False, True]
    assert carrying(information, "shape").tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match="no column 'size'"):
        position_map(codes, frame, ["shape", "size"])


def test_the_transplant_takes_the_named_positions_from_the_named_source_only():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 50, (2, 32))
    positions = rng.random(32) < 0.3
    for source in (0, 1):
        made = transplant(codes, positions, source, 5)
        assert made.shape == (5, 32)
        assert (made[:, positions] == codes[source, positions]).all()
        assert (made[:, ~positions] == codes[1 - source, ~positions]).all()
    with pytest.raises(ValueError, match="two sources"):
        transplant(np.zeros((3, 32), int), positions, 0, 1)


def test_compose_with_the_attribute_method_needs_its_positions(micro_config):
    cfg = dataclasses.replace(micro_config.active.compose, method="attribute",
                              attribute="colour", attribute_source=1, samples=3)
    codes = np.arange(16).reshape(2, 8)
    positions = np.zeros(8, bool)
    positions[[2, 5]] = True
    made = hybrids(cfg, codes, positions=positions)
    assert made.tolist() == [[0, 1, 10, 3, 4, 13, 6, 7]] * 3
    with pytest.raises(ValueError, match="positions carrying 'colour'"):
        hybrids(cfg, codes)

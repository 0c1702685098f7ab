"""Stage `composition-study`: how often composed codes make images that carry attributes of
both sources, measured by the attribute judge (the paper's composition protocol, on the
built-in data's held-out combinations).

For every (shape, colour) combination held out of training, source pairs are drawn from
compose.source_split: A has the held-out shape in another colour, B the held-out colour on
another shape. Each pair gives compose.samples_per_pair images per method:
    dlc_token       token-wise mixing of A's and B's codes (compose.mix_tokens)
    dlc_attribute   with compose.attribute: the positions carrying that attribute from
                    source compose.attribute_source (1: B), the rest from the other
                    (compose.transplant); which positions carry which attribute comes from
                    the per-position mutual information between tokens and the table's
                    attribute columns (judge.attributes), drawn as the position map
    reconstruction  A's and B's own codes, decoded (upper bound of inheritance)
    random          uniformly random codes (lower bound)
    held_out_codes  with compose.ceiling_split: codes of images that have the held-out
                    combination itself, decoded (the upper bound of `novel`: how often the
                    DiT draws that combination from a code that holds it)
and, with a DiT trained on the SEM encoder's continuous features (`features_dit`, the
paper's baseline; compose.continuous_baseline), the same pairs through that model:
    continuous_average         the mean of A's and B's feature vectors, k noise seeds
    continuous_reconstruction  A's and B's own features (its upper bound)
and the judge's predictions give, per method:
    inheritance[attr]  P(predicted value is A's or B's), beside chance |{a, b}| / classes
    mixing             every attribute inherited, at least one only from A, one only from B
                       (inheritance and mixing are left out of held_out_codes: no A or B)
    novel              the held-out (shape, colour) itself: a combination never trained on
    vendi              Vendi score of each pair's samples (judge features), averaged
with 95% Wilson intervals for mixing and novel, overall and per held-out combination.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlc import io as dio
from dlc.config import Config, PresetConfig, to_dict
from dlc.data import codes as codes_io
from dlc.data.sources import ImageTable
from dlc.generation.compose import mix_tokens, transplant
from dlc.generation.images import decode_codes
from dlc.metrics.features import build_feature_space
from dlc.metrics.positions import carrying, position_map
from dlc.metrics.vendi import vendi_from_features
from dlc.models.judge import load_judge, predict
from dlc.viz import image_grid, pyplot, save_figure, save_image

log = logging.getLogger(__name__)
METHODS = ("dlc_token", "reconstruction", "random")
CONTINUOUS_METHODS = ("continuous_average", "continuous_reconstruction")
GRID_PAIRS = 6


def run(cfg: Config, *, codes: str | Path, dit: str | Path, vae: str | Path,
        images: str | Path, judge: str | Path, out: str | Path, grid: str | Path,
        position_map: str | Path, features_dit: str | Path | None = None) -> dict:
    """`dlc composition-study`: composition.json at `out`, the pairs' grid at `grid`, the
    position map figure at `position_map`."""
    return study(cfg.active, codes, dit, vae, images, judge, out, grid, position_map,
                 features_dit)


def draw_pairs(frame: pd.DataFrame, holdout: list[list[str]], per_combination: int,
               rng: np.random.Generator) -> pd.DataFrame:
    """Rows (a, b, shape, colour): A has the held-out shape, B the held-out colour, neither
    both."""
    pairs = []
    for shape, colour in holdout:
        a_rows = np.flatnonzero((frame["shape"] == shape) & (frame["colour"] != colour))
        b_rows = np.flatnonzero((frame["colour"] == colour) & (frame["shape"] != shape))
        if not len(a_rows) or not len(b_rows):
            raise ValueError(f"no source pair for the held-out ({shape}, {colour}) in this split")
        for a, b in zip(rng.choice(a_rows, per_combination), rng.choice(b_rows, per_combination)):
            pairs.append({"a": int(a), "b": int(b), "shape": shape, "colour": colour})
    return pd.DataFrame(pairs)


def composition_scores(predicted: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame,
                       classes: dict[str, list[str]], target: pd.DataFrame) -> dict:
    """The protocol's numbers for one method; all frames row-aligned (one row per image)."""
    inheritance, chance, only_a, only_b, inherited_all = {}, {}, [], [], []
    for name, values in classes.items():
        pred, va, vb = (frame[name].astype(str).to_numpy() for frame in (predicted, a, b))
        inherited = (pred == va) | (pred == vb)
        inheritance[name] = float(inherited.mean())
        chance[name] = float(np.where(va == vb, 1, 2).mean() / len(values))
        inherited_all.append(inherited)
        only_a.append((pred == va) & (pred != vb))
        only_b.append((pred == vb) & (pred != va))
    mixing = (np.logical_and.reduce(inherited_all) & np.logical_or.reduce(only_a)
              & np.logical_or.reduce(only_b))
    novel = ((predicted["shape"].to_numpy() == target["shape"].to_numpy())
             & (predicted["colour"].to_numpy() == target["colour"].to_numpy()))
    per_combination = {}
    for (shape, colour), rows in target.groupby(["shape", "colour"]).groups.items():
        per_combination[f"{shape}/{colour}"] = {
            "n": len(rows), "mixing": float(mixing[rows].mean()),
            "mixing_ci": wilson(mixing[rows]), "novel": float(novel[rows].mean()),
            "novel_ci": wilson(novel[rows])}
    return {"inheritance": inheritance, "chance": chance, "mixing": float(mixing.mean()),
            "mixing_ci": wilson(mixing), "novel": float(novel.mean()),
            "novel_ci": wilson(novel), "per_combination": per_combination}


def _novel_only(scores: dict) -> dict:
    """held_out_codes decode neither A nor B, so inheritance and mixing have no meaning for
    them: only `novel` (and its intervals) stays."""
    keep = ("n", "novel", "novel_ci")
    return {"novel": scores["novel"], "novel_ci": scores["novel_ci"],
            "per_combination": {combination: {key: row[key] for key in keep}
                                for combination, row in scores["per_combination"].items()}}


def _rows_of(frame: pd.DataFrame, pair) -> np.ndarray:
    """Rows of a codes table whose (shape, colour) is the pair's held-out combination."""
    rows = np.flatnonzero((frame["shape"] == pair.shape) & (frame["colour"] == pair.colour))
    if not len(rows):
        raise ValueError(f"compose.ceiling_split has no image of ({pair.shape}, {pair.colour})")
    return rows


def wilson(hits: np.ndarray) -> list[float]:
    """95% Wilson score interval of the rate of `hits` (bool)."""
    from scipy.stats import binomtest

    interval = binomtest(int(hits.sum()), len(hits)).proportion_ci(0.95, method="wilson")
    return [float(interval.low), float(interval.high)]


def study(preset: PresetConfig, codes_dir, dit_dir, vae_dir, images_table, judge_dir, out,
          grid, map_figure, features_dit_dir=None) -> dict:
    cfg, holdout = preset.compose, preset.data.shapes.holdout if preset.data.shapes else None
    if not holdout:   # ImageNet: a report that says so, so that every workflow can run it
        result = {"skipped": "the preset's data has no held-out attribute combinations"}
        dio.write_json(out, result)
        for path in (grid, map_figure):
            save_image(image_grid(np.full((1, 8, 8, 3), 255, np.uint8), columns=1), path)
        return result
    length, vocab = preset.sem.length, preset.sem.vocab
    table = codes_io.read_codes(Path(codes_dir) / cfg.source_split, length, vocab,
                                features=features_dit_dir is not None)
    information = position_map(table.codes, table.frame, preset.judge.attributes)
    _draw_position_map(information, map_figure)
    methods = METHODS
    if cfg.attribute is not None:
        positions = carrying(information, cfg.attribute)
        methods = ("dlc_token", "dlc_attribute", *METHODS[1:])
    if cfg.ceiling_split is not None:
        ceiling = codes_io.read_codes(Path(codes_dir) / cfg.ceiling_split, length, vocab)
        methods = (*methods, "held_out_codes")
    rng = np.random.default_rng(cfg.seed)
    pairs = draw_pairs(table.frame, holdout, cfg.pairs_per_combination, rng)
    k = cfg.samples_per_pair
    codes, rows = [], []
    for method in methods:
        for pair in pairs.itertuples():
            sources = table.codes[[pair.a, pair.b]].astype(np.int64)
            if method == "dlc_token":
                made = mix_tokens(sources, k, np.array([0.5, 0.5]), rng)
            elif method == "dlc_attribute":
                made = transplant(sources, positions, cfg.attribute_source, k)
            elif method == "reconstruction":
                made = sources[np.arange(k) % 2]
            elif method == "held_out_codes":
                made = ceiling.codes[rng.choice(_rows_of(ceiling.frame, pair), k)]
            else:
                made = rng.integers(0, vocab, (k, length))
            codes.append(made)
            rows += [{"method": method, "pair": pair.Index, "a": pair.a, "b": pair.b}] * k
    rows = pd.DataFrame(rows)
    metadata = {"L": length, "V": vocab, "dataset": table.metadata.get("dataset"),
                "split": "composed", "producer": {"stage": "dlc composition-study",
                                                  **to_dict(cfg)}}
    images = decode_codes(preset.dit, preset.vae, dit_dir, vae_dir, np.concatenate(codes),
                          [f"study-{i:06d}" for i in range(len(rows))], metadata,
                          Path(out).parent / "composition", "composed")
    if features_dit_dir is not None:
        continuous_rows, continuous_images = _continuous(preset, pairs, table, features_dit_dir,
                                                         vae_dir, metadata, out)
        rows = pd.concat([rows, continuous_rows], ignore_index=True)
        images = np.concatenate([images, continuous_images])
        methods = methods + CONTINUOUS_METHODS

    judge, report = load_judge(judge_dir)
    predicted = predict(judge, images, report["classes"])
    features = build_feature_space("judge", torch.device("cpu"),
                                   judge_dir=judge_dir).extract(images)["pool"]
    a = table.frame.iloc[rows["a"]].reset_index(drop=True)
    b = table.frame.iloc[rows["b"]].reset_index(drop=True)
    target = pairs.iloc[rows["pair"]].reset_index(drop=True)
    result = {"pairs": len(pairs), "samples_per_pair": k, "holdout": holdout,
              "source_split": cfg.source_split, "methods": {},
              "position_map": information.to_dict(orient="list"),
              "attribute_positions": None if cfg.attribute is None else
              {"attribute": cfg.attribute, "source": "AB"[cfg.attribute_source],
               "positions": np.flatnonzero(positions).tolist()}}
    for method in methods:
        mask = (rows["method"] == method).to_numpy()
        scores = composition_scores(predicted[mask].reset_index(drop=True),
                                    a[mask].reset_index(drop=True),
                                    b[mask].reset_index(drop=True), report["classes"],
                                    target[mask].reset_index(drop=True))
        if method == "held_out_codes":
            scores = _novel_only(scores)
        scores["vendi"] = float(np.mean([vendi_from_features(features[mask & (
            rows["pair"] == p).to_numpy()]) for p in range(len(pairs))]))
        result["methods"][method] = scores
        log.info("%s: novel %.3f, mixing %s, vendi %.2f", method, scores["novel"],
                 scores.get("mixing", "-"), scores["vendi"])
    result["features_dit"] = None if features_dit_dir is None else str(features_dit_dir)
    result.update(dio.run_metadata({"compose": to_dict(cfg), "dit": to_dict(preset.dit)}))
    dio.write_json(out, result)
    _grid(images, rows, table, images_table, cfg.source_split, grid)
    return result


def _draw_position_map(information: pd.DataFrame, path) -> None:
    """Heat map: one row per attribute, one column per code position, I(c_l; a) / H(a)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(min(12, 2 + len(information) / 12),
                                         0.6 + 0.35 * information.shape[1]))
    shown = axis.imshow(information.to_numpy().T, aspect="auto", cmap="viridis",
                        interpolation="nearest", vmin=0)
    axis.set(yticks=range(information.shape[1]), yticklabels=list(information.columns),
             xlabel="code position", title="where each attribute lives: I(token; attribute) "
             "/ H(attribute)")
    figure.colorbar(shown, ax=axis, fraction=0.03)
    save_figure(figure, path)


def _continuous(preset: PresetConfig, pairs: pd.DataFrame, table, features_dit_dir, vae_dir,
                metadata: dict, out) -> tuple[pd.DataFrame, np.ndarray]:
    """The baseline's rows and images: averaged (or the sources' own) continuous features,
    decoded by the features-conditioned DiT. The codes column of these rows is unused."""
    k = preset.compose.samples_per_pair
    features, rows = [], []
    for method in CONTINUOUS_METHODS:
        for pair in pairs.itertuples():
            sources = table.features[[pair.a, pair.b]].astype(np.float32)
            if method == "continuous_average":
                made = np.repeat(sources.mean(0, keepdims=True), k, axis=0)
            else:
                made = sources[np.arange(k) % 2]
            features.append(made)
            rows += [{"method": method, "pair": pair.Index, "a": pair.a, "b": pair.b}] * k
    images = decode_codes(preset.dit, preset.vae, features_dit_dir, vae_dir,
                          np.zeros((len(rows), metadata["L"]), np.int64),
                          [f"continuous-{i:06d}" for i in range(len(rows))],
                          {**metadata, "condition": "features"},
                          Path(out).parent / "composition_continuous", "composed",
                          features=np.concatenate(features))
    return pd.DataFrame(rows), images


def _grid(images, rows: pd.DataFrame, table, images_table, split: str, path) -> None:
    """One row per pair: A, B, then its dlc_token samples; below it, when the baseline ran,
    two blank cells and the pair's continuous_average samples."""
    originals = ImageTable(images_table, split)
    where = {key: i for i, key in enumerate(originals.frame["image_id"])}
    size = images.shape[1]
    blank = np.full((2, size, size, 3), 255, np.uint8)
    lines = []
    for pair in range(min(GRID_PAIRS, rows["pair"].max() + 1)):
        mine = rows.index[(rows["method"] == "dlc_token") & (rows["pair"] == pair)]
        first = rows.loc[mine[0]]
        sources = [originals.centred(where[table.image_ids[first[s]]], size) for s in "ab"]
        lines.append(np.concatenate([np.stack(sources), images[mine]]))
        averaged = rows.index[(rows["method"] == "continuous_average") & (rows["pair"] == pair)]
        if len(averaged):
            lines.append(np.concatenate([blank, images[averaged]]))
    save_image(image_grid(np.concatenate(lines), columns=len(lines[0]),
                          scale=max(1, 64 // size)), path)

"""Stage `text2code-study`: prompts for every held-out (shape, colour) of the built-in data and
as many seen combinations, each with random other attributes, plus the preset's paraphrases
(text_study: words no training caption has); the text model writes their codes, the DiT draws
them, and the judge scores the images' attributes against what each prompt asks.

Where the errors come from: the same scores read from the written codes by linear probes
trained on the training codes (probe.*), before the DiT draws them: what the text model got
wrong, against what the DiT then loses. Beside both, the prompt-blind level: the score of a
model that draws what this one draws, at the same rates, whatever the prompt.

Novelty, as the paper's Appendix D: every image's nearest training image in the judge's
feature space and its code's nearest training code by Hamming distance, beside the same
distances for real images of judge.eval_split (the floor), and a grid of sample, nearest by
features, nearest by code.

One preset section names the text model studied (`--section`): `text`, or `text_pretrained`
for the second model trained on the same pairs (a pretrained language model)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlc import io as dio
from dlc.config import Config, PresetConfig, TextConfig, to_dict
from dlc.data import codes as codes_io
from dlc.data.shapes import caption
from dlc.data.sources import ImageTable
from dlc.generation.text import decode_prompts, write_codes
from dlc.metrics.features import build_feature_space
from dlc.metrics.novelty import nearest_features, nearest_hamming
from dlc.metrics.probe import fit_options, probe_codes, target_classes
from dlc.models.judge import load_judge, predict
from dlc.models.text_model import TextModel
from dlc.viz import image_grid, save_image

log = logging.getLogger(__name__)
GROUPS = ("held_out", "seen", "paraphrase")
NOVELTY_SAMPLES = 2  # samples per prompt in the novelty grid


def run(cfg: Config, *, model: str | Path, codes: str | Path, dit: str | Path,
        vae: str | Path, judge: str | Path, images: str | Path, out: str | Path,
        grid: str | Path, novelty_grid: str | Path, section: str = "text") -> dict:
    """`dlc text2code-study`: the JSON at `out`, one grid row per prompt at `grid`, samples
    beside their nearest training images at `novelty_grid`."""
    preset = cfg.active
    return study(preset, preset.text_params(section), model, codes, dit, vae, judge, images,
                 out, grid, novelty_grid)


def study_prompts(holdout: list[list[str]], frame: pd.DataFrame,
                  rng: np.random.Generator) -> pd.DataFrame:
    """One prompt per held-out (shape, colour) and one per seen combination drawn from the
    training rows, each with random size, texture and background."""
    held = {tuple(pair) for pair in holdout}
    seen = frame[["shape", "colour"]].drop_duplicates()
    seen = seen[[(s, c) not in held for s, c in zip(seen["shape"], seen["colour"])]]
    seen = seen.sample(n=min(len(held), len(seen)), random_state=int(rng.integers(1 << 31)))
    rows = [{"shape": s, "colour": c, "group": "held_out"} for s, c in holdout]
    rows += [{"shape": s, "colour": c, "group": "seen"} for s, c in seen.itertuples(False)]
    for row in rows:
        for name in ("size", "texture", "background"):
            row[name] = str(rng.choice(sorted(frame[name].astype(str).unique())))
        row["prompt"] = caption(row["size"], row["colour"], row["shape"], row["texture"],
                                row["background"])
    return pd.DataFrame(rows)


def paraphrase_prompts(preset: PresetConfig, captions: pd.Series) -> pd.DataFrame:
    """The preset's paraphrases, with the words of each that no training caption has."""
    vocabulary = {word for text in captions.astype(str) for word in text.lower().split()}
    held = {tuple(pair) for pair in preset.data.shapes.holdout}
    return pd.DataFrame([{
        **p.asks, "group": "paraphrase", "prompt": p.prompt,
        "unseen_words": [w for w in p.prompt.lower().split() if w not in vocabulary],
        "held_out_pair": (p.asks.get("shape"), p.asks.get("colour")) in held}
        for p in preset.text_study.paraphrases])


def scores(predicted: pd.DataFrame, wanted: pd.DataFrame, attributes: list[str]) -> dict:
    """Per attribute the share of images judged as their prompt asks, over the prompts that
    ask it (NaN in `wanted`: not asked); `shape_and_colour`: both at once; `all`: every
    attribute its prompt asks."""
    hits = {a: predicted[a].to_numpy() == wanted[a].astype(str).to_numpy() for a in attributes}
    asked = {a: wanted[a].notna().to_numpy() for a in attributes}
    result = {a: float(hits[a][asked[a]].mean()) for a in attributes if asked[a].any()}
    both = asked["shape"] & asked["colour"]
    if both.any():
        result["shape_and_colour"] = float((hits["shape"] & hits["colour"])[both].mean())
    result["all"] = float(np.logical_and.reduce([hits[a] | ~asked[a] for a in attributes]).mean())
    return result


def prompt_blind(predicted: pd.DataFrame, wanted: pd.DataFrame, attributes: list[str]) -> dict:
    """Per group, what a model that ignores its prompt would score if it drew each value as
    often as this one did over the whole study: per attribute the mean, over the prompts that
    ask it, of the study's rate of the asked value (for `shape_and_colour`, of the pair).
    This is the chance level the model itself sets: against uniform chance, a model that
    always draws red would look as if it followed every prompt that asks red."""
    rates = {name: predicted[name].value_counts(normalize=True) for name in attributes}
    pair_rate = predicted.value_counts(["shape", "colour"], normalize=True)
    result = {}
    for group in GROUPS:
        mine = wanted[(wanted["group"] == group).to_numpy()]
        if mine.empty:
            continue
        row = {}
        for name in attributes:
            asked = mine[name].dropna().astype(str)
            if len(asked):
                row[name] = float(rates[name].reindex(asked).fillna(0).mean())
        pairs = mine[["shape", "colour"]].dropna().astype(str)
        if len(pairs):
            row["shape_and_colour"] = float(
                pair_rate.reindex(pd.MultiIndex.from_frame(pairs)).fillna(0).mean())
        result[group] = row
    return result


def by_group(predicted: pd.DataFrame, wanted: pd.DataFrame, attributes: list[str]) -> dict:
    """`scores` of each prompt group (held_out, seen, paraphrase) that has prompts."""
    result = {}
    for group in GROUPS:
        mask = (wanted["group"] == group).to_numpy()
        if mask.any():
            result[group] = scores(predicted[mask].reset_index(drop=True),
                                   wanted[mask].reset_index(drop=True), attributes)
    return result


def code_reading(preset: PresetConfig, train, codes: np.ndarray, wanted: pd.DataFrame,
                 attributes: list[str]) -> pd.DataFrame:
    """Each attribute of each written code as a linear probe on one-hot codes reads it,
    trained on the training codes (probe.* settings): one column of class names each."""
    read = {}
    for name in attributes:
        y_train, y_wanted, categories = target_classes(train.frame[name].astype(str),
                                                       wanted[name].astype(str), name)
        result = probe_codes(train.codes, y_train, codes, y_wanted, preset.sem.vocab,
                             len(categories), **fit_options(preset.probe))
        read[name] = categories[result.predicted]
    return pd.DataFrame(read)


def study(preset: PresetConfig, text_cfg: TextConfig, model_dir, codes_dir, dit_dir, vae_dir,
          judge_dir, images_table, out, grid, novelty_grid) -> dict:
    holdout = preset.data.shapes.holdout if preset.data.shapes else None
    if not holdout:
        result = {"skipped": "the preset's data has no held-out attribute combinations"}
        dio.write_json(out, result)
        for path in (grid, novelty_grid):
            save_image(image_grid(np.full((1, 8, 8, 3), 255, np.uint8), columns=1), path)
        return result
    train = codes_io.read_codes(Path(codes_dir) / text_cfg.train.split)
    prompts = study_prompts(holdout, train.frame,
                            np.random.default_rng(text_cfg.sample.seed))
    prompts = pd.concat([prompts, paraphrase_prompts(preset, train.frame["caption"])],
                        ignore_index=True)
    text_model = TextModel.load(text_cfg, model_dir, preset.sem.length)
    codes = write_codes(text_model, prompts["prompt"].tolist(), preset.sem.length,
                        text_cfg.sample)
    images = decode_prompts(preset, text_cfg.sample, codes, prompts["prompt"].tolist(), dit_dir,
                            vae_dir, Path(out).with_suffix(""))
    judge, report = load_judge(judge_dir)
    attributes = list(report["classes"])
    predicted = predict(judge, images, report["classes"])
    k = text_cfg.sample.samples
    wanted = prompts.loc[prompts.index.repeat(k)].reset_index(drop=True)
    result = {"prompts": prompts.replace({np.nan: None}).to_dict(orient="records"),
              "samples_per_prompt": k}
    result.update(by_group(predicted, wanted, attributes))
    result["prompt_blind"] = prompt_blind(predicted, wanted, attributes)
    result["read_from_codes"] = by_group(code_reading(preset, train, codes, wanted, attributes),
                                         wanted, attributes)
    result["per_paraphrase"] = [
        {"prompt": row.prompt, "unseen_words": row.unseen_words,
         **scores(predicted.iloc[i * k:(i + 1) * k].reset_index(drop=True),
                  wanted.iloc[i * k:(i + 1) * k].reset_index(drop=True), attributes)}
        for i, row in prompts.iterrows() if row.group == "paraphrase"]
    features = build_feature_space("judge", torch.device("cpu"), judge_dir=judge_dir)
    novelty, neighbours = _novelty(preset, text_cfg, features, images, codes, wanted["group"],
                                   train, codes_dir, images_table)
    result["novelty"] = novelty
    result.update(dio.run_metadata({"text": to_dict(text_cfg),
                                    "text_study": to_dict(preset.text_study)}))
    dio.write_json(out, result)
    scale = max(1, 64 // images.shape[1])
    save_image(image_grid(images, columns=k, scale=scale), grid)
    per_prompt = min(NOVELTY_SAMPLES, k)
    shown = (np.arange(len(prompts))[:, None] * k + np.arange(per_prompt)).ravel()
    triples = np.stack([images[shown], *(n[shown] for n in neighbours)], 1)  # (S, 3, H, W, 3)
    save_image(image_grid(triples.reshape(-1, *images.shape[1:]), columns=3 * per_prompt,
                          scale=scale), novelty_grid)
    log.info("text -> code (%s): %s", text_cfg.backend,
             {g: result[g] for g in GROUPS if g in result})
    return result


def _novelty(preset: PresetConfig, text_cfg: TextConfig, features, images, codes, groups,
             train, codes_dir, images_table) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Nearest training image (judge features) and code (Hamming) of every sample, summarised
    per prompt group beside the floor of real images of judge.eval_split; and the neighbours'
    images, row-aligned with `images`."""
    size = images.shape[1]
    pool_images, pool_codes = _images_with_codes(images_table, text_cfg.train.split, train, size)
    pool_features = features.extract(pool_images, desc="training images")["pool"]
    by_features = nearest_features(features.extract(images)["pool"], pool_features)
    by_code = nearest_hamming(codes, pool_codes)
    split = preset.judge.eval_split
    real_images, real_codes = _images_with_codes(
        images_table, split, codes_io.read_codes(Path(codes_dir) / split), size)
    floor = (nearest_features(features.extract(real_images)["pool"], pool_features)[1],
             nearest_hamming(real_codes, pool_codes)[1])
    summary = {"pool": f"{text_cfg.train.split} ({len(pool_images)} images)",
               f"floor ({split})": _distances(*floor)}
    for group in GROUPS:
        mask = (groups == group).to_numpy()
        if mask.any():
            summary[group] = _distances(by_features[1][mask], by_code[1][mask])
    return summary, (pool_images[by_features[0]], pool_images[by_code[0]])


def _distances(judge: np.ndarray, hamming: np.ndarray) -> dict:
    return {"judge_distance": float(judge.mean()), "code_hamming": float(hamming.mean()),
            "exact_code_copies": float((hamming == 0).mean())}


def _images_with_codes(images_table, split: str, table, size: int):
    """The readable images of a split, (N, size, size, 3), and their rows of the codes table."""
    images_of_split = ImageTable(images_table, split)
    images, rows = images_of_split.centred_stack(size)
    ids = images_of_split.frame["image_id"].iloc[rows]
    positions = pd.Index(table.frame["image_id"]).get_indexer(ids)
    if (positions < 0).any():
        raise ValueError(f"{split}: {int((positions < 0).sum())} images have no codes")
    return images, table.codes[positions]

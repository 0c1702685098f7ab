"""Stage `text2code-study`: prompts for every held-out (shape, colour) of the built-in data
and as many seen combinations, each with random other attributes; the text model writes their
codes, the DiT draws them, and the judge scores the images' attributes against the prompts'."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dlc import io as dio
from dlc.config import Config, PresetConfig, to_dict
from dlc.data import codes as codes_io
from dlc.data.shapes import caption
from dlc.generation.text import decode_prompts, write_codes
from dlc.models.judge import agreement, load_judge, predict
from dlc.models.text_model import TextModel
from dlc.viz import image_grid, save_image

log = logging.getLogger(__name__)


def run(cfg: Config, *, model: str | Path, codes: str | Path, dit: str | Path,
        vae: str | Path, judge: str | Path, out: str | Path, grid: str | Path) -> dict:
    """`dlc text2code-study`: text2code.json at `out`, one grid row per prompt at `grid`."""
    return study(cfg.active, model, codes, dit, vae, judge, out, grid)


def study_prompts(holdout: list[list[str]], frame: pd.DataFrame,
                  rng: np.random.Generator) -> pd.DataFrame:
    """One prompt per held-out (shape, colour) and one per seen combination drawn from the
    training rows, each with random size, texture and background."""
    held = {tuple(pair) for pair in holdout}
    seen = frame[["shape", "colour"]].drop_duplicates()
    seen = seen[[(s, c) not in held for s, c in zip(seen["shape"], seen["colour"])]]
    seen = seen.sample(n=min(len(held), len(seen)), random_state=int(rng.integers(1 << 31)))
    rows = [{"shape": s, "colour": c, "held_out": True} for s, c in holdout]
    rows += [{"shape": s, "colour": c, "held_out": False} for s, c in seen.itertuples(False)]
    for row in rows:
        for name in ("size", "texture", "background"):
            row[name] = str(rng.choice(sorted(frame[name].astype(str).unique())))
        row["prompt"] = caption(row["size"], row["colour"], row["shape"], row["texture"],
                                row["background"])
    return pd.DataFrame(rows)


def study(preset: PresetConfig, model_dir, codes_dir, dit_dir, vae_dir, judge_dir, out,
          grid) -> dict:
    holdout = preset.data.shapes.holdout if preset.data.shapes else None
    if not holdout:
        result = {"skipped": "the preset's data has no held-out attribute combinations"}
        dio.write_json(out, result)
        save_image(image_grid(np.full((1, 8, 8, 3), 255, np.uint8), columns=1), grid)
        return result
    train_rows = codes_io.read_codes(Path(codes_dir) / preset.text.train.split).frame
    prompts = study_prompts(holdout, train_rows, np.random.default_rng(preset.text.sample.seed))
    text_model = TextModel.load(preset.text, model_dir, preset.sem.length)
    codes = write_codes(text_model, prompts["prompt"].tolist(), preset.sem.length,
                        preset.text.sample)
    images = decode_prompts(preset, codes, prompts["prompt"].tolist(), dit_dir, vae_dir,
                     Path(out).parent / "text2code")
    judge, report = load_judge(judge_dir)
    predicted = predict(judge, images, report["classes"])
    wanted = prompts.loc[prompts.index.repeat(preset.text.sample.samples)].reset_index(drop=True)
    result = {"prompts": prompts.to_dict(orient="records"),
              "samples_per_prompt": preset.text.sample.samples}
    for name, mask in (("held_out", wanted["held_out"]), ("seen", ~wanted["held_out"])):
        mask = mask.to_numpy()
        result[name] = agreement(predicted[mask].reset_index(drop=True),
                                 wanted[mask].reset_index(drop=True)[list(report["classes"])])
    result.update(dio.run_metadata({"text": to_dict(preset.text)}))
    dio.write_json(out, result)
    save_image(image_grid(images, columns=preset.text.sample.samples,
                          scale=max(1, 64 // images.shape[1])), grid)
    log.info("text -> code: held-out %s; seen %s", result["held_out"], result["seen"])
    return result

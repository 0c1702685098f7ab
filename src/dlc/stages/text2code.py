"""Stage `text2code`: codes written for each prompt by a train-text2code run, decoded into
images by the DiT. Generation lays out L masks, `<|start_sem|>` and the prompt, and unmasks the
code span only, with ids restricted to the code tokens (text.sample.*)."""

from __future__ import annotations

from pathlib import Path

from dlc.config import Config
from dlc.generation.text import decode_prompts, write_codes
from dlc.models.text_model import TextModel
from dlc.viz import image_grid, save_image


def run(cfg: Config, *, prompts: list[str], model: str | Path, dit: str | Path,
        vae: str | Path, out: str | Path, section: str = "text") -> Path:
    """`dlc text2code`: codes and images for each prompt: <out>/codes/, samples.npz, images/,
    grid.png (one row per prompt); `section` names the text model's params."""
    preset, out = cfg.active, Path(out)
    text_cfg = preset.text_params(section)
    text_model = TextModel.load(text_cfg, model, preset.sem.length)
    codes = write_codes(text_model, prompts, preset.sem.length, text_cfg.sample)
    images = decode_prompts(preset, text_cfg.sample, codes, prompts, dit, vae, out)
    save_image(image_grid(images, columns=text_cfg.sample.samples,
                          scale=max(1, 64 // images.shape[1])), out / "grid.png")
    print(f"codes -> {out / 'codes'}; images -> {out / 'images'}, {out / 'samples.npz'}; "
          f"grid (one row per prompt) -> {out / 'grid.png'}")
    return out

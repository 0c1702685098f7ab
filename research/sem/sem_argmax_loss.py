"""Where a trained SEM encoder's codes lose what it knows: the linear probe of the
preset on four readings of the same images, each a step further down the encoder,

- `summary`: the SEM head's input, the pre-final-norm CLS and register tokens concatenated;
- `probabilities`: the SEM softmax (L*V values, at the encoder's tau);
- `codes`: their argmax at each position, one-hot (what extraction keeps);
- `features`: the final-normed CLS and mean patch token (the probe's continuous baseline),

with, per position, the mean of the largest probability and the number of tokens that win
somewhere in the training images. A gap between `probabilities` and `codes` is what the argmax
throws away. Writes research/results/sem_argmax_loss.json (one row per --name, appended).

    .venv/bin/python research/sem/sem_argmax_loss.py --name L128 \\
        --encoder results/tiny/sem/encoder.safetensors --images results/tiny/data/images.parquet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dlc import config, io
from dlc.data.multicrop import normalize
from dlc.data.shapes import decode_images, read_table
from dlc.metrics import probe as probe_lib
from dlc.metrics.probe import probe_codes, probe_features
from dlc.models.sem import load_encoder


@torch.no_grad()
def readings(encoder, images: np.ndarray, batch_size: int = 512) -> dict[str, np.ndarray]:
    """(N, H, W, 3) uint8 -> summary, probabilities (N, L*V), codes (N, L), features."""
    to_input = normalize()
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("summary", "probabilities",
                                                             "codes", "features")}
    for start in range(0, len(images), batch_size):
        batch = to_input(torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2))
        tokens = encoder.tokens(batch)
        summary = tokens[:, :encoder.num_prefix].flatten(1)
        probabilities = encoder.sem(summary, encoder.tau)[0]
        parts["summary"].append(summary)
        parts["probabilities"].append(probabilities.flatten(1))
        parts["codes"].append(probabilities.argmax(-1))
        parts["features"].append(encoder._features(tokens))
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def measure(preset: config.PresetConfig, encoder_path: Path, images: Path) -> dict:
    sem, probe = preset.sem, preset.probe
    encoder = load_encoder(sem, encoder_path).eval()
    frames = {split: read_table(images, split)[0] for split in (probe.train_split,
                                                                 probe.test_split)}
    train, test = (readings(encoder, decode_images(frames[split]))
                   for split in (probe.train_split, probe.test_split))
    probabilities = train["probabilities"].reshape(len(train["codes"]), sem.length, sem.vocab)
    fit = probe_lib.fit_options(probe)
    top1 = {}
    for target in probe.targets:
        y_train, y_test, categories = probe_lib.target_classes(
            frames[probe.train_split][target], frames[probe.test_split][target], str(images))
        classes = len(categories)
        top1[target] = {name: round(probe_features(train[name], y_train, test[name], y_test,
                                                   classes, **fit).accuracy, 4)
                        for name in ("summary", "probabilities", "features")}
        top1[target]["codes"] = round(probe_codes(train["codes"], y_train, test["codes"],
                                                  y_test, sem.vocab, classes, **fit).accuracy, 4)
    return {"encoder": str(encoder_path), "L": sem.length, "V": sem.vocab,
            "mean_max_probability": round(float(probabilities.max(-1).mean()), 4),
            "tokens_used_per_position": round(float(np.mean(
                [len(np.unique(train["codes"][:, p])) for p in range(sem.length)])), 2),
            "top1": top1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--encoder", required=True, type=Path)
    parser.add_argument("--images", default="results/tiny/data/images.parquet", type=Path)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="research/results/sem_argmax_loss.json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = config.load(args.params, args.preset).active
    row = {"name": args.name, **measure(preset, args.encoder, args.images),
           **io.run_metadata({"sem": config.to_dict(preset.sem),
                              "probe": config.to_dict(preset.probe)})}
    rows = json.loads(args.out.read_text()) if args.out.is_file() else []
    io.write_json(args.out, rows + [row])
    print(json.dumps(row["top1"], indent=1))


if __name__ == "__main__":
    main()

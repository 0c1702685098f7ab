"""Stage `compose`: new codes made from two or more source images' codes, then images.

    token    each of the L positions takes the token of one source, drawn with
             compose.weights (uniform when null): the hybrid shares every token with a source
    average  each position is sampled from the weighted average of the sources' SEM
             distributions sharpened by temperature tau, p ~ (sum_s w_s p_s)^(1/tau); tau -> 0
             takes the average's argmax, which for confident sources is one of their tokens
    attribute  two sources: the positions carrying compose.attribute (the largest normalised
             mutual information between token and attribute among judge.attributes, over the
             --codes table: `dlc.metrics.positions`) from source compose.attribute_source,
             the rest from the other

The hybrid codes are written as a codes table (source `composed`) and decoded by the DiT
(dit.sample.* settings) into <out>: samples.npz, images/, grid.png with the sources in the
first row, and compose.json (sources, method, the Vendi score of the samples in the judge's
feature space when a judge is given).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from dlc import io as dio
from dlc.config import ComposeConfig, Config, PresetConfig, to_dict
from dlc.data import codes as codes_io
from dlc.data.sources import ImageTable
from dlc.generation.compose import hybrids as make_hybrids
from dlc.generation.compose import source_weights
from dlc.generation.images import decode_codes
from dlc.metrics.positions import carrying, position_map
from dlc.viz import image_grid, save_image

log = logging.getLogger(__name__)
GRID = 16   # pictures per grid row


def run(cfg: Config, *, sources: list[str], codes: str | Path, dit: str | Path,
        vae: str | Path, out: str | Path, samples: int | None = None,
        images: str | Path | None = None, encoder: str | Path | None = None,
        judge: str | Path | None = None) -> dict:
    """`dlc compose`: `samples` (default compose.samples) hybrids of the `sources` into `out`."""
    preset = cfg.active
    if samples is not None:
        preset = dataclasses.replace(preset, compose=dataclasses.replace(preset.compose,
                                                                         samples=samples))
    result = compose_sources(preset, sources, codes, dit, vae, out, images, encoder, judge)
    print(f"{result['n']} composed samples -> {out} (grid.png, compose.json)")
    return result


def _sem_probabilities(preset: PresetConfig, encoder_path, images_table, split: str,
                       image_ids: list[str]) -> np.ndarray:
    from dlc.data.multicrop import NormalizedTensor
    from dlc.models.sem import load_encoder

    encoder = load_encoder(preset.sem, encoder_path).eval()
    table = ImageTable(images_table, split)
    rows = {image_id: i for i, image_id in enumerate(table.frame["image_id"])}
    missing = [i for i in image_ids if i not in rows]
    if missing:
        raise ValueError(f"{images_table}: no images {missing} in split {split!r}")
    to_tensor, size = NormalizedTensor(), preset.sem.backbone.img_size
    batch = torch.stack([to_tensor(table.centred(rows[i], size)) for i in image_ids])
    return encoder.encode(batch).numpy()


def compose_sources(preset: PresetConfig, source_ids: list[str], codes_dir, dit_dir, vae_dir,
                    out_dir, images_table=None, encoder_path=None, judge_dir=None) -> dict:
    cfg: ComposeConfig = preset.compose
    out_dir = Path(out_dir)
    length, vocab = preset.sem.length, preset.sem.vocab
    table = codes_io.read_codes(codes_dir, length, vocab)
    missing = [i for i in source_ids if i not in set(table.image_ids)]
    if missing:
        raise ValueError(f"{codes_dir}: no codes for {missing}")
    sources = np.stack([table.lookup(i) for i in source_ids]).astype(np.int64)
    probabilities = None
    if cfg.method == "average":
        if encoder_path is None or images_table is None:
            raise ValueError("compose.method: average needs --encoder and --images (the "
                             "sources' SEM distributions)")
        probabilities = _sem_probabilities(preset, encoder_path, images_table,
                                           table.metadata.get("split"), source_ids)
    positions = None
    if cfg.method == "attribute":
        information = position_map(table.codes, table.frame, preset.judge.attributes)
        positions = carrying(information, cfg.attribute)
    hybrids = make_hybrids(cfg, sources, probabilities, positions)
    metadata = {"L": length, "V": vocab, "dataset": table.metadata.get("dataset"),
                "split": "composed", "producer": {"stage": "dlc compose",
                                                  "sources": source_ids, **to_dict(cfg)}}
    samples = decode_codes(preset.dit, preset.vae, dit_dir, vae_dir, hybrids,
                           [f"composed-{i:06d}" for i in range(len(hybrids))], metadata,
                           out_dir, "composed")
    rows = [samples[:GRID]]
    if images_table is not None:      # the sources first, padded with white to a full row
        originals = ImageTable(images_table, table.metadata.get("split"))
        where = {key: i for i, key in enumerate(originals.frame["image_id"])}
        first = np.stack([originals.centred(where[i], samples.shape[1])
                          for i in source_ids[:GRID]])
        rows.insert(0, np.concatenate([first, np.full((GRID - len(first), *first.shape[1:]),
                                                      255, np.uint8)]))
    save_image(image_grid(np.concatenate(rows), columns=GRID,
                          scale=max(1, 64 // samples.shape[1])), out_dir / "grid.png")
    result = {"sources": source_ids, "method": cfg.method,
              "weights": source_weights(cfg.weights, len(sources)).tolist(),
              "tau": cfg.tau, "n": len(samples),
              "shared_with_a_source": float((hybrids[:, None] == sources[None]).any(1).mean()),
              "attribute_positions": None if positions is None else
              np.flatnonzero(positions).tolist(),
              **dio.run_metadata({"compose": to_dict(cfg)})}
    if judge_dir is not None:
        from dlc.metrics.features import build_feature_space
        from dlc.metrics.vendi import vendi_from_features

        space = build_feature_space("judge", torch.device("cpu"), judge_dir=judge_dir)
        result["vendi_judge"] = vendi_from_features(space.extract(samples)["pool"])
    dio.write_json(out_dir / "compose.json", result)
    return result

"""Stages `train-text2code`, `text2code` and `text2code-study`: a masked diffusion language
model over `code tokens, <|start_sem|>, caption` (LLaDA's objective, diffusion/masked_lm.py),
codes written from a prompt, and images from them through the DiT.

Training masks every non-padding token of the sequence with probability t (code and caption
alike). Generation lays out L masks, `<|start_sem|>` and the prompt, and unmasks the code span
only, with ids restricted to the code tokens. The study asks for every held-out (shape, colour)
and as many seen combinations, with random other attributes, and scores the images' attributes
against the prompt's with the judge.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import PresetConfig, TextConfig, to_dict
from dlc.data import codes as codes_io
from dlc.data.shapes import caption
from dlc.diffusion import masked_lm
from dlc.models import text
from dlc.train import checkpoint, distributed
from dlc.train.batches import EpochOrder, StepBatches
from dlc.train.ema import make_ema, update_ema, warmed_up_decay
from dlc.train.schedules import lr_factor
from dlc.viz import image_grid, loss_curve, save_image

log = logging.getLogger(__name__)
VOCABULARY, WEIGHTS, HF_FOLDER = "vocabulary.json", "model.safetensors", "model"


class TextModel:
    """One interface over both back ends: `logits(tokens)`, `caption_ids(text)`, `codes`."""

    def __init__(self, cfg: TextConfig, network: nn.Module, codes: text.CodeTokens, size: int,
                 caption_ids, tokenizer=None, words: list[str] | None = None):
        self.cfg, self.network, self.codes, self.size = cfg, network, codes, size
        self.caption_ids, self.tokenizer, self.words = caption_ids, tokenizer, words

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.tokenizer is None:
            return self.network(tokens)
        return self.network(input_ids=tokens).logits

    def sequences(self, codes: torch.Tensor, captions: list[str]) -> torch.Tensor:
        ids = torch.tensor([self.caption_ids(c) for c in captions], dtype=torch.long)
        return text.layout(codes, ids, self.codes)

    @classmethod
    def build(cls, cfg: TextConfig, captions: list[str], vocab: int,
              length: int) -> TextModel:
        if cfg.backend == "tiny":
            return cls._tiny(cfg, text.WordVocabulary.from_captions(captions, vocab), length)
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        if cfg.model is None or not Path(cfg.model).is_dir():
            raise FileNotFoundError(f"text.model {cfg.model}: no such transformers folder")
        tokenizer = AutoTokenizer.from_pretrained(cfg.model,
                                                  trust_remote_code=cfg.trust_remote_code)
        network = AutoModelForMaskedLM.from_pretrained(cfg.model,
                                                       trust_remote_code=cfg.trust_remote_code)
        codes = text.extend_vocabulary(tokenizer, network, vocab)
        if cfg.lora is not None:
            network = text.add_lora(network, cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout,
                                    cfg.lora.targets)
        return cls(cfg, network, codes, len(tokenizer),
                   _tokenizer_ids(tokenizer, cfg.caption_length), tokenizer)

    @classmethod
    def _tiny(cls, cfg: TextConfig, words: text.WordVocabulary, length: int) -> TextModel:
        network = text.MaskedTransformer(words.size, length + 1 + cfg.caption_length,
                                         cfg.width, cfg.depth, cfg.heads, cfg.dropout)
        return cls(cfg, network, words.codes, words.size,
                   lambda c: words.encode(c, cfg.caption_length), words=words.tokens)

    def save(self, run: Path) -> None:
        if self.tokenizer is None:
            checkpoint.save_weights(run / WEIGHTS, self.network)
            dio.write_json(run / VOCABULARY, {"tokens": self.words, "codes": self.codes.vocab})
        else:   # a folder: written beside, then swapped in whole
            partial, final = run / f".{HF_FOLDER}.partial", run / HF_FOLDER
            shutil.rmtree(partial, ignore_errors=True)
            network = self.network
            if hasattr(network, "merge_and_unload"):   # LoRA: one plain model to load later
                network = network.merge_and_unload()
            network.save_pretrained(partial)
            self.tokenizer.save_pretrained(partial)
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)

    @classmethod
    def load(cls, cfg: TextConfig, run: str | Path, length: int) -> TextModel:
        run = Path(run)
        if cfg.backend == "tiny":
            saved = dio.read_json(run / VOCABULARY)
            model = cls._tiny(cfg, text.WordVocabulary(saved["tokens"], saved["codes"]), length)
            checkpoint.load_weights(model.network, run / WEIGHTS, "the text params")
            return model
        loaded = dataclasses.replace(cfg, model=str(run / HF_FOLDER))
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(loaded.model,
                                                  trust_remote_code=cfg.trust_remote_code)
        network = AutoModelForMaskedLM.from_pretrained(loaded.model,
                                                       trust_remote_code=cfg.trust_remote_code)
        first = tokenizer.convert_tokens_to_ids(text.code_token(0))
        vocab = sum(1 for token in tokenizer.get_vocab() if token.startswith("<|sem_vocab_"))
        codes = text.CodeTokens(first, vocab, tokenizer.convert_tokens_to_ids(text.START),
                                tokenizer.mask_token_id, tokenizer.pad_token_id)
        return cls(cfg, network.eval(), codes, len(tokenizer),
                   _tokenizer_ids(tokenizer, cfg.caption_length), tokenizer)


def _tokenizer_ids(tokenizer, length: int):
    def encode(caption_text: str) -> list[int]:
        ids = tokenizer(caption_text, add_special_tokens=False)["input_ids"][:length]
        return ids + [tokenizer.pad_token_id] * (length - len(ids))
    return encode


def train(cfg: TextConfig, codes_dir: str | Path, length: int, vocab: int,
          out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    t = cfg.train
    torch.set_num_threads(t.threads)
    table = codes_io.read_codes(Path(codes_dir) / t.split, length, vocab)
    if "caption" not in table.frame.columns:
        raise ValueError(f"{codes_dir}/{t.split}: the codes have no caption column")
    captions = table.frame["caption"].astype(str).tolist()
    torch.manual_seed(t.seed)
    model = TextModel.build(cfg, captions, vocab, length)
    data = model.sequences(torch.from_numpy(table.codes.astype(np.int64)), captions)
    maskable = data != model.codes.pad
    params_sha = dio.sha256_json({"text": to_dict(cfg), "L": length, "V": vocab,
                                  "codes": str(codes_dir), "rows": len(data)})
    network = model.network
    ema = make_ema(network) if t.ema_decay > 0 else None
    trained = [p for p in network.parameters() if p.requires_grad]   # LoRA: adapters only
    optimizer = torch.optim.AdamW(trained, lr=t.lr, weight_decay=0.0)
    history, start = checkpoint.resume(out_dir / "checkpoints", network, ema, optimizer,
                                       params_sha)
    order = EpochOrder(len(data), t.seed)
    log_every = max(1, t.steps // 200)
    autocast = distributed.autocast(next(network.parameters()).device, t.precision)

    def logits(tokens: torch.Tensor) -> torch.Tensor:  # the loss stays in float32
        with autocast:
            return model.logits(tokens).float()

    network.train()
    for step, numbers in enumerate(tqdm(StepBatches(start, t.steps, t.batch_size, 0, 1),
                                        desc="train-text2code", initial=start,
                                        total=t.steps, mininterval=5), start=start):
        rows = [order(k) for k in numbers]
        for group in optimizer.param_groups:
            group["lr"] = t.lr * lr_factor(step, "constant", t.warmup_steps, t.steps)
        loss = masked_lm.training_loss(logits, data[rows], model.codes.mask, maskable[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trained, t.clip_grad)
        optimizer.step()
        if ema is not None:
            update_ema(ema, network, warmed_up_decay(step, t.ema_decay))
        done = step + 1
        if done % log_every == 0 or done == t.steps:
            history.append({"step": done, "loss": loss.item()})
        if done % t.checkpoint_every == 0 and done < t.steps:
            checkpoint.save(out_dir / "checkpoints", done, network, ema,
                            {"optimizer": optimizer.state_dict(), "history": history},
                            params_sha)
    if ema is not None:
        model.network = ema
    model.save(out_dir)
    dio.write_csv(out_dir / "loss.csv", history)
    loss_curve(history, "loss", "masked diffusion loss (1/t weighted)",
               f"text -> code ({cfg.backend}) on {len(data)} pairs", out_dir / "loss.png")
    dio.write_json(out_dir / "meta.json", {
        "L": length, "V": vocab, "text": to_dict(cfg), "pairs": len(data),
        "final": history[-1], **dio.run_metadata({"text": to_dict(cfg)}),
        "params_sha256": params_sha})
    log.info("text -> code (%s) trained %d steps -> %s", cfg.backend, t.steps, out_dir)
    return out_dir


def write_codes(model: TextModel, prompts: list[str], length: int, seed: int) -> np.ndarray:
    """cfg.sample.samples codes per prompt, (len(prompts) * samples, L)."""
    s = model.cfg.sample
    generator = torch.Generator().manual_seed(seed)
    model.network.eval()
    repeated = [p for p in prompts for _ in range(s.samples)]
    tokens = model.sequences(torch.zeros(len(repeated), length, dtype=torch.long), repeated)
    filled = masked_lm.sample(model.logits, tokens, slice(0, length), model.codes.mask,
                              model.codes.allowed(model.size), s.steps, s.temperature,
                              s.remasking, generator)
    return model.codes.to_codes(filled[:, :length]).numpy()


def _decode(preset: PresetConfig, codes: np.ndarray, prompts: list[str], dit_dir, vae_dir,
            out_dir: Path) -> np.ndarray:
    from dlc.generation.images import decode_codes

    metadata = {"L": preset.sem.length, "V": preset.sem.vocab, "dataset": None, "split": "text",
                "producer": {"stage": "dlc text2code", **to_dict(preset.text.sample)}}
    captions = pd.DataFrame({"caption": [p for p in prompts
                                         for _ in range(preset.text.sample.samples)]})
    return decode_codes(preset.dit, preset.vae, dit_dir, vae_dir, codes,
                        [f"text-{i:06d}" for i in range(len(codes))], metadata, out_dir,
                        "text", captions)


def run(preset: PresetConfig, prompts: list[str], model_dir, dit_dir, vae_dir,
        out_dir) -> Path:
    """Codes and images for each prompt: <out>/codes/, samples.npz, images/, grid.png (one
    row per prompt)."""
    out_dir = Path(out_dir)
    model = TextModel.load(preset.text, model_dir, preset.sem.length)
    codes = write_codes(model, prompts, preset.sem.length, preset.text.sample.seed)
    images = _decode(preset, codes, prompts, dit_dir, vae_dir, out_dir)
    save_image(image_grid(images, columns=preset.text.sample.samples,
                          scale=max(1, 64 // images.shape[1])), out_dir / "grid.png")
    return out_dir


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
    from dlc.models.judge import agreement, load_judge, predict

    holdout = preset.data.shapes.holdout if preset.data.shapes else None
    if not holdout:
        result = {"skipped": "the preset's data has no held-out attribute combinations"}
        dio.write_json(out, result)
        save_image(image_grid(np.full((1, 8, 8, 3), 255, np.uint8), columns=1), grid)
        return result
    train_rows = codes_io.read_codes(Path(codes_dir) / preset.text.train.split).frame
    prompts = study_prompts(holdout, train_rows, np.random.default_rng(preset.text.sample.seed))
    model = TextModel.load(preset.text, model_dir, preset.sem.length)
    codes = write_codes(model, prompts["prompt"].tolist(), preset.sem.length,
                        preset.text.sample.seed)
    images = _decode(preset, codes, prompts["prompt"].tolist(), dit_dir, vae_dir,
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

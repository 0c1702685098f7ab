"""The text -> code model behind one interface over its two back ends: the tiny transformer
trained from scratch on the captions' words, or a local transformers masked LM with the code
tokens added to its vocabulary. Built for training, saved, and loaded back from a run folder."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
from torch import nn

from dlc import io as dio
from dlc.config import TextConfig
from dlc.models import text
from dlc.train import checkpoint

VOCABULARY, WEIGHTS, HF_FOLDER = "vocabulary.json", "model.safetensors", "model"


class TextModel:
    """One interface over both back ends: `logits(tokens)`, `caption_ids(text)`, `codes`."""

    def __init__(self, cfg: TextConfig, network: nn.Module, codes: text.CodeTokens, size: int,
                 caption_ids, tokenizer=None, words: list[str] | None = None,
                 pretrained: frozenset[str] = frozenset(), own_words: int = 0):
        self.cfg, self.network, self.codes, self.size = cfg, network, codes, size
        self.caption_ids, self.tokenizer, self.words = caption_ids, tokenizer, words
        # What a folder brought: the names of the weights it held, its vocabulary's size.
        self.pretrained, self.own_words = pretrained, own_words

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.tokenizer is None:
            return self.network(tokens)
        return self.network(input_ids=tokens).logits

    def parameter_groups(self, lr: float, pretrained_lr: float | None) -> list[dict]:
        """AdamW groups, each with its `lr_mult` (as train-dit's): every trainable weight at
        `lr`; or, with `pretrained_lr`, the folder's weights at `pretrained_lr` and its own
        vocabulary rows frozen, so that the new weights (code rows, a head the folder lacks)
        alone learn at `lr`. Why freeze: Adam moves a weight by ~lr a step whatever its
        gradient's size, so a word no caption has, pushed down a little as a wrong answer of
        every softmax, drifts as far as the words trained on and forgets what it meant."""
        trained = [(name, p) for name, p in self.network.named_parameters() if p.requires_grad]
        if pretrained_lr is None:
            return [{"params": [p for _, p in trained], "lr_mult": 1.0}]
        tables = self._freeze_own_words()
        new = [p for name, p in trained if name not in self.pretrained or id(p) in tables]
        body = [p for name, p in trained if name in self.pretrained and id(p) not in tables]
        return [{"params": new, "lr_mult": 1.0}, {"params": body, "lr_mult": pretrained_lr / lr}]

    def _freeze_own_words(self) -> set[int]:
        """Zero the gradient of the embedding rows below `own_words` (input and output tables,
        tied or not); return the tables' ids. A row that never gets a gradient never moves
        under AdamW without weight decay."""
        own = self.own_words
        tables = {id(m.weight): m.weight for m in (self.network.get_input_embeddings(),
                                                   self.network.get_output_embeddings())
                  if m is not None}

        def keep_own_words(grad: torch.Tensor) -> torch.Tensor:   # (size, width)
            return torch.cat([torch.zeros_like(grad[:own]), grad[own:]])

        for weight in tables.values():
            weight.register_hook(keep_own_words)
        return set(tables)

    def sequences(self, codes: torch.Tensor, captions: list[str]) -> torch.Tensor:
        ids = torch.tensor([self.caption_ids(c) for c in captions], dtype=torch.long)
        return text.layout(codes, ids, self.codes)

    @classmethod
    def build(cls, cfg: TextConfig, captions: list[str], vocab: int,
              length: int) -> TextModel:
        if cfg.backend == "tiny":
            return cls._tiny(cfg, text.WordVocabulary.from_captions(captions, vocab), length)
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        folder = None if cfg.model is None else dio.local_path(cfg.model)
        if folder is None or not folder.is_dir():
            raise FileNotFoundError(f"text.model {cfg.model}: no such transformers folder")
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=cfg.trust_remote_code)
        network, loading = AutoModelForMaskedLM.from_pretrained(
            folder, trust_remote_code=cfg.trust_remote_code, output_loading_info=True)
        pretrained = frozenset(network.state_dict()) - set(loading["missing_keys"])
        own_words = len(tokenizer)
        codes = text.extend_vocabulary(tokenizer, network, vocab)
        if cfg.lora is not None:
            network = text.add_lora(network, cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout,
                                    cfg.lora.targets)
        return cls(cfg, network, codes, len(tokenizer),
                   _tokenizer_ids(tokenizer, cfg.caption_length), tokenizer,
                   pretrained=pretrained, own_words=own_words)

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

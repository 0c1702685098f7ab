"""Text -> code models: one token sequence `code tokens, <start-code>, caption` for a masked
diffusion language model (diffusion/masked_lm.py).

Two back ends behind one interface (`logits(tokens) -> (B, N, vocabulary)`):
- `MaskedTransformer`: a small bidirectional transformer trained from scratch (the tiny
  preset), over `WordVocabulary`: the caption words, the specials and the V code tokens.
- a transformers masked LM from a local folder (the imagenet preset: LLaDA-8B-Base with
  trust_remote_code), whose tokenizer gets `<|start_sem|>` and `<|sem_vocab_i|>` added by
  `extend_vocabulary` and its embeddings resized; the original ids keep their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlc.models.attention import SelfAttention

PAD, MASK, START, UNKNOWN = "<|pad|>", "<|mask|>", "<|start_sem|>", "<|unk|>"


def code_token(i: int) -> str:
    return f"<|sem_vocab_{i}|>"


@dataclass(frozen=True)
class CodeTokens:
    """Where the code tokens live in a vocabulary: ids first_code .. first_code + V - 1."""
    first_code: int
    vocab: int
    start: int
    mask: int
    pad: int

    def allowed(self, size: int) -> torch.Tensor:
        """(size,) bool: True exactly on the code ids (what generation may emit)."""
        allowed = torch.zeros(size, dtype=torch.bool)
        allowed[self.first_code:self.first_code + self.vocab] = True
        return allowed

    def to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        codes = ids - self.first_code
        if ((codes < 0) | (codes >= self.vocab)).any():
            raise ValueError("a generated id is not a code token")
        return codes


class WordVocabulary:
    """Specials, then the caption words (sorted), then the V code tokens."""

    def __init__(self, tokens: list[str], vocab: int):
        self.tokens = list(tokens)
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.codes = CodeTokens(first_code=len(self.tokens), vocab=vocab, start=self.ids[START],
                                mask=self.ids[MASK], pad=self.ids[PAD])
        self.size = len(self.tokens) + vocab

    @classmethod
    def from_captions(cls, captions: list[str], vocab: int) -> WordVocabulary:
        words = sorted({word for caption in captions for word in caption.lower().split()})
        return cls([PAD, MASK, START, UNKNOWN, *words], vocab)

    def encode(self, caption: str, length: int) -> list[int]:
        ids = [self.ids.get(word, self.ids[UNKNOWN]) for word in caption.lower().split()]
        if len(ids) > length:
            raise ValueError(f"caption of {len(ids)} words is longer than {length}: {caption!r}")
        return ids + [self.codes.pad] * (length - len(ids))


def layout(codes: torch.Tensor, captions: torch.Tensor, tokens: CodeTokens) -> torch.Tensor:
    """(B, L) codes and (B, C) caption ids -> (B, L + 1 + C) sequences."""
    start = torch.full((len(codes), 1), tokens.start, dtype=torch.long, device=codes.device)
    return torch.cat([codes.long() + tokens.first_code, start, captions.long()], dim=1)


class Block(nn.Module):
    """Pre-norm transformer block: x + drop(attn(norm(x))), then x + drop(mlp(norm(x)))."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class MaskedTransformer(nn.Module):
    """Bidirectional pre-norm transformer: token + learned position embeddings -> logits.
    Its attention is the package's (models/attention.py): fast under CPU bf16 autocast."""

    def __init__(self, vocabulary: int, length: int, width: int, depth: int, heads: int,
                 dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(torch.zeros(1, length, width))
        self.blocks = nn.Sequential(*(Block(width, heads, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocabulary)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position[:, :tokens.shape[1]]
        return self.out(self.norm(self.blocks(x)))


def extend_vocabulary(tokenizer, model, vocab: int) -> CodeTokens:
    """Add `<|start_sem|>` and the V code tokens to a transformers tokenizer (and a mask and a
    pad token if it has none), resize the model's embeddings; old ids are unchanged."""
    added = [START, *(code_token(i) for i in range(vocab))]
    tokenizer.add_tokens(added, special_tokens=True)
    if tokenizer.mask_token is None:
        tokenizer.add_special_tokens({"mask_token": MASK})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD})
    model.resize_token_embeddings(len(tokenizer))
    first = tokenizer.convert_tokens_to_ids(code_token(0))
    ids = tokenizer.convert_tokens_to_ids([code_token(i) for i in range(vocab)])
    if ids != list(range(first, first + vocab)):
        raise ValueError("the code tokens did not get consecutive ids")
    return CodeTokens(first_code=first, vocab=vocab,
                      start=tokenizer.convert_tokens_to_ids(START),
                      mask=tokenizer.mask_token_id, pad=tokenizer.pad_token_id)


def add_lora(model, rank: int, alpha: float, dropout: float, targets: list[str] | None):
    """Low-rank adapters (peft) on `targets` (default: every linear layer but the output
    head); the input and output embeddings stay fully trainable, because the code tokens are
    rows that the base model never trained."""
    from peft import LoraConfig, get_peft_model

    names = {id(module): name for name, module in model.named_modules()}
    embeddings = [names[id(m)] for m in (model.get_input_embeddings(),
                                         model.get_output_embeddings()) if m is not None]
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=targets or "all-linear", modules_to_save=embeddings)
    return get_peft_model(model, config)

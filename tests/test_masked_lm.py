"""LLaDA's masked diffusion: the loss against its formula, the corruption rate, and the
sampler (code span only, allowed ids only, the softmax law at temperature 1, least confident
stay masked), plus the text models' vocabularies."""

import math

import pytest
import torch

from dlc.diffusion import masked_lm
from dlc.models import text


def test_the_loss_equals_the_formula_on_a_hand_made_batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.tensor([[1, 2, 3, 4, 5], [6, 0, 1, 2, 3]])
    masked = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    maskable = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    t = torch.tensor([0.5, 0.25])
    expected = 0.0
    for b in range(2):
        total = sum(-torch.log_softmax(logits[b, i], -1)[targets[b, i]].item()
                    for i in range(5) if masked[b, i])
        expected += total / t[b].item() / maskable[b].sum().item()
    expected /= 2
    loss = masked_lm.loss_from_logits(logits, targets, masked, t, maskable)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_corruption_masks_with_probability_t_and_only_maskable_tokens():
    tokens = torch.zeros(4, 20_000, dtype=torch.long)
    maskable = torch.ones_like(tokens, dtype=torch.bool)
    maskable[:, :100] = False
    t = torch.tensor([0.1, 0.5, 0.9, 0.0])
    noisy, masked = masked_lm.corrupt(tokens, t, 9, maskable, torch.Generator().manual_seed(0))
    assert not masked[:, :100].any() and (noisy[masked] == 9).all()
    rates = masked[:, 100:].float().mean(1)
    torch.testing.assert_close(rates, t, atol=0.01, rtol=0)


def oracle(target: torch.Tensor, vocabulary: int, favourite: int | None = None):
    """Logits that want `target` at every position (and `favourite` even more, if given)."""
    def logits_fn(tokens):
        logits = torch.zeros(*tokens.shape, vocabulary)
        logits.scatter_(-1, target.expand_as(tokens)[..., None], 5.0)
        if favourite is not None:
            logits[..., favourite] = 50.0
        return logits
    return logits_fn


def test_the_sampler_fills_only_the_code_span_with_allowed_ids():
    vocabulary, span = 12, slice(0, 6)
    prompt = torch.tensor([[0, 0, 0, 0, 0, 0, 3, 4, 5]])
    allowed = torch.zeros(vocabulary, dtype=torch.bool)
    allowed[6:12] = True
    target = torch.tensor([7, 8, 9, 10, 11, 6, 1, 1, 1])
    for favourite, temperature in ((None, 0.0), (2, 0.0), (2, 1.0)):
        out = masked_lm.sample(oracle(target, vocabulary, favourite), prompt, span, 1,
                               allowed, steps=3, temperature=temperature,
                               generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[:, 6:], prompt[:, 6:])           # the prompt is untouched
        assert allowed[out[0, span]].all()                        # never a disallowed id
        if temperature == 0:
            assert torch.equal(out[0, span], target[span])        # id 2 is never allowed


def test_at_temperature_one_the_sampler_draws_from_the_softmax_over_allowed_ids():
    """One step, one position, 40,000 sequences: the frequencies of the allowed ids match
    softmax(logits) renormalised over them; disallowed ids (one with the largest logit)
    never come out."""
    logits = torch.tensor([3.0, 0.0, 1.0, -1.0, 0.5, 9.0])
    allowed = torch.tensor([False, True, True, True, True, False])
    out = masked_lm.sample(lambda tokens: logits.expand(*tokens.shape, 6), torch.zeros(
        40_000, 1, dtype=torch.long), slice(0, 1), 0, allowed, steps=1, temperature=1.0,
        generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(out[:, 0], minlength=6) / len(out)
    expected = torch.zeros(6)
    expected[allowed] = logits[allowed].softmax(0)
    assert torch.allclose(frequencies, expected, atol=0.01)     # ~4 standard errors


def test_the_least_confident_positions_stay_masked():
    """Two steps over four positions: after the first, the two least confident proposals
    are still masked."""
    seen = []
    confidence = torch.tensor([4.0, 0.5, 3.0, 0.1])

    def logits_fn(tokens):   # id 2 wins everywhere, by the margin `confidence` over id 3
        seen.append(tokens.clone())
        logits = torch.zeros(*tokens.shape, 4)
        logits[0, :, 2] = confidence
        return logits

    allowed = torch.tensor([False, False, True, True])
    out = masked_lm.sample(logits_fn, torch.zeros(1, 4, dtype=torch.long), slice(0, 4), 1,
                           allowed, steps=2)
    assert seen[1][0].tolist() == [2, 1, 2, 1]        # positions 1 and 3 still masked
    assert out[0].tolist() == [2, 2, 2, 2]


def test_word_vocabulary_layout_and_code_range():
    vocabulary = text.WordVocabulary.from_captions(["a red circle", "a large green star"], vocab=8)
    codes = vocabulary.codes
    assert vocabulary.size == codes.first_code + 8
    ids = vocabulary.encode("a red star", 5)
    assert len(ids) == 5 and ids[-1] == codes.pad
    sequence = text.layout(torch.tensor([[0, 7]]), torch.tensor([ids]), codes)
    assert sequence[0, :2].tolist() == [codes.first_code, codes.first_code + 7]
    assert sequence[0, 2] == codes.start
    assert codes.allowed(vocabulary.size).sum() == 8
    with pytest.raises(ValueError, match="not a code token"):
        codes.to_codes(torch.tensor([codes.start]))


def test_extending_a_transformers_vocabulary_keeps_the_original_ids():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    words = {"[UNK]": 0, "a": 1, "red": 2, "circle": 3}
    backend = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=4, hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32))
    before = model.get_input_embeddings().weight.detach().clone()
    ids_before = tokenizer("a red circle")["input_ids"]
    codes = text.extend_vocabulary(tokenizer, model, vocab=5)
    assert tokenizer("a red circle")["input_ids"] == ids_before
    after = model.get_input_embeddings().weight
    assert after.shape[0] == len(tokenizer) >= 4 + 1 + 5
    torch.testing.assert_close(after[:4], before)
    assert tokenizer.convert_ids_to_tokens(codes.first_code + 4) == text.code_token(4)
    logits = model(input_ids=torch.tensor([[codes.start, codes.first_code, 1]])).logits
    assert logits.shape[-1] == len(tokenizer)


def test_a_tiny_masked_transformer_learns_a_fixed_sequence():
    """The loss and the sampler together: 150 steps on one sequence, then sampling its code
    span from the caption gives it back."""
    torch.manual_seed(0)
    vocabulary = text.WordVocabulary.from_captions(["a red circle"], vocab=6)
    codes = vocabulary.codes
    sequence = text.layout(torch.tensor([[5, 0, 3, 1]]),
                           torch.tensor([vocabulary.encode("a red circle", 4)]), codes)
    model = text.MaskedTransformer(vocabulary.size, sequence.shape[1], 32, 2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    maskable = torch.ones_like(sequence, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss = masked_lm.training_loss(model, sequence.repeat(16, 1), codes.mask,
                                       maskable.repeat(16, 1), generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert math.isfinite(loss.item())
    model.eval()
    out = masked_lm.sample(model, sequence, slice(0, 4), codes.mask,
                           codes.allowed(vocabulary.size), steps=4)
    assert codes.to_codes(out[0, :4]).tolist() == [5, 0, 3, 1]

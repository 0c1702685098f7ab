"""The authors' DiT, SEDD and SEM teacher checkpoints as our models: outputs of their own code
on fixed inputs (tests/fixtures/authors, written by make_fixtures.py from their repository)
reproduced by the converted models, and every tensor accounted for."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from dlc import config
from dlc.models import authors
from dlc.models import dit as dit_module
from dlc.models import sedd as sedd_module
from dlc.models.sem import build_encoder, load_encoder
from dlc.stages import convert_authors

from .conftest import BIN, ENV, ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "authors"
DIT_HEADS, L, V = 2, 16, 8
# float32 on CPU: the converted networks add the same terms in another order (the folded
# LayerNorm weights of SEDD, the gather-mean of the DiT's code embedding).
TOLERANCE = 1e-5


def dit_checkpoints() -> dict:
    return {"model": load_file(FIXTURES / "dit_model.safetensors"),
            "ema": torch.load(FIXTURES / "dit_custom_checkpoint_0.pkl", weights_only=True)}


def sedd_checkpoint() -> dict:
    return torch.load(FIXTURES / "sedd_checkpoint.pth", weights_only=True)


def sedd_read_entries(indices: torch.Tensor) -> torch.Tensor:
    """(B, L, V) True where their output is a score: every token at a masked position; at an
    unmasked one, all but the current token (their scatter zeroes that entry)."""
    read = torch.ones(*indices.shape, V, dtype=torch.bool)
    unmasked = indices < V
    read.scatter_(-1, indices.clamp(max=V - 1)[..., None], ~unmasked[..., None])
    return read


@pytest.mark.parametrize("weights", ["model", "ema"])
def test_their_dit_outputs_are_reproduced(weights):
    io = load_file(FIXTURES / "dit_io.safetensors")
    model = authors.dit_from_authors(dit_checkpoints()[weights], DIT_HEADS, "fixture").eval()
    with torch.no_grad():
        out = model(io["x"], io["t"], codes=io["codes"])
    expected = io[f"out_{weights}"]
    assert out.shape == expected.shape == (3, 8, 8, 8)
    torch.testing.assert_close(out, expected, atol=TOLERANCE, rtol=0)
    assert expected[0].abs().max() > 0.1  # not a zero network


@pytest.mark.parametrize("weights", ["model", "ema"])
def test_their_sedd_scores_are_reproduced(weights):
    io = load_file(FIXTURES / "sedd_io.safetensors")
    checkpoint = sedd_checkpoint()
    theirs = authors.sedd_ema_weights(checkpoint, "fixture") if weights == "ema" \
        else checkpoint["model"]
    model = authors.sedd_from_authors(theirs, 0.1, "fixture").eval()
    with torch.no_grad():
        out = model(io["indices"], io["sigma"])
    expected = io[f"out_{weights}"][..., :V]     # their column V (the mask) is dropped
    read = sedd_read_entries(io["indices"])
    assert out.shape == expected.shape == (3, L, V)
    torch.testing.assert_close(out[read], expected[read], atol=TOLERANCE, rtol=0)
    # The EMA and the online weights differ, so a mix-up cannot pass.
    other = io["out_model" if weights == "ema" else "out_ema"][..., :V]
    assert (other[read] - expected[read]).abs().max() > 0.1


def test_a_key_without_a_counterpart_or_a_missing_one_is_refused():
    theirs = dict(dit_checkpoints()["ema"])
    with pytest.raises(authors.ConversionError, match="blocks.0.attn.q_bias"):
        authors.dit_from_authors({**theirs, "blocks.0.attn.q_bias": torch.zeros(16)},
                                 DIT_HEADS, "fixture")
    del theirs["blocks.1.mlp.fc2.bias"]
    with pytest.raises(authors.ConversionError, match="blocks.1.mlp.2.bias"):
        authors.dit_from_authors(theirs, DIT_HEADS, "fixture")
    sedd = dict(sedd_checkpoint()["model"])
    del sedd["blocks.1.norm2.weight"]
    with pytest.raises(authors.ConversionError, match="blocks.1.norm2.weight"):
        authors.sedd_from_authors(sedd, 0.1, "fixture")


def test_a_vanishing_layernorm_weight_is_refused():
    sedd = dict(sedd_checkpoint()["model"])
    sedd["blocks.0.norm1.weight"] = sedd["blocks.0.norm1.weight"].clone()
    sedd["blocks.0.norm1.weight"][3] = 0.0
    with pytest.raises(authors.ConversionError, match="LayerNorm weight"):
        authors.sedd_from_authors(sedd, 0.1, "fixture")


def fixture_sized_config(micro: dict, monkeypatch) -> config.Config:
    """The micro params with the fixtures' code shape and SEM teacher (timm's DINOv2 ViT with
    registers, small), the size names mapped to the fixtures' sizes."""
    monkeypatch.setitem(dit_module.SIZES, "tiny", dit_module.DiTSize(2, 16, DIT_HEADS))
    monkeypatch.setitem(sedd_module.SIZES, "tiny", sedd_module.SEDDSize(16, 2, 2, 8))
    preset = micro["presets"]["tiny"]
    preset["sem"].update(length=L, vocab=V, tau=0.1, norm_eps=1e-6)
    preset["sem"]["backbone"].update(
        name="vit_large_patch14_reg4_dinov2", weights=None, img_size=32, patch_size=8,
        embed_dim=16, depth=2, num_heads=2, reg_tokens=None, conv_stem=None)
    preset["sem"]["head"].update(prototypes=32, hidden=24, bottleneck=8, layers=3)
    preset["sem"]["loss"].update(nce_weight=0.0, dino_weight=1.0)  # as the paper trains
    preset["dit"].update(size="tiny", patch=2)
    preset["sedd"]["size"] = "tiny"
    return config.parse(micro, "micro params")


def test_the_stage_writes_run_folders_the_samplers_load(micro, monkeypatch, tmp_path):
    cfg = fixture_sized_config(micro, monkeypatch)
    dit_run = convert_authors.run(cfg, model="dit", weights="ema", out=tmp_path / "dit",
                                  checkpoint=FIXTURES / "dit_custom_checkpoint_0.pkl")
    model, meta = dit_module.load_dit(cfg.active.dit, dit_run, L, V)
    assert meta["latent_shape"] == [4, 8, 8] and meta["converted_from"]["weights"] == "ema"
    io = load_file(FIXTURES / "dit_io.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model(io["x"], io["t"], codes=io["codes"]), io["out_ema"],
                                   atol=TOLERANCE, rtol=0)
    sedd_run = convert_authors.run(cfg, model="sedd", weights="model", out=tmp_path / "sedd",
                                   checkpoint=FIXTURES / "sedd_checkpoint.pth")
    model, _ = sedd_module.load_sedd(cfg.active.sedd, sedd_run, L, V)
    io = load_file(FIXTURES / "sedd_io.safetensors")
    read = sedd_read_entries(io["indices"])
    with torch.no_grad():
        torch.testing.assert_close(model(io["indices"], io["sigma"])[read],
                                   io["out_model"][..., :V][read], atol=TOLERANCE, rtol=0)
    sem_run = convert_authors.run(cfg, model="sem", weights="ema", out=tmp_path / "sem",
                                  checkpoint=FIXTURES / "sem_teacher_checkpoint.pth")
    encoder = load_encoder(cfg.active.sem, sem_run / "encoder.safetensors")
    io = load_file(FIXTURES / "sem_io.safetensors")
    assert torch.equal(encoder.codes(io["images"]).long(), io["logits"].argmax(-1))


def test_a_checkpoint_of_other_sizes_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [str(BIN / "dlc"), "convert-authors", "--preset", "tiny", "--model", "dit",
         "--checkpoint", str(FIXTURES / "dit_model.safetensors"), "--weights", "model",
         "--out", str(tmp_path / "dit")], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "dit_model.safetensors: (depth, hidden, patch, learn_sigma, L, V)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "dit").exists()


def test_their_sem_teacher_gives_the_same_codes_embedding_and_patches(micro, monkeypatch):
    cfg = fixture_sized_config(micro, monkeypatch).active.sem
    io = load_file(FIXTURES / "sem_io.safetensors")
    teacher = torch.load(FIXTURES / "sem_teacher_checkpoint.pth", weights_only=True)["teacher"]
    encoder, scale_dropped = authors.sem_from_authors(
        teacher, build_encoder(cfg, pretrained=False), "fixture")
    assert scale_dropped == 0.0          # the fixture keeps their initial scale 1
    encoder.eval()
    with torch.no_grad():
        out = encoder(io["images"])
        logits = encoder.sem.logits(out["summary"])
        scores = encoder.dino_head(out["embedding"])
    torch.testing.assert_close(logits, io["logits"], atol=TOLERANCE, rtol=0)
    assert torch.equal(encoder.codes(io["images"]).long(), io["logits"].argmax(-1))
    for ours, theirs in ((out["embedding"], "embedding"), (out["patches"], "patches"),
                         (scores, "dino_scores")):
        torch.testing.assert_close(ours, io[theirs], atol=TOLERANCE, rtol=0)


def test_a_trained_dino_scale_is_reported_and_a_chunked_teacher_converts(micro, monkeypatch):
    cfg = fixture_sized_config(micro, monkeypatch).active.sem
    teacher = torch.load(FIXTURES / "sem_teacher_checkpoint.pth", weights_only=True)["teacher"]
    # block_chunks > 0 in their config names blocks.<chunk>.<i>: both blocks in chunk 0
    chunked = {re.sub(r"^backbone\.blocks\.(\d+)\.", r"backbone.blocks.0.\1.", key): value
               for key, value in teacher.items()}
    chunked["dino_head.last_layer.weight_g"] = chunked["dino_head.last_layer.weight_g"] * 1.5
    _, scale_dropped = authors.sem_from_authors(chunked, build_encoder(cfg, pretrained=False),
                                                "fixture")
    assert scale_dropped == pytest.approx(0.5)


def test_a_preset_with_another_sem_norm_epsilon_is_refused(micro, monkeypatch):
    cfg = fixture_sized_config(micro, monkeypatch).active.sem
    encoder = build_encoder(dataclasses.replace(cfg, norm_eps=1e-5), pretrained=False)
    teacher = torch.load(FIXTURES / "sem_teacher_checkpoint.pth", weights_only=True)["teacher"]
    with pytest.raises(authors.ConversionError, match="sem.norm_eps"):
        authors.sem_from_authors(teacher, encoder, "fixture")

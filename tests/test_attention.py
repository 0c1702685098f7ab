import pytest
import torch
import torch.nn.functional as F

from dlc.models.attention import attention, cpu_bf16
from dlc.train import distributed

from .test_models_sem import small_encoder

CPU = torch.device("cpu")


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_cpu_bf16_is_detected_only_inside_cpu_bf16_autocast():
    assert not cpu_bf16(CPU)
    with bf16():
        assert cpu_bf16(CPU)
        assert not cpu_bf16(torch.device("meta"))
    with torch.autocast("cpu", dtype=torch.float16):
        assert not cpu_bf16(CPU)


def test_written_out_attention_matches_sdpa_values_and_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 8, requires_grad=True) for _ in range(3))
    reference = F.scaled_dot_product_attention(q, k, v)
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), q)
    assert torch.equal(attention(q, k, v), reference)  # outside bf16: SDPA itself
    with bf16():
        written_out = attention(q, k, v)
    assert written_out.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits: a relative error of a few 1e-3 per product
    assert torch.allclose(written_out.float(), reference, atol=3e-2)
    (grad,) = torch.autograd.grad(written_out.float().square().sum(), q)
    assert torch.allclose(grad, grad_reference, atol=5e-2, rtol=5e-2)


def test_sem_encoder_switches_timm_attention_under_cpu_bf16_only():
    torch.manual_seed(0)
    encoder = small_encoder().eval()
    images = torch.randn(4, 3, 16, 16)
    reference = encoder.tokens(images)
    assert all(block.attn.fused_attn for block in encoder.backbone.blocks)
    with bf16():
        tokens = encoder.tokens(images)
        assert not any(block.attn.fused_attn for block in encoder.backbone.blocks)
    assert torch.allclose(tokens.float(), reference, atol=0.1)
    encoder.tokens(images)
    assert all(block.attn.fused_attn for block in encoder.backbone.blocks)


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, "fp32"),
                                                        (True, False, "bf16"),
                                                        (False, True, "bf16")])
def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_it_natively(
        monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert distributed.resolve_precision(CPU, "auto") == expected
    assert distributed.resolve_precision(CPU, "fp32") == "fp32"
    with distributed.autocast(CPU, "auto"):
        assert cpu_bf16(CPU) is (expected == "bf16")


@pytest.mark.parametrize("precision, enabled", [(None, False), ("fp32", False), ("bf16", True)])
def test_stage_autocast_on_cpu_follows_the_precision_param(precision, enabled):
    with distributed.autocast(CPU, precision):
        assert cpu_bf16(CPU) is enabled

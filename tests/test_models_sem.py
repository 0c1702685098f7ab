import pytest
import torch

from dlc.models.sem import DINOHead, SEMEncoder, SEMHead, build_backbone, code_dtype


def small_encoder(length=8, vocab=16, tau=1.0, reg_tokens=4):
    backbone = build_backbone("vit_small_patch16_224", 16, None, drop_path=0.0, patch_size=4,
                              embed_dim=32, depth=2, num_heads=2, reg_tokens=reg_tokens)
    return SEMEncoder(backbone, length, vocab, tau, 1e-5, prototypes=64, hidden=48,
                      bottleneck=16, layers=3)


def test_forward_shapes_and_simplex():
    torch.manual_seed(0)
    encoder = small_encoder()
    out = encoder(torch.randn(3, 3, 16, 16))
    assert out["probabilities"].shape == (3, 8, 16)
    assert torch.allclose(out["probabilities"].sum(-1), torch.ones(3, 8))
    assert out["embedding"].shape == (3, 32)
    assert out["patches"].shape == (3, 16, 32)
    assert out["summary"].shape == (3, 5 * 32)  # CLS + 4 registers concatenated
    assert encoder.dino_head(out["embedding"]).shape == (3, 64)
    assert encoder.features(torch.randn(3, 3, 16, 16)).shape == (3, 64)
    # local crops of another size go through the same backbone (resampled positions)
    assert encoder(torch.randn(2, 3, 8, 8))["patches"].shape == (2, 4, 32)


def test_codes_are_the_argmax_whatever_tau():
    torch.manual_seed(0)
    encoder = small_encoder().eval()
    images = torch.randn(5, 3, 16, 16)
    codes = encoder.codes(images)
    assert codes.dtype == torch.uint8 and codes.shape == (5, 8)
    for tau in (0.05, 1.0, 20.0):
        encoder.tau = tau
        assert torch.equal(encoder.encode(images).argmax(-1).to(torch.uint8), codes)
    # a lower tau sharpens the simplex: the max probability grows
    encoder.tau = 0.05
    sharp = encoder.encode(images).amax(-1)
    encoder.tau = 20.0
    assert (sharp > encoder.encode(images).amax(-1)).all()


def test_head_math_matches_its_definition():
    torch.manual_seed(0)
    head = SEMHead(in_dim=12, out_dim=6, length=3, vocab=5, norm_eps=1e-3)
    summary = torch.randn(4, 12)
    logits = torch.nn.functional.layer_norm(summary @ head.to_logits.weight.T, (15,),
                                            head.norm.weight, head.norm.bias, eps=1e-3)
    expected = torch.softmax(logits.view(4, 3, 5) / 0.5, -1)
    probabilities, embedding = head(summary, tau=0.5)
    assert torch.allclose(probabilities, expected, atol=1e-6)
    assert torch.allclose(embedding, expected.flatten(1) @ head.from_simplex.weight.T, atol=1e-6)


def test_head_at_paper_size_has_no_per_position_work():
    # L*V = 131072 as in the paper: three dense ops on (B, L*V), a batch goes through at once
    head = SEMHead(in_dim=10, out_dim=8, length=512, vocab=256, norm_eps=1e-6)
    probabilities, embedding = head(torch.randn(2, 10), tau=1.0)
    assert probabilities.shape == (2, 512, 256) and embedding.shape == (2, 8)


def test_code_dtype_follows_vocab():
    assert code_dtype(256) == torch.uint8
    assert code_dtype(1024) == torch.uint16
    assert code_dtype(4096) == torch.uint16
    assert code_dtype(70000) == torch.int32
    encoder = small_encoder(length=4, vocab=1024)
    assert encoder.codes(torch.randn(1, 3, 16, 16)).dtype == torch.uint16


def test_dino_head_scores_are_cosines():
    head = DINOHead(8, prototypes=10, hidden=16, bottleneck=4, layers=2)
    scores = head(torch.randn(6, 8))
    assert scores.shape == (6, 10) and scores.abs().max() <= 1 + 1e-6


def test_mask_token_replaces_patches():
    torch.manual_seed(0)
    encoder = small_encoder()
    images = torch.randn(2, 3, 16, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    assert torch.allclose(encoder(images, mask)["patches"], encoder(images)["patches"])
    mask[0, :8] = True
    out = encoder(images, mask)["patches"]
    assert not torch.allclose(out[0], encoder(images)["patches"][0])
    assert torch.allclose(out[1], encoder(images)["patches"][1], atol=1e-6)


def test_backbone_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        build_backbone("vit_small_patch16_224", 16, str(tmp_path / "nothing.safetensors"), 0.0)
    backbone = build_backbone("vit_small_patch16_224", 16, None, 0.0, patch_size=4,
                              embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="register tokens"):
        SEMEncoder(backbone, 4, 8, 1.0, 1e-5, 16, 16, 8, 2)


def test_conv_stem_keeps_the_token_grid_and_refuses_what_it_cannot_build(tmp_path):
    """log2(p) stride-2 convolutions make the patch embedding's grid at every crop size; a
    patch that is not a power of two, or pretrained weights, are refused by name."""
    kwargs = dict(patch_size=4, embed_dim=32, depth=1, num_heads=2, reg_tokens=2)
    plain = build_backbone("vit_small_patch16_224", 32, None, 0.0, **kwargs)
    stem = build_backbone("vit_small_patch16_224", 32, None, 0.0, stem_channels=8, **kwargs)
    convolutions = [m for m in stem.patch_embed.proj if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convolutions] == [(2, 2), (2, 2), (1, 1)]
    for side in (32, 16):
        images = torch.randn(2, 3, side, side)
        assert stem.forward_features(images).shape == plain.forward_features(images).shape
    with pytest.raises(ValueError, match="power-of-two patch size"):
        build_backbone("vit_small_patch16_224", 30, None, 0.0, stem_channels=8,
                       **{**kwargs, "patch_size": 6})
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="conv stem has no pretrained weights"):
        build_backbone("vit_small_patch16_224", 32, str(weights), 0.0, stem_channels=8,
                       **kwargs)

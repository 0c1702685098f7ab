"""The VAE helpers: scaling applied exactly once each way, uint8 conversion, PSNR, loading
from a local diffusers folder, and the train-vae stage (training, scaling factor, report)."""

import numpy as np
import pytest
import torch

from dlc import io as dio
from dlc.data.sources import ImageTable
from dlc.models import vae as vae_lib
from dlc.models.vae import weights_sha256
from dlc.stages import data, train_vae


@pytest.fixture
def small_vae(micro_config):
    torch.manual_seed(0)
    return vae_lib.build_vae(micro_config.active.vae.model, 32, scaling_factor=0.5).eval()


def test_scaling_factor_is_applied_once_each_way(small_vae):
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    latents = vae_lib.encode(small_vae, images, "mean")
    assert latents.shape == (3, 4, 16, 16)
    with torch.no_grad():
        mean = small_vae.encode(images).latent_dist.mean
        # in decode's batches of 2: with several threads a convolution's float sums depend on
        # the batch size, which would move a pixel by one level
        pixels = torch.cat([small_vae.decode(part / 0.5).sample for part in latents.split(2)])
    torch.testing.assert_close(latents, mean * 0.5)
    assert np.array_equal(vae_lib.decode(small_vae, latents, batch_size=2),
                          vae_lib.to_uint8(pixels))


def test_posterior_sample_uses_the_generator(small_vae):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = (vae_lib.encode(small_vae, images, "sample", torch.Generator().manual_seed(3))
            for _ in range(2))
    c = vae_lib.encode(small_vae, images, "sample", torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with torch.no_grad():
        posterior = small_vae.encode(images).latent_dist
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, (posterior.mean + posterior.std * noise) * 0.5)


def test_uint8_round_trip_and_psnr_closed_form():
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(vae_lib.to_uint8(vae_lib.to_model_range(images)), images)
    shifted = images.astype(np.int16) + 5
    shifted = np.clip(shifted, 0, 255).astype(np.uint8)
    mse = ((images.astype(float) - shifted) ** 2).reshape(4, -1).mean(1)
    np.testing.assert_allclose(vae_lib.psnr(images, shifted), 10 * np.log10(255 ** 2 / mse))


def test_load_from_a_local_folder_and_clear_errors(small_vae, tmp_path):
    small_vae.save_pretrained(tmp_path / "vae")
    loaded = vae_lib.load_vae(tmp_path / "vae")
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(vae_lib.encode(loaded, images, "mean"),
                               vae_lib.encode(small_vae, images, "mean"))
    assert vae_lib.scaling_factor(loaded) == 0.5
    with pytest.raises(FileNotFoundError, match="VAE folder not found"):
        vae_lib.load_vae(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        vae_lib.load_vae(tmp_path / "empty")


def test_train_vae_stage_trains_scales_and_reports(micro_config, tmp_path):
    preset = micro_config.active
    data.write_table(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    train_vae.train(preset.vae, tmp_path / "images.parquet", tmp_path / "vae")
    report = train_vae.evaluate(preset.vae, tmp_path / "images.parquet", tmp_path / "vae")
    assert (tmp_path / "vae" / "model" / "config.json").is_file()
    for name in ("vae.json", "vae_recon.png", "loss.csv", "loss.png"):
        assert (tmp_path / "vae" / name).is_file()
    assert report["latent_shape"] == [4, 16, 16] and report["n"] == 16
    assert report["vae_sha256"] == weights_sha256(str(tmp_path / "vae" / "model"))
    # the scaling factor makes the training latents unit-variance
    vae = vae_lib.load_vae(tmp_path / "vae" / "model")
    images, _ = ImageTable(tmp_path / "images.parquet", "train").centred_stack(32)
    latents = vae_lib.encode(vae, vae_lib.to_model_range(images[:200]), "sample",
                             torch.Generator().manual_seed(0))
    assert latents.std().item() == pytest.approx(1.0, rel=0.1)
    assert dio.read_json(tmp_path / "vae" / "vae.json")["scaling_factor"] == pytest.approx(
        vae_lib.scaling_factor(vae))


def test_bf16_training_loss_is_the_fp32_loss_within_bf16_rounding(micro_config):
    """vae.train.precision bf16 runs the network under autocast and keeps the loss in fp32:
    the same loss as fp32 up to bf16's 3 significant digits."""
    cfg = micro_config.active.vae
    torch.manual_seed(0)
    vae = vae_lib.build_vae(cfg.model, 32)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)  # the same posterior noise
        loss, _ = train_vae._loss(vae, images, cfg,
                                  torch.autocast("cpu", dtype=torch.bfloat16,
                                                 enabled=precision == "bf16"))
        assert loss.dtype == torch.float32
        losses[precision] = loss.item()
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)

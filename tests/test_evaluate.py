"""Feature spaces (Inception with the sFID hook, EfficientNet-Lite0, the judge registered with
torch-fidelity), the evaluate stage and the eta sweep's gathering, on micro data."""

import json

import numpy as np
import pytest
import torch

from dlc.data.sources import ImageTable
from dlc.metrics import evaluation
from dlc.metrics import features as features_lib
from dlc.metrics.frechet import frechet_distance_of_features
from dlc.metrics.inception import (
    SPATIAL_DIM,
    build_inception,
    inception_features,
    save_random_weights,
)
from dlc.stages import data, eta_curve, train_judge


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """torch-fidelity's Inception with random weights (the real file is not here)."""
    torch.manual_seed(0)
    return save_random_weights(tmp_path_factory.mktemp("inception") / "random_inception.pth")


def test_inception_gives_pool_logits_and_the_2023_d_sfid_features(random_inception_weights):
    model = build_inception(random_inception_weights, torch.device("cpu"))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    kept = []
    hook = model.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: kept.append(out))
    named = inception_features(model, images)
    hook.remove()
    assert named["pool"].shape == (2, 2048) and named["logits"].shape == (2, 1008)
    assert named["spatial"].shape == (2, SPATIAL_DIM) == (2, 2023)
    # ADM's order: the first 7 channels of the 17x17 map, flattened height, width, channel.
    expected = kept[0][:, :7].permute(0, 2, 3, 1).reshape(2, -1)
    torch.testing.assert_close(named["spatial"], expected)


def test_missing_inception_weights_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        build_inception(tmp_path / "nothing.pth", torch.device("cpu"))


def test_effnet_features_are_1280_d_deterministic_and_registered():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert FEATURE_EXTRACTORS_REGISTRY[features_lib.EFFNET_NAME] is \
        features_lib.EfficientNetLite0Features
    space = features_lib.build_feature_space("effnet", torch.device("cpu"),
                                             effnet_resolution=64)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    first, again = space.extract(images, 2), space.extract(images, 3)
    assert first["pool"].shape == (3, 1280)
    np.testing.assert_allclose(first["pool"], again["pool"], rtol=1e-5, atol=1e-5)
    assert len(space.weights_sha256) == 64


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    from dlc import config

    from .conftest import micro_params

    preset = config.parse(micro_params(), "micro params").active
    folder = tmp_path_factory.mktemp("judged")
    data.write_table(preset.data, folder / "images.parquet", folder / "report.json")
    train_judge.train(preset.judge, folder / "images.parquet", 32, folder / "judge")
    return preset, folder


def test_the_judge_space_agrees_with_torch_fidelity_through_its_registry(judged):
    import torch_fidelity

    preset, folder = judged
    table = ImageTable(folder / "images.parquet", "train")
    images, _ = table.centred_stack(32, limit=60)
    first, second = images[:30], images[30:]

    class Images(torch.utils.data.Dataset):
        def __init__(self, array):
            self.array = array

        def __len__(self):
            return len(self.array)

        def __getitem__(self, index):
            return torch.from_numpy(self.array[index]).permute(2, 0, 1).contiguous()

    theirs = torch_fidelity.calculate_metrics(
        input1=Images(first), input2=Images(second), fid=True, cuda=False, verbose=False,
        feature_extractor=features_lib.JUDGE_NAME,
        feature_extractor_weights_path=str(folder / "judge"), save_cpu_ram=True,
        cache=False)["frechet_inception_distance"]
    space = features_lib.build_feature_space("judge", torch.device("cpu"),
                                             judge_dir=folder / "judge")
    ours = frechet_distance_of_features(space.extract(first)["pool"],
                                        space.extract(second)["pool"])
    assert ours == pytest.approx(theirs, rel=1e-4)


def write_npz(path, images):
    np.savez(path, arr_0=images)
    return path


def test_the_reference_against_itself_is_perfect_and_its_features_are_cached(judged,
                                                                            monkeypatch):
    preset, folder = judged
    cfg = preset.evaluate
    reference, _ = ImageTable(folder / "images.parquet", "test").centred_stack(
        32, limit=cfg.reference_images)
    samples = write_npz(folder / "real.npz", reference)
    out = folder / "fid_real.json"
    result = evaluation.evaluate(cfg, "real", samples, out, folder / "images.parquet",
                                 folder / "judge", folder / "cache")
    assert json.loads(out.read_text()) == result
    assert result["n"] == cfg.samples and result["reference"]["n"] == cfg.reference_images
    assert set(result["metrics"]) == set(cfg.extractors)
    for space in cfg.extractors:
        metrics = result["metrics"][space]
        assert set(metrics) >= {"fd", "kid", "kid_std", "precision", "recall", "vendi",
                                "vendi_reference"}
        assert metrics["precision"] == 1.0 and metrics["vendi"] >= 1
        assert len(result["feature_extractors"][space]["weights_sha256"]) == 64
    assert {"params_sha256", "git_rev", "samples_sha256"} <= set(result)
    cached = sorted(p.name for p in (folder / "cache").iterdir())
    assert len(cached) == len(cfg.extractors)

    def no_reference_extraction(self, images, batch_size=250, desc=""):
        assert desc != "reference", "the cached reference features were not used"
        return real_extract(self, images, batch_size, desc)

    real_extract = features_lib.FeatureSpace.extract
    monkeypatch.setattr(features_lib.FeatureSpace, "extract", no_reference_extraction)
    again = evaluation.evaluate(cfg, "real", samples, out, folder / "images.parquet",
                                folder / "judge", folder / "cache")
    assert again["metrics"] == result["metrics"]


def test_bad_sample_files_are_refused_with_their_name(judged, tmp_path):
    preset, folder = judged
    cfg = preset.evaluate
    floats = write_npz(tmp_path / "floats.npz", np.zeros((20, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="floats.npz.*uint8"):
        evaluation.evaluate(cfg, "x", floats, tmp_path / "out.json", folder / "images.parquet",
                            folder / "judge")
    few = write_npz(tmp_path / "few.npz", np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="few.npz: 3 images"):
        evaluation.evaluate(cfg, "x", few, tmp_path / "out.json", folder / "images.parquet",
                            folder / "judge")
    assert not (tmp_path / "out.json").exists()


def fake_result(path, eta, fd, n=100, seed=0):
    metrics = {"judge": {"fd": fd, "kid": fd / 100, "kid_std": 0.01}}
    path.write_text(json.dumps({"n": n, "metrics": metrics,
                                "codes_sampler": {"remask_eta": eta, "seed": seed}}))
    return path


def test_the_sweep_averages_seeds_per_eta_and_finds_the_bottom_of_the_u(tmp_path):
    points = [(0.1, 0, 9.0), (0.0, 0, 7.0), (0.02, 0, 5.0), (0.02, 1, 6.0), (0.0, 1, 8.0),
              (0.1, 1, 9.0)]
    results = [fake_result(tmp_path / f"r{i}.json", eta, fd, seed=seed)
               for i, (eta, seed, fd) in enumerate(points)]
    summary = eta_curve.gather(results, tmp_path / "sweep.json", tmp_path / "sweep.png")
    assert len(summary["points"]) == 6 and summary["n"] == 100
    assert [c["remask_eta"] for c in summary["curve"]] == [0.0, 0.02, 0.1]
    assert [c["seeds"] for c in summary["curve"]] == [2, 2, 2]
    judge = summary["curve"][1]["metrics"]["judge"]
    assert judge["fd_mean"] == pytest.approx(5.5)
    assert judge["fd_std"] == pytest.approx(np.std([5.0, 6.0], ddof=1))
    assert judge["kid_mean"] == pytest.approx(0.055)
    assert summary["curve"][2]["metrics"]["judge"]["fd_std"] == 0.0
    assert summary["best_remask_eta"] == {"judge": 0.02}
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    mixed = fake_result(tmp_path / "mixed.json", 0.5, 1.0, n=50)
    with pytest.raises(ValueError, match="sample counts"):
        eta_curve.gather([*results, mixed], tmp_path / "s.json", tmp_path / "s.png")
    (tmp_path / "real.json").write_text(json.dumps({"n": 100, "metrics": {}}))
    with pytest.raises(ValueError, match="real.json.*remask_eta"):
        eta_curve.gather([tmp_path / "real.json"], tmp_path / "s.json", tmp_path / "s.png")


def test_an_adm_reference_batch_gives_fid_sfid_and_is_from_its_own_statistics(
        judged, random_inception_weights, tmp_path):
    """With an ADM batch, FID and sFID use its mu/sigma (not features of its arr_0), as ADM's
    evaluator does; precision/recall use arr_0's features."""
    import dataclasses

    from dlc.metrics.frechet import frechet_distance, statistics

    preset, folder = judged
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    batch = tmp_path / "VIRTUAL_tiny.npz"
    np.savez(batch, arr_0=images, mu=np.zeros(2048), sigma=np.eye(2048),
             mu_s=np.ones(2023), sigma_s=2 * np.eye(2023))
    cfg = dataclasses.replace(preset.evaluate, extractors=["inception"], reference_split=None,
                              reference_batch=str(batch), reference_images=12, samples=10,
                              isc_splits=2, inception_weights=str(random_inception_weights))
    samples = write_npz(tmp_path / "samples.npz", images[::-1].copy())
    result = evaluation.evaluate(cfg, "dlc", samples, tmp_path / "fid.json")
    metrics = result["metrics"]["inception"]
    assert result["reference"]["statistics"] == "reference batch"
    assert {"fid", "sfid", "inception_score", "precision", "recall"} <= set(metrics)
    space = features_lib.build_feature_space(
        "inception", torch.device("cpu"), inception_weights=random_inception_weights)
    generated = space.extract(images[::-1][:10])
    assert metrics["fid"] == pytest.approx(
        frechet_distance(*statistics(generated["pool"]), np.zeros(2048), np.eye(2048)),
        rel=1e-6)
    assert metrics["sfid"] == pytest.approx(
        frechet_distance(*statistics(generated["spatial"]), np.ones(2023), 2 * np.eye(2023)),
        rel=1e-6)


def test_floors_are_real_images_of_another_split_and_their_reconstructions(judged, tmp_path):
    from dlc.models import vae as vae_lib
    from dlc.stages import real_samples

    preset, folder = judged
    cfg = preset.evaluate
    real = real_samples.write_samples(cfg, preset.vae, folder / "images.parquet", tmp_path / "real")
    expected, _ = ImageTable(folder / "images.parquet", cfg.floor_split).centred_stack(
        32, limit=cfg.samples)
    stored = np.load(tmp_path / "real" / "samples.npz")["arr_0"]
    assert real["kind"] == "real" and np.array_equal(stored, expected)
    torch.manual_seed(0)
    vae_lib.build_vae(preset.vae.model, 32).save_pretrained(tmp_path / "vae" / "model")
    recon = real_samples.write_samples(cfg, preset.vae, folder / "images.parquet",
                                       tmp_path / "recon", tmp_path / "vae")
    reconstructed = np.load(tmp_path / "recon" / "samples.npz")["arr_0"]
    assert recon["kind"] == "vae" and reconstructed.shape == expected.shape
    assert reconstructed.dtype == np.uint8 and not np.array_equal(reconstructed, expected)

"""The paper's Section 3 study: diffusion models fit a K-mode mixture badly unless they are told
which mode to generate.

For each K and each variant (unconditional; conditioned on the true component, "oracle";
conditioned on the component a fitted GMM infers, "gmm") an MLP denoiser is trained with
improved DDPM on fresh mixture samples, sampled, and scored against the known density.

As in the paper, every K keeps the same component std and spacing, so the data spread grows
with K; `toy.normalize` instead divides by the mixture's std (samples are scaled back to measure).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import ToyConfig, to_dict
from dlc.data.gaussian_grid import GaussianGrid
from dlc.diffusion.gaussian import GaussianDiffusion
from dlc.metrics.kl import kde_kl, knn_kl, mode_coverage
from dlc.models.gmm import FittedGMM
from dlc.models.mlp import MLPDenoiser
from dlc.train import checkpoint
from dlc.train.ema import make_ema, update_ema
from dlc.train.schedules import lr_schedule

log = logging.getLogger(__name__)

VARIANTS = ("unconditional", "oracle", "gmm")


def _seed(cfg: ToyConfig, modes: int, purpose: str) -> np.random.SeedSequence:
    """Independent, reproducible streams per (seed, K, purpose)."""
    purpose_key = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    return np.random.SeedSequence([cfg.seed, modes, purpose_key])


def _training_params(cfg: ToyConfig, modes: int, variant: str) -> dict:
    """Everything that determines a trained model (the eval settings do not)."""
    settings = to_dict(cfg)
    keys = ("std", "spacing", "normalize", "seed", "model", "diffusion", "train", "gmm")
    return {"modes": modes, "variant": variant, **{k: settings[k] for k in keys}}


def build_model(cfg: ToyConfig, modes: int, variant: str) -> MLPDenoiser:
    return MLPDenoiser(data_dim=2, width=cfg.model.width, depth=cfg.model.depth,
                       num_classes=0 if variant == "unconditional" else modes,
                       learn_sigma=cfg.diffusion.learn_sigma, style=cfg.model.style)


def build_diffusion(cfg: ToyConfig) -> GaussianDiffusion:
    return GaussianDiffusion.from_schedule(
        cfg.diffusion.schedule, cfg.diffusion.steps, learn_sigma=cfg.diffusion.learn_sigma,
        vlb_weight=cfg.diffusion.vlb_weight, decoder="gaussian")


def fit_gmm(cfg: ToyConfig, grid: GaussianGrid, scale: float) -> FittedGMM:
    """A K-component GMM fitted by EM on unlabelled mixture samples (in model units)."""
    points, _ = grid.sample(cfg.gmm.fit_samples * grid.modes,
                            np.random.default_rng(_seed(cfg, grid.modes, "gmm-data")))
    return FittedGMM.fit(points / scale, grid.modes, cfg.gmm.max_iter, cfg.gmm.n_init, cfg.seed)


def _condition(variant: str, component: np.ndarray, x0: np.ndarray,
               gmm: FittedGMM | None) -> dict:
    """The model's keyword arguments: no label, the true component, or the GMM's."""
    if variant == "oracle":
        return {"y": torch.from_numpy(component)}
    if variant == "gmm":
        return {"y": torch.from_numpy(gmm.assign(x0))}
    return {}


def train(cfg: ToyConfig, modes: int, variant: str, out_dir: str | Path,
          checkpoint_every: int = 500) -> Path:
    """Train one denoiser; write out_dir/{model.safetensors (EMA), meta.json, loss.csv}.

    Resumes exactly from out_dir/checkpoints when the same params made them."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    out_dir = Path(out_dir)
    torch.set_num_threads(cfg.train.threads)
    params = _training_params(cfg, modes, variant)
    params_sha = dio.sha256_json(params)
    grid = GaussianGrid(modes, cfg.std, cfg.spacing)
    scale = grid.data_std if cfg.normalize else 1.0

    gmm = fit_gmm(cfg, grid, scale) if variant == "gmm" else None
    torch.manual_seed(int(_seed(cfg, modes, "init").generate_state(1)[0]))
    model = build_model(cfg, modes, variant)
    ema = make_ema(model)
    diffusion = build_diffusion(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=0.0)
    scheduler = lr_schedule(optimizer, cfg.train.lr_schedule, cfg.train.warmup_steps,
                            cfg.train.steps)
    data_rng = np.random.default_rng(_seed(cfg, modes, f"train-{variant}"))
    history: list[dict] = []
    start = 0

    state = checkpoint.load_latest(out_dir / "checkpoints", model, ema, params_sha)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        data_rng.bit_generator.state = state["data_rng"]
        history, start = state["history"], state["step"]

    log_every = max(1, cfg.train.steps // 100)
    progress = tqdm(range(start, cfg.train.steps), desc=f"K={modes} {variant}",
                    initial=start, total=cfg.train.steps, mininterval=5)
    for step in progress:
        points, component = grid.sample(cfg.train.batch_size, data_rng)
        x0 = points / scale
        t = torch.randint(0, diffusion.num_timesteps, (len(x0),))
        terms = diffusion.training_losses(model, torch.from_numpy(x0).float(), t,
                                          **_condition(variant, component, x0, gmm))
        loss = terms["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        update_ema(ema, model, cfg.train.ema_decay)

        if (step + 1) % log_every == 0 or step + 1 == cfg.train.steps:
            row = {"step": step + 1, **{k: v.detach().mean().item() for k, v in terms.items()}}
            history.append(row)
            progress.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        if (step + 1) % checkpoint_every == 0 and step + 1 < cfg.train.steps:
            checkpoint.save(out_dir / "checkpoints", step + 1, model, ema,
                            {"optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(),
                             "data_rng": data_rng.bit_generator.state, "history": history},
                            params_sha)

    checkpoint.save_weights(out_dir / "model.safetensors", ema)
    dio.write_csv(out_dir / "loss.csv", history)
    dio.write_json(out_dir / "meta.json", {
        **params, "data_scale": scale, "samples_seen": cfg.train.steps * cfg.train.batch_size,
        "final_loss": history[-1] if history else None,
        "gmm": gmm.to_json() if gmm is not None else None, **dio.run_metadata(params)})
    log.info("K=%d %s: trained %d steps -> %s", modes, variant, cfg.train.steps, out_dir)
    return out_dir


def load_trained(cfg: ToyConfig, model_dir: str | Path):
    """(EMA model, meta) of a trained run; fails naming the folder if it does not match cfg."""
    model_dir = Path(model_dir)
    meta = dio.read_json(model_dir / "meta.json")
    model = build_model(cfg, meta["modes"], meta["variant"])
    weights = model_dir / "model.safetensors"
    return checkpoint.load_weights(model, weights, "toy.model in the params"), meta


@torch.no_grad()
def sample(cfg: ToyConfig, model: MLPDenoiser, meta: dict, n: int,
           seed: np.random.SeedSequence) -> np.ndarray:
    """n points from a trained model (mode index drawn from its prior), in data units."""
    label_rng = np.random.default_rng(seed.spawn(1)[0])
    generator = torch.Generator().manual_seed(int(seed.generate_state(1)[0]))
    kwargs = {}
    if meta["variant"] == "oracle":
        kwargs["y"] = torch.from_numpy(label_rng.integers(0, meta["modes"], size=n))
    elif meta["variant"] == "gmm":
        weights = np.array(meta["gmm"]["weights"])
        labels = label_rng.choice(len(weights), size=n, p=weights / weights.sum())
        kwargs["y"] = torch.from_numpy(labels)
    process = build_diffusion(cfg).respaced(cfg.eval.sampling_steps)
    # Predicted x_0 is bounded by the data's support (every centre plus 6 std), in model units.
    grid = GaussianGrid(meta["modes"], cfg.std, cfg.spacing)
    support = (np.abs(grid.centres).max() + 6 * cfg.std) / meta["data_scale"]
    x = process.p_sample_loop(model, (n, 2), generator=generator, clip_x0=support, **kwargs)
    return x.double().numpy() * meta["data_scale"]


def evaluate(cfg: ToyConfig, model_dir: str | Path, out_dir: str | Path) -> dict:
    """Sample a trained model, score it with every metric and its floor; write
    out_dir/metrics.json and out_dir/samples.npy."""
    torch.set_num_threads(cfg.train.threads)
    model, meta = load_trained(cfg, model_dir)
    modes, variant = meta["modes"], meta["variant"]
    grid = GaussianGrid(modes, cfg.std, cfg.spacing)
    n = cfg.eval.samples
    samples = sample(cfg, model, meta, n, _seed(cfg, modes, f"sample-{variant}"))

    # The same fresh true points for every variant of one K, so variants compare on equal terms.
    truth_rng = np.random.default_rng(_seed(cfg, modes, "eval"))
    eval_points = grid.sample(n, truth_rng)[0]
    reference = grid.sample(n, truth_rng)[0]      # true samples standing in for a perfect model
    eval_log_prob = grid.log_prob(eval_points)

    kde = kde_kl(eval_log_prob, eval_points, samples)
    kde_floor = kde_kl(eval_log_prob, eval_points, reference)
    knn = knn_kl(eval_points, samples, cfg.eval.knn_k)
    knn_floor = knn_kl(eval_points, reference, cfg.eval.knn_k)
    coverage = mode_coverage(samples, grid.centres, cfg.std, cfg.eval.off_mode_stds)
    coverage_floor = mode_coverage(reference, grid.centres, cfg.std, cfg.eval.off_mode_stds)
    metrics = {
        "modes": modes, "variant": variant,
        "kde_kl": kde, "kde_kl_floor": kde_floor, "kde_kl_excess": kde - kde_floor,
        "knn_kl": knn, "knn_kl_floor": knn_floor, "knn_kl_excess": knn - knn_floor,
        **coverage, **{f"{k}_floor": v for k, v in coverage_floor.items()},
        "n": n, "sampling_steps": cfg.eval.sampling_steps, "knn_k": cfg.eval.knn_k,
        "samples_seen": meta["samples_seen"], "seed": cfg.seed,
        "model_sha256": dio.sha256_file(Path(model_dir) / "model.safetensors"),
    }
    out_dir = Path(out_dir)
    with dio.atomic_path(out_dir / "samples.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, samples.astype(np.float32))
    dio.write_json(out_dir / "metrics.json", metrics)
    log.info("K=%d %s: KDE KL %.3f (floor %.3f), kNN KL %.3f (floor %.3f), off-mode %.1f%%",
             modes, variant, kde, kde_floor, knn, knn_floor, 100 * coverage["off_mode_fraction"])
    return metrics

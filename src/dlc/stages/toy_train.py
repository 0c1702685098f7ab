"""Stage `toy-train`: one denoiser of the paper's Section 3 study.
The paper's Section 3 study: diffusion models fit a K-mode mixture badly unless they are told
which mode to generate.

For each K and each variant (unconditional; conditioned on the true component, "oracle";
conditioned on the component a fitted GMM infers, "gmm") an MLP denoiser is trained with
improved DDPM on fresh mixture samples, sampled, and scored against the known density.

As in the paper, every K keeps the same component std and spacing, so the data spread grows
with K; `toy.normalize` instead divides by the mixture's std (samples are scaled back to measure).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, ToyConfig, to_dict
from dlc.data.gaussian_grid import GaussianGrid
from dlc.generation.toy import VARIANTS, build_diffusion, build_model, seed_stream
from dlc.models.gmm import FittedGMM
from dlc.train import checkpoint
from dlc.train.ema import make_ema, update_ema
from dlc.train.schedules import lr_schedule

log = logging.getLogger(__name__)


def run(cfg: Config, *, modes: int, variant: str, out: str | Path) -> Path:
    """`dlc toy-train`: train the `variant` denoiser of the K = `modes` mixture into `out`."""
    return train(cfg.toy, modes, variant, out)


def _training_params(cfg: ToyConfig, modes: int, variant: str) -> dict:
    """Everything that determines a trained model (the eval settings do not)."""
    settings = to_dict(cfg)
    keys = ("std", "spacing", "normalize", "seed", "model", "diffusion", "train", "gmm")
    return {"modes": modes, "variant": variant, **{k: settings[k] for k in keys}}


def fit_gmm(cfg: ToyConfig, grid: GaussianGrid, scale: float) -> FittedGMM:
    """A K-component GMM fitted by EM on unlabelled mixture samples (in model units)."""
    points, _ = grid.sample(cfg.gmm.fit_samples * grid.modes,
                            np.random.default_rng(seed_stream(cfg, grid.modes, "gmm-data")))
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
    torch.manual_seed(int(seed_stream(cfg, modes, "init").generate_state(1)[0]))
    model = build_model(cfg, modes, variant)
    ema = make_ema(model)
    diffusion = build_diffusion(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=0.0)
    scheduler = lr_schedule(optimizer, cfg.train.lr_schedule, cfg.train.warmup_steps,
                            cfg.train.steps)
    data_rng = np.random.default_rng(seed_stream(cfg, modes, f"train-{variant}"))
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

"""Stage `report`: one run of a preset, read back from the files its stages wrote, as
results/<preset>/report.md with its figures in results/<preset>/report/, plus report.json (the
headline numbers, flat, for `dvc metrics show`) and eta_curve.csv (for `dvc plots show`).

Nothing is measured here: every number is copied from a results JSON of the run (their paths are
the contract between stages, `INPUTS`), and the stage times from the last "done in" line of
each job's log. A missing input is an error that names it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import platform
import re
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np

from dlc import io as dio
from dlc.config import Config

log = logging.getLogger(__name__)

# What the report reads, relative to results/<preset>/ ("toy/..." relative to results/).
INPUTS = {
    "toy": "toy/kld.json",
    "probe": "probe.json",
    "judge": "judge/judge.json",
    "vae": "vae/vae.json",
    "sedd": "sedd/samples.json",
    "decoded": "dit/decoded/samples.json",
    "fid_dlc": "fid_dlc.json",
    "fid_encode_decode": "fid_encode_decode.json",
    "fid_unconditional": "fid_unconditional.json",
    "fid_real": "fid_real.json",
    "fid_vae": "fid_vae.json",
    "eta": "fid_eta_sweep.json",
    "composition": "composition.json",
    "text": "text2code.json",
}
# Figures copied beside the report: name in report/ <- path as in INPUTS.
FIGURES = {
    "toy_kld.png": "toy/kld_vs_modes.png",
    "vae_reconstructions.png": "vae/vae_recon.png",
    "sedd_marginals.png": "sedd/marginals.png",
    "decoded.png": "dit/decoded/grid.png",
    "generated_dlc.png": "generate/dlc/grid.png",
    "generated_unconditional.png": "generate/unconditional/grid.png",
    "eta_sweep.png": "fid_eta_sweep.png",
    "composition.png": "composition_grid.png",
    "position_map.png": "position_map.png",
    "text2code.png": "text2code_grid.png",
    "text2code_novelty.png": "text2code_novelty.png",
}
GENERATION_ROWS = ("dlc", "encode_decode", "unconditional", "vae", "real")
DONE = re.compile(r"^(\S+ \S+) INFO dlc: dlc (\S+) done in ([\d.]+) s")


def run(cfg: Config, *, results: str | Path, logs: str | Path, params: str | Path,
        out: str | Path) -> dict:
    """`dlc report`: the run in `results` (with its job logs in `logs` and its params file
    `params`) as report.md at `out`."""
    return write(cfg.preset, results, logs, params, out)


def _path(results: Path, relative: str) -> Path:
    return results.parent / relative if relative.startswith("toy/") else results / relative


def _inputs(results: Path) -> dict[str, dict]:
    missing = [str(_path(results, p)) for p in [*INPUTS.values(), *FIGURES.values()]
               if not _path(results, p).is_file()]
    if missing:
        raise FileNotFoundError(f"report: missing inputs {missing} (run the stages that make "
                                f"them first)")
    return {name: dio.read_json(_path(results, relative)) for name, relative in INPUTS.items()}


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def stage_times(logs: list[Path]) -> list[dict]:
    """Each job's last "dlc <stage> done in <s> s" line: job (log name), stage, seconds, end."""
    rows = []
    for path in sorted(logs):
        last = None
        for line in path.read_text(errors="replace").splitlines():
            if match := DONE.match(line):
                last = match
        if last is not None:
            end = datetime.strptime(last[1], "%Y-%m-%d %H:%M:%S,%f")
            rows.append({"job": f"{path.parent.name}/{path.stem}", "stage": last[2],
                         "seconds": float(last[3]), "end": end})
    return rows


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _claims(data: dict) -> tuple[list[str], dict]:
    """The paper's claims on this run, each with its numbers and whether it holds, in the
    judge's feature space where the preset has a judge (the built-in data), else Inception's
    (ImageNet: FID)."""
    spaces = data["fid_dlc"]["metrics"]
    space = "judge" if "judge" in spaces else next(iter(spaces))
    fd = _fd_key(spaces[space])
    name = f"{space} {fd.upper() if fd == 'fid' else 'FD'}"
    value = {row: data[f"fid_{row}"]["metrics"][space][fd] for row in GENERATION_ROWS}
    effnet = {row: data[f"fid_{row}"]["metrics"].get("effnet") for row in GENERATION_ROWS}
    ratio = value["dlc"] / value["unconditional"]
    gap_to_encode_decode = value["dlc"] / value["encode_decode"] - 1
    headline = {f"{space}_{fd}_dlc": value["dlc"],
                f"{space}_{fd}_unconditional": value["unconditional"],
                f"{space}_{fd}_encode_decode": value["encode_decode"],
                f"{space}_{fd}_ratio_dlc_unconditional": ratio,
                f"{space}_{fd}_dlc_over_encode_decode": gap_to_encode_decode}
    lines = [f"- DLC generation against the unconditional DiT, {name}: "
             f"{value['dlc']:.2f} / {value['unconditional']:.2f} = **{ratio:.2f}** "
             f"(the claim: at most 0.5; {'holds' if ratio <= 0.5 else 'does not hold'}).",
             f"- DLC generation against encode-decode (real codes), {name}: "
             f"{value['dlc']:.2f} against {value['encode_decode']:.2f}, "
             f"**{100 * gap_to_encode_decode:+.0f}%** (the claim: within 15%; "
             f"{'holds' if abs(gap_to_encode_decode) <= 0.15 else 'does not hold'})."]
    if effnet["dlc"] is not None:
        d, u = effnet["dlc"], effnet["unconditional"]
        spread = float(np.hypot(d["kid_std"], u["kid_std"]))
        gap = (u["kid"] - d["kid"]) / spread
        headline.update(effnet_kid_dlc=d["kid"], effnet_kid_unconditional=u["kid"],
                        effnet_kid_gap_in_std=gap)
        lines.append(f"- EfficientNet KID: DLC {d['kid']:.4f} ± {d['kid_std']:.4f}, "
                     f"unconditional {u['kid']:.4f} ± {u['kid_std']:.4f}: DLC lower by "
                     f"**{gap:.1f}** combined std (the claim: at least 2; "
                     f"{'holds' if gap >= 2 else 'does not hold'}).")
    return lines + [""], headline


def _fd_key(metrics: dict) -> str:
    """The Frechet distance's key in one space's metrics (fid in Inception space, else fd)."""
    return "fid" if "fid" in metrics else "fd"


def _generation_table(data: dict) -> list[str]:
    lines = []
    for space, metrics in data["fid_dlc"]["metrics"].items():
        fd = _fd_key(metrics)
        rows = []
        for name in GENERATION_ROWS:
            m = data[f"fid_{name}"]["metrics"][space]
            rows.append([name, m[fd], f"{m['kid']:.4f} ± {m['kid_std']:.4f}", m["precision"],
                         m["recall"], m["vendi"]])
        lines += [f"{space} features (n = {data['fid_dlc']['n']}):", ""]
        lines += _table(["samples", fd.upper(), "KID", "precision", "recall", "Vendi"], rows)
    return lines


def _decoded_table(data: dict) -> tuple[list[str], dict]:
    scores = data["decoded"].get("attributes", {"skipped": "no judge scored them"})
    if "match" not in scores:        # ImageNet: no attributes to read back
        return [f"Not measured: {scores['skipped']}.", ""], {}
    probe = data["probe"]["top1"]
    attributes = [a for a in scores["match"] if a != "all"]
    columns = [("DiT decoded", scores["match"]), ("VAE reconstruction",
                                                  scores.get("judge_on_vae", {})),
               ("source image", scores.get("judge_on_sources", {})),
               ("chance", scores["chance"])]
    rows = [[a] + [values.get(a, "-") for _, values in columns]
            + [probe.get(a, {}).get("codes", "-")] for a in attributes + ["all"]]
    headline = {f"decoded_{a}": scores["match"][a] for a in attributes + ["all"]}
    headline.update({f"vae_ceiling_{a}": scores["judge_on_vae"][a]
                     for a in attributes if "judge_on_vae" in scores})
    return _table(["attribute"] + [c for c, _ in columns] + ["probe on codes"], rows), headline


def _eta_table(eta: dict) -> tuple[list[str], list[dict]]:
    spaces = list(eta["curve"][0]["metrics"])
    header, rows, curve = ["eta", "seeds"], [], []
    for space in spaces:
        header += [f"{space} {'FID' if space == 'inception' else 'FD'}", f"{space} KID"]
    for point in eta["curve"]:
        row = [point["remask_eta"], point["seeds"]]
        flat = {"remask_eta": point["remask_eta"]}
        for space in spaces:
            m = point["metrics"][space]
            row += [f"{m['fd_mean']:.2f} ± {m['fd_std']:.2f}",
                    f"{m['kid_mean']:.4f} ± {m['kid_std']:.4f}"]
            flat.update({f"{space}_fd": m["fd_mean"], f"{space}_fd_std": m["fd_std"],
                         f"{space}_kid": m["kid_mean"], f"{space}_kid_std": m["kid_std"]})
        rows.append(row)
        curve.append(flat)
    lines = [f"n = {eta['n']} images per seed; mean ± std over seeds.", ""]
    return lines + _table(header, rows), curve


def _toy_table(toy: dict) -> list[str]:
    rows = []
    for key, variants in toy["results"].items():
        for variant, r in variants.items():
            rows.append([key.removeprefix("K"), variant, r["kde_kl_excess"], r["knn_kl"],
                         r["knn_kl_floor"], r["off_mode_fraction"]])
    return _table(["K", "variant", "KDE KL excess", "kNN KL", "kNN floor",
                   "off-mode fraction"], rows)


def _composition_table(composition: dict) -> list[str]:
    if "skipped" in composition:
        return [composition["skipped"], ""]
    def rate(scores: dict, key: str) -> str:
        if key not in scores:
            return "-"
        low, high = scores[f"{key}_ci"]
        return f"{scores[key]:.3f} [{low:.3f}, {high:.3f}]"

    rows = [[method, rate(s, "novel"), rate(s, "mixing"), s["vendi"]]
            for method, s in composition["methods"].items()]
    where = composition.get("attribute_positions")
    transplant = [] if where is None else [
        f"dlc_attribute takes the {len(where['positions'])} positions where "
        f"{where['attribute']} has the most information from {where['source']}, the rest "
        f"from the other source.", ""]
    return [f"{composition['pairs']} source pairs x {composition['samples_per_pair']} images "
            f"per method (held-out combinations of {composition['source_split']}); 95% "
            "Wilson intervals in brackets.", "", *transplant] + \
        _table(["method", "held-out combination made", "mixes A and B", "Vendi per pair"],
               rows)


def _text_table(text: dict) -> list[str]:
    if "skipped" in text:
        return [text["skipped"], ""]
    groups = [g for g in ("held_out", "seen", "paraphrase") if g in text]
    columns = list(dict.fromkeys(a for g in groups for a in text[g]
                                 if a not in ("shape_and_colour", "all")))
    columns += [a for a in ("shape_and_colour", "all") if any(a in text[g] for g in groups)]

    def by_group(scores: dict) -> list[str]:   # one row per prompt group the scores have
        return _table(["prompts"] + columns, [[g] + [scores[g].get(a, "-") for a in columns]
                                              for g in groups if g in scores])

    lines = [f"{text['samples_per_prompt']} codes per prompt, judged against what the prompt "
             "asks (paraphrase: words no training caption has; each scored on the attributes "
             "it names).", ""] + by_group(text)
    read = text.get("read_from_codes")
    if read:
        lines += ["Read from the written codes by linear probes trained on the training codes, "
                  "before the DiT draws them (what the text model got right):", ""] + by_group(read)
    blind = text.get("prompt_blind")
    if blind:
        lines += ["Prompt-blind level: the scores of a model that ignores the prompt and draws "
                  "what this one drew over the whole study, at the same rates (a text model "
                  "follows its prompts only where it is above this row):", ""] + by_group(blind)
    for p in text.get("per_paraphrase", []):
        lines.append(f"- \"{p['prompt']}\" (unseen: {', '.join(p['unseen_words']) or 'none'}): "
                     + ", ".join(f"{a} {v:.2f}" for a, v in p.items()
                                 if a not in ("prompt", "unseen_words")))
    novelty = text.get("novelty")
    if novelty:
        floor = next(k for k in novelty if k.startswith("floor"))
        names = [floor] + [g for g in groups if g in novelty]
        lines += ["", f"Novelty: distance of each image to its nearest training image "
                  f"({novelty['pool']}) in judge features, and of its code to the nearest "
                  "training code (positions that differ); the floor is real images of that "
                  "split.", ""] + _table(
            ["images", "judge distance", "code Hamming", "exact code copies"],
            [[n, novelty[n]["judge_distance"], novelty[n]["code_hamming"],
              novelty[n]["exact_code_copies"]] for n in names])
    return lines


def _times_table(times: list[dict]) -> tuple[list[str], dict]:
    if not times:
        return ["No job logs found.", ""], {}
    by_stage: dict[str, list[float]] = {}
    for row in times:
        by_stage.setdefault(row["stage"], []).append(row["seconds"])
    rows = [[stage, len(seconds), sum(seconds)]
            for stage, seconds in sorted(by_stage.items(), key=lambda kv: -sum(kv[1]))]
    total = sum(row["seconds"] for row in times)
    busy = _busy_seconds([(row["end"].timestamp() - row["seconds"], row["end"].timestamp())
                          for row in times])
    lines = [f"{len(times)} jobs, {total:.0f} s of job time; some job was running for "
             f"**{busy / 60:.1f} min** (the union of the jobs' intervals: jobs side by side "
             "count once, and the time between runs, when results are kept from an earlier "
             "one, and the environment's set-up are not in it).", ""]
    return lines + _table(["stage", "jobs", "seconds"], rows), {"jobs_seconds": total,
                                                                  "busy_minutes": busy / 60}


def _busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals."""
    busy, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        busy += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    return busy


def write(preset: str, results: str | Path, logs: str | Path, params: str | Path,
          out: str | Path) -> dict:
    """results/<preset>/report.md (+ report/, report.json, eta_curve.csv) from a finished run;
    `logs` holds one folder of job logs per preset (and toy/), `params` is the run's params
    file (its hash goes in the header)."""
    results, logs, out = Path(results), Path(logs), Path(out)
    data = _inputs(results)
    figures = out.parent / "report"
    figures.mkdir(parents=True, exist_ok=True)
    for name, relative in FIGURES.items():
        shutil.copyfile(_path(results, relative), figures / name)
    times = stage_times([*(logs / preset).glob("*.log"), *(logs / "toy").glob("*.log")])
    claims, headline = _claims(data)
    decoded, decoded_headline = _decoded_table(data)
    eta_lines, curve = _eta_table(data["eta"])
    time_lines, time_headline = _times_table(times)
    sedd, vae = data["sedd"], data["vae"]
    text = [
        f"# dlc study report: preset `{preset}`", "",
        f"Code {data['decoded'].get('git_rev') or 'outside git'}, {params} sha256 "
        f"{dio.sha256_file(params)[:16]}, {_cpu_model()} ({os.cpu_count()} cores), written "
        f"{datetime.now():%Y-%m-%d %H:%M}. Every number below is read from this run's "
        f"results files.", "",
        "## The claims", "", *claims,
        "## Section 3: diffusion on a grid of K Gaussians", "", *_toy_table(data["toy"]),
        "![KL against K](report/toy_kld.png)", "",
        "## What the codes hold: linear probe", "",
        *_table(["target", "codes", "encoder features"],
                [[t, r["codes"], r.get("features", "-")]
                 for t, r in data["probe"]["top1"].items()]),
        "## VAE", "",
        f"PSNR of held-out reconstructions (posterior mean): "
        f"{vae['reconstruction']['mean']['psnr_mean']:.2f} dB on {vae['n']} images.", "",
        "![originals above reconstructions](report/vae_reconstructions.png)", "",
        "## SEDD: generated codes", "",
        *_table(["", "generated", "held-out real codes (floor)"],
                [["per-position TV", sedd["tv_per_position"], sedd["tv_per_position_floor"]],
                 ["nearest training code (Hamming)", sedd["nearest_train_hamming"],
                  sedd["nearest_train_hamming_floor"]]]),
        "![token marginals](report/sedd_marginals.png)", "",
        "## Does the image follow its code? Decoded test codes", "",
        f"Share of the {data['decoded']['n']} images decoded from real test codes whose "
        f"attribute the judge reads as the source image's.", "", *decoded,
        "![sources above images decoded from their codes](report/decoded.png)", "",
        "## Generation", "", *_generation_table(data),
        "![DLC generation](report/generated_dlc.png)", "",
        "![unconditional DiT](report/generated_unconditional.png)", "",
        "## Remasking strength eta", "", *eta_lines,
        "![distance against eta](report/eta_sweep.png)", "",
        "## Composition", "", *_composition_table(data["composition"]),
        "![composition](report/composition.png)", "",
        "![where each attribute lives in the code](report/position_map.png)", "",
        "## Text -> code", "", *_text_table(data["text"]),
        "![text -> code](report/text2code.png)", "",
        "![samples beside their nearest training images](report/text2code_novelty.png)", "",
        "## Time", "", *time_lines]
    dio.write_bytes(out, "\n".join(text).encode())
    headline.update(decoded_headline, **time_headline,
                    probe_shape_codes=data["probe"]["top1"]["shape"]["codes"]
                    if "shape" in data["probe"]["top1"] else None,
                    sedd_tv=sedd["tv_per_position"])
    dio.write_json(out.parent / "report.json", headline)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(curve[0]))
    writer.writeheader()
    writer.writerows(curve)
    dio.write_bytes(out.parent / "eta_curve.csv", buffer.getvalue().encode())
    log.info("report -> %s", out)
    return headline

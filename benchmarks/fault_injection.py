"""Kill the study at random moments under every engine, re-run it until it finishes, and check
that every output equals a clean run's.

    python benchmarks/fault_injection.py [--seed 0] [--dvc-kills 10] [--submitit-kills 6]
        [--workdir /tmp/dlc-faults]

1. Clean runs of the micro study (tests/micro.yaml) under Snakemake (`-c1`) and `dvc repro`,
   with the process table sampled every 50 ms: how long each job runs.
2. Killed runs: Snakemake, `dvc repro`, and Snakemake with every stage launched as a
   submitit-local job (DLC_LAUNCHER). Whenever a job of a rule not yet killed under that
   engine starts (seen in the process table: the `--log` path in a process's command line
   names the job, the clean run's Snakemake log names its rule), it is killed at a random
   moment of its clean duration, with SIGKILL or SIGTERM (drawn), together with every process
   below the engine; then the engine is started again (`--rerun-incomplete`, or `dvc repro`).
   Snakemake kills every rule once; DVC and submitit stop after their `--*-kills`.
3. Real size: the tiny preset's train-sem and train-vae (their real networks and batches,
   steps cut to three checkpoints) are killed twice each and resumed; the weights must equal
   an uninterrupted run's, byte for byte.
4. Every result file of the clean run must exist in the killed run and be equal: arrays,
   weights and Parquet tables bit for bit (decoded), JSON files without the keys that record
   time, hosts or the code revision, loss CSVs without their images/s column.
Writes $OUT/fault_injection.json (or benchmarks/results/): each kill with its engine, the rule
and job the process table showed, the signal and the moment; the rules hit and missed; the
files compared and any that differ. Exit 1 if any differ.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.micro_dag import micro_params, workspace  # noqa: E402  (the micro study's files)

BIN = Path(sys.executable).parent
VOLATILE_KEYS = {"images_per_s", "seconds", "elapsed_s", "git_rev", "python", "host",
                 "sequences_per_s", "duration_s", "started", "finished", "time_s",
                 "span_minutes", "jobs_seconds"}   # the last two: report.json's wall times
SKIPPED_PARTS = {"logs", "checkpoints", "shards", "reference_features"}
# report.md and its figures quote wall times; report.json is compared without them
SKIPPED_FILES = {"report.md", "report.html"}
POLL_S = 0.05
JOB_LOG = re.compile(r"results/logs/\S+?\.log")   # every rule logs there, one file per job


# --- the process table -----------------------------------------------------------------------
def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process now."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), command)
    return table


def below(root: int, table: dict[int, tuple[int, str]]) -> list[int]:
    """root and every process under it."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def running_jobs(root: int) -> set[str]:
    """The job log paths (`--log` of a `dlc` command, a shell's redirection) named in the
    command lines of the processes under `root`: the jobs running now."""
    table = process_table()
    return {log for pid in below(root, table)
            for log in JOB_LOG.findall(table.get(pid, (0, ""))[1])}


def kill_tree(root: int, how: signal.Signals) -> None:
    """Signal root and everything under it (taken before any dies, so orphans are hit too);
    after SIGTERM, SIGKILL whatever is left after 30 s."""
    pids = below(root, process_table())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):   # exited since the snapshot
            os.kill(pid, how)
    deadline = time.time() + 30
    while how == signal.SIGTERM and time.time() < deadline:
        if not any(_alive(pid) for pid in pids):
            return
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- engines ----------------------------------------------------------------------------------
def engine_command(engine: str) -> list[str]:
    if engine == "dvc":
        return [str(BIN / "dvc"), "repro"]
    return [str(BIN / "snakemake"), "-c1", "--rerun-incomplete"]


def start(engine: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    if engine == "submitit":
        env["DLC_LAUNCHER"] = "submitit-local"
    if engine != "dvc":   # the lock a killed Snakemake leaves behind
        subprocess.run([str(BIN / "snakemake"), "--unlock", "-c1"], cwd=folder, env=env,
                       capture_output=True)
    log = open(folder / f"{engine}.out", "a")
    return subprocess.Popen(engine_command(engine), cwd=folder, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def prepare(folder: Path, engine: str) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    workspace(folder, micro_params())
    if engine == "dvc":
        subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=folder, check=True)
    return folder


def job_rules(folder: Path) -> dict[str, str]:
    """log path -> rule, from a finished Snakemake run's log."""
    jobs, rule = {}, None
    for path in sorted((folder / ".snakemake" / "log").glob("*.snakemake.log")):
        for line in path.read_text().splitlines():
            if match := re.match(r"^(?:local)?rule (\S+):", line):
                rule = match.group(1)
            elif (match := re.match(r"^\s+log: (\S+)", line)) and rule:
                jobs[match.group(1)] = rule
    return jobs


def clean_run(engine: str, folder: Path) -> tuple[float, dict]:
    """Run to the end; returns (seconds, job log path -> seconds seen running)."""
    prepare(folder, engine)
    began, first, last = time.time(), {}, {}
    process = start(engine, folder)
    while process.poll() is None:
        now = time.time()
        for log in running_jobs(process.pid):
            first.setdefault(log, now)
            last[log] = now
        time.sleep(POLL_S)
    if process.returncode != 0:
        sys.exit(f"the clean {engine} run failed: see {folder / (engine + '.out')}")
    return time.time() - began, {log: last[log] - first[log] for log in first}


def killed_run(engine: str, folder: Path, jobs: dict[str, str], durations: dict[str, float],
               budget: int, rng: random.Random) -> list[dict]:
    """Kill jobs of rules not yet killed (at most `budget`) until the engine finishes."""
    prepare(folder, engine)
    kills, hit, failures = [], set(), 0
    while True:
        process, began, plan, killed = start(engine, folder), time.time(), None, False
        while process.poll() is None:
            if plan is None and len(kills) < budget:
                for log in running_jobs(process.pid) & jobs.keys():
                    if jobs[log] not in hit:
                        after = rng.uniform(0.1, 0.8) * durations.get(log, 1.0)
                        plan = (log, time.time() + after, rng.choice(["SIGKILL", "SIGTERM"]))
                        break
            if plan is not None and time.time() >= plan[1]:
                log, _, how = plan
                still = running_jobs(process.pid) & jobs.keys()
                if log in still:   # the rule the process table shows at the moment of the kill
                    kill_tree(process.pid, signal.Signals[how])
                    process.wait()
                    hit.add(jobs[log])
                    kills.append({"engine": engine, "rule": jobs[log], "job": log,
                                  "signal": how, "after_s": round(time.time() - began, 1),
                                  "running": sorted(jobs[other] for other in still)})
                    print(f"{engine}: kill {len(kills)} ({how}) in {jobs[log]}", flush=True)
                    killed = True
                    break
                plan = None        # it finished first: wait for the next one
            time.sleep(POLL_S)
        if process.returncode == 0:
            return kills
        if not killed:             # it failed on its own: a lock or an orphan, say; retry
            failures += 1
            if failures > 3:
                sys.exit(f"the killed {engine} run does not finish: see "
                         f"{folder / (engine + '.out')}")


# --- comparison -------------------------------------------------------------------------------
def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def same(a: Path, b: Path) -> bool:
    if a.suffix == ".json":
        return _strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text()))
    if a.suffix == ".csv":
        frames = [pd.read_csv(p) for p in (a, b)]
        frames = [f.drop(columns=[c for c in f.columns if c in VOLATILE_KEYS]) for f in frames]
        return frames[0].equals(frames[1])
    if a.suffix == ".parquet":
        return pd.read_parquet(a).equals(pd.read_parquet(b))
    if a.suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            return x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    if a.suffix == ".png":       # figures embed timings in their text: compare only existence
        return True
    return a.read_bytes() == b.read_bytes()


def compare(clean: Path, killed: Path) -> tuple[int, list[str]]:
    checked, differing = 0, []
    for path in sorted((clean / "results").rglob("*")):
        relative = path.relative_to(clean)
        if (not path.is_file() or SKIPPED_PARTS & set(relative.parts)
                or path.name.startswith(".") or path.name in SKIPPED_FILES):
            continue
        other = killed / relative
        checked += 1
        if not other.is_file() or not same(path, other):
            differing.append(str(relative))
    return checked, differing


# --- real size --------------------------------------------------------------------------------
REAL_STAGES = {"train-sem": ("sem", "encoder.safetensors", 20),
               "train-vae": ("vae", "model/diffusion_pytorch_model.safetensors", 15)}


def real_size(work: Path, rng: random.Random) -> list[dict]:
    """train-sem and train-vae of the tiny preset, three checkpoints long, killed twice each."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    tiny = params["presets"]["tiny"]
    for section, _, every in REAL_STAGES.values():
        tiny[section]["train"].update(steps=3 * every, checkpoint_every=every)
    folder = work / "real"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}

    def dlc(*args) -> subprocess.Popen:
        return subprocess.Popen([str(BIN / "dlc"), *args], cwd=folder, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    assert dlc("data", "--out", "images.parquet", "--report", "data.json").wait() == 0
    results = []
    for stage, (_, weights, _) in REAL_STAGES.items():
        began = time.time()
        assert dlc(stage, "--images", "images.parquet", "--out", f"{stage}-clean").wait() == 0
        clean_s = time.time() - began
        kills, remaining = [], clean_s
        for how in ("SIGKILL", "SIGTERM"):
            process = dlc(stage, "--images", "images.parquet", "--out", f"{stage}-killed")
            after = rng.uniform(0.3, 0.9) * remaining
            try:
                process.wait(timeout=after)
                kills.append({"signal": how, "after_s": None, "note": "finished first"})
                continue
            except subprocess.TimeoutExpired:
                kill_tree(process.pid, signal.Signals[how])
                process.wait()
            kills.append({"signal": how, "after_s": round(after, 1)})
            # the rerun resumes from the last checkpoint: what is left, plus the start-up
            remaining = max(8.0, remaining - after + 8.0)
            print(f"real size: {stage} killed ({how}) after {after:.0f} s", flush=True)
        assert dlc(stage, "--images", "images.parquet", "--out", f"{stage}-killed").wait() == 0
        equal = ((folder / f"{stage}-clean" / weights).read_bytes()
                 == (folder / f"{stage}-killed" / weights).read_bytes())
        results.append({"stage": stage, "clean_s": round(clean_s, 1), "kills": kills,
                        "weights_equal": equal})
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dvc-kills", type=int, default=10)
    parser.add_argument("--submitit-kills", type=int, default=6)
    parser.add_argument("--workdir", default="/tmp/dlc-faults")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.workdir)

    clean_s, durations = clean_run("snakemake", work / "clean-snakemake")
    jobs = job_rules(work / "clean-snakemake")
    dvc_s, _ = clean_run("dvc", work / "clean-dvc")
    print(f"clean runs: Snakemake {clean_s:.0f} s, DVC {dvc_s:.0f} s", flush=True)

    engines = {}
    for engine, budget, clean in (("snakemake", len(jobs), "clean-snakemake"),
                                  ("dvc", args.dvc_kills, "clean-dvc"),
                                  ("submitit", args.submitit_kills, "clean-snakemake")):
        kills = killed_run(engine, work / f"killed-{engine}", jobs, durations, budget, rng)
        checked, differing = compare(work / clean, work / f"killed-{engine}")
        engines[engine] = {"kills": kills, "files_compared": checked,
                           "files_differing": differing}
    real = real_size(work, rng)

    rules = sorted(set(jobs.values()))
    hit = sorted({kill["rule"] for e in engines.values() for kill in e["kills"]})
    differing = [f for e in engines.values() for f in e["files_differing"]]
    differing += [r["stage"] for r in real if not r["weights_equal"]]
    result = {"clean_run_s": {"snakemake": round(clean_s, 1), "dvc": round(dvc_s, 1)},
              "kills_total": sum(len(e["kills"]) for e in engines.values())
              + sum(len([k for k in r["kills"] if k["after_s"]]) for r in real),
              "rules": len(rules), "rules_hit": hit,
              "rules_not_hit": sorted(set(rules) - set(hit)),
              "files_differing_total": len(differing), "engines": engines, "real_size": real}
    out = Path(os.environ.get("OUT", Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "fault_injection.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("engines", "real_size")},
                     indent=2))
    if differing:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Kill the micro DAG at random moments, re-run it until it finishes, and check that every
output equals a clean run's.

    python benchmarks/fault_injection.py [--kills 12] [--seed 0] [--workdir /tmp/dlc-faults]

1. A clean run of the micro-sized tiny study (tests/conftest.py's params) through Snakemake,
   timed.
2. In a second folder, `snakemake --rerun-incomplete` is started and its whole process group
   is SIGKILLed after a random delay, again and again, `--kills` times; then it runs to the
   end. The delays are uniform in [3 s, 2 T / kills] for a clean run of T seconds, so the
   kills spread over the whole DAG, and each lands inside whatever stage is running then.
3. Every result file of the clean run must exist in the killed run and be equal: arrays,
   weights and Parquet tables bit for bit (decoded), JSON files without the keys that record
   time, hosts or the code revision, loss CSVs without their images/s column.
Writes $OUT/fault_injection.json (or benchmarks/results/): kills, which rule each kill hit,
the files compared and any that differ.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import micro_params  # noqa: E402  (the micro sizes the tests use)
from tests.micro_dag import workspace  # noqa: E402

VOLATILE_KEYS = {"images_per_s", "seconds", "elapsed_s", "git_rev", "python", "host",
                 "sequences_per_s", "duration_s", "started", "finished", "time_s"}
SKIPPED_PARTS = {"logs", "checkpoints", "shards", "reference_features"}
TARGETS = ["results/tiny/fid_dlc.json", "results/tiny/fid_encode_decode.json",
           "results/tiny/fid_unconditional.json", "results/tiny/fid_real.json",
           "results/tiny/fid_vae.json", "results/tiny/fid_eta_sweep.json",
           "results/tiny/probe.json", "results/tiny/sedd/samples.json"]


def prepare(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    return workspace(folder, micro_params())


def snakemake(folder: Path) -> subprocess.Popen:
    """Start the run in its own process group (a kill takes the running stage with it),
    after releasing the lock a killed Snakemake leaves behind."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run([str(bin_dir / "snakemake"), "--unlock", "-c1"], cwd=folder, env=env,
                   capture_output=True)
    return subprocess.Popen([str(bin_dir / "snakemake"), "-c1", "--rerun-incomplete",
                             "--", *TARGETS], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def running_rule(folder: Path) -> str | None:
    """The rule Snakemake last started (from its log), for the report."""
    logs = sorted((folder / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    rules = [line.split()[-1].rstrip(":") for line in logs[-1].read_text().splitlines()
             if line.startswith(("rule ", "localrule "))]
    return rules[-1] if rules else None


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
                or path.name.startswith(".")):
            continue
        other = killed / relative
        checked += 1
        if not other.is_file() or not same(path, other):
            differing.append(str(relative))
    return checked, differing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/dlc-faults")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.workdir)

    clean = prepare(work / "clean")
    start = time.time()
    process = snakemake(clean)
    output, _ = process.communicate()
    clean_s = time.time() - start
    if process.returncode != 0:
        sys.exit(f"the clean run failed:\n{output[-3000:]}")
    print(f"clean run: {clean_s:.0f} s", flush=True)

    killed = prepare(work / "killed")
    kills = []
    while len(kills) < args.kills:
        process = snakemake(killed)
        delay = rng.uniform(3.0, max(3.0, 2 * clean_s / args.kills))
        try:
            process.wait(timeout=delay)
            break                         # finished before this kill
        except subprocess.TimeoutExpired:
            rule = running_rule(killed)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills.append({"after_s": round(delay, 1), "rule": rule})
            print(f"kill {len(kills)} after {delay:.1f} s in {rule}", flush=True)
    reruns = 0
    while process.poll() is None or process.returncode != 0:
        process = snakemake(killed)
        output, _ = process.communicate()
        reruns += 1
        if process.returncode != 0 and reruns >= 3:
            sys.exit(f"the killed run does not finish:\n{output[-3000:]}")
    checked, differing = compare(clean, killed)
    result = {"clean_run_s": round(clean_s, 1), "kills": kills, "kills_survived": len(kills),
              "files_compared": checked, "files_differing": differing,
              "identical": not differing}
    out = Path(os.environ.get("OUT", Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "fault_injection.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if differing:
        sys.exit(1)


if __name__ == "__main__":
    main()

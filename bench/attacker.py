"""CPU cost of one training step of the evaluation's CNN attacker, under torch's memory defaults and privsdk's.

``privsdk eval`` spends most of its time training attackers; on a CPU each step of the CNN attacker
(batch 128 of 64×64 faces, ``privsdk.train.eval.models``) allocates activations of up to 33 MB that
torch maps freshly and faults in page by page. The training commands of ``privsdk`` ask for huge
pages and keep freed memory mapped before torch is imported (:mod:`privsdk.torch_memory`); this
benchmark runs the same steps in fresh processes with torch's defaults and with privsdk's settings
(both are read once per process), alternating the two ``--rounds`` times so that a noisy machine
affects both alike, and reports per step: wall ms, user and system CPU seconds, minor page faults,
and the ratio of the medians.

Example::

    privsdk bench attacker --steps 20 --rounds 2 --out bench/results/attacker.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Dict, List

HELP = "one training step of the evaluation's CNN attacker, under torch's memory defaults and privsdk's"
COLUMNS = [("memory", "CPU memory settings", "s"), ("ms_per_step", "ms / step", ".1f"),
           ("user_s_per_step", "user s / step", ".3f"), ("sys_s_per_step", "system s / step", ".3f"),
           ("faults_per_step", "minor faults / step", ".0f"), ("runs", "runs", "d")]

# Runs in a fresh interpreter: both settings are taken once per process, before torch is imported.
_STEP_SCRIPT = r"""
import json, resource, sys, time
steps, batch, threads, settings = (int(a) for a in sys.argv[1:5])
if settings:
    from privsdk.torch_memory import prepare_torch_cpu_memory
    assert prepare_torch_cpu_memory(), "privsdk's memory settings did not take"
import torch, torch.nn as nn
from privsdk.train.eval.models import build_model
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model("cnn", 2, (64, 64), 16)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.rand(batch, 3, 64, 64), torch.randint(0, 2, (batch,))
loss_fn = nn.CrossEntropyLoss()
def step():
    loss = loss_fn(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(3):
    step()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"ms_per_step": (t1 - t0) / steps * 1e3, "user_s_per_step": (r1.ru_utime - r0.ru_utime) / steps,
                  "sys_s_per_step": (r1.ru_stime - r0.ru_stime) / steps,
                  "faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per run (default 20)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128, the protocol's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per setting, alternating off/on (default 2)")
    parser.add_argument("--out", default="bench/results/attacker.json", help="JSON output path")


def run_steps(privsdk_settings: bool, steps: int, batch: int, threads: int) -> Dict[str, float]:
    """One fresh process timing ``steps`` attacker steps (torch's defaults or privsdk's); per-step figures."""
    from privsdk.errors import BackendError
    from privsdk.torch_memory import HUGE_PAGES_VARIABLE

    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES_VARIABLE and not k.startswith("MALLOC_")}
    env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, "-c", _STEP_SCRIPT, str(steps), str(batch), str(threads),
                           str(int(privsdk_settings))], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackendError(f"the attacker step benchmark failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-500:]}; expected torch and privsdk[train] installed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(runs: List[Dict[str, float]], privsdk_settings: bool) -> Dict[str, Any]:
    """The median of each per-step figure over a setting's runs."""
    row: Dict[str, Any] = {"memory": "privsdk" if privsdk_settings else "torch defaults", "runs": len(runs)}
    for key in ("ms_per_step", "user_s_per_step", "sys_s_per_step", "faults_per_step"):
        row[key] = statistics.median(r[key] for r in runs)
    return row


def main(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .common import format_table, write_json

    if min(args.steps, args.batch, args.threads, args.rounds) < 1:
        print("privsdk bench attacker: --steps, --batch, --threads and --rounds must be at least 1",
              file=sys.stderr)
        return 2
    runs: Dict[bool, List[Dict[str, float]]] = {False: [], True: []}
    plan = [setting for _ in range(args.rounds) for setting in (False, True)]
    for setting in tqdm(plan, desc="attacker steps", unit="run"):
        runs[setting].append(run_steps(setting, args.steps, args.batch, args.threads))
    rows = [summarize(runs[False], False), summarize(runs[True], True)]
    speedup = rows[0]["ms_per_step"] / rows[1]["ms_per_step"]
    print(format_table(rows, COLUMNS))
    print(f"privsdk's settings: {speedup:.2f}x the steps per second ({args.threads} thread(s), batch {args.batch})")
    path = write_json(args.out, {"benchmark": "attacker", "steps": args.steps, "batch": args.batch,
                                 "threads": args.threads, "rows": rows, "speedup": speedup,
                                 "runs": {"torch defaults": runs[False], "privsdk": runs[True]}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=HELP)
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))

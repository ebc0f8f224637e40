"""Eager PyTorch on the CPU on glibc's default heap and on a steady one (segbench's timing).

    python -m bench.heap [--ckpt unet=<best.ckpt> ...] [--threads 2] [--runs 20] [--rounds 3]

For each checkpoint, two fresh processes time the same eager forward (batch 1,
360x480, ``--threads`` threads, segbench's ``time_callable``): one with
``SEGBENCH_HEAP=default`` (glibc returns freed activations to the OS and faults
them back in on every call), one with the steady heap every segbench latency
figure is now measured on (:mod:`segbench.runtimes.heap`). Writes
``bench/out/heap.json``.
"""

import argparse
import json
import os
import subprocess
import sys

from bench.common import ROOT, machine, save

_CHILD = """
import json, sys, torch
from segbench.models import load_network
from segbench.runtimes.latency import time_callable
torch.set_num_threads({threads})
net, _ = load_network({ckpt!r})
x = torch.randn(1, 3, 360, 480, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    t = time_callable(lambda: net(x), warmup=3, runs={runs}, rounds={rounds})
print("RESULT " + json.dumps(t))
"""


def time_eager(ckpt: str, heap: str, args) -> dict:
    code = _CHILD.format(threads=args.threads, ckpt=ckpt, runs=args.runs, rounds=args.rounds)
    env = {**os.environ, "SEGBENCH_HEAP": heap, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="name=path of a checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for item in args.ckpt:
        name, ckpt = item.split("=", 1)
        default, steady = (time_eager(ckpt, heap, args) for heap in ("default", "steady"))
        rows.append(
            {
                "model": name,
                "ckpt": ckpt,
                "default_ms": default["median_ms"],
                "steady_ms": steady["median_ms"],
                "default_over_steady": default["median_ms"] / steady["median_ms"],
                "heap": {"default": default["heap"], "steady": steady["heap"]},
                "noisy": default["noisy"] or steady["noisy"],
                "load_per_cpu": max(default["load_per_cpu"] or 0, steady["load_per_cpu"] or 0),
            }
        )
        r = rows[-1]
        print(
            f"{name}: eager {r['default_ms']:.1f} ms on the default heap, {r['steady_ms']:.1f} "
            f"ms steady ({r['default_over_steady']:.2f}x)",
            flush=True,
        )
    save(
        "heap",
        {"machine": machine(), "settings": vars(args) | {"size": [360, 480]}, "rows": rows},
    )


if __name__ == "__main__":
    main()

"""Profile a network: params, FLOPs, latency per runtime/precision/device, real-time budget.

``segbench profile [model=... backbone=... data=...] [ckpt_path=...]`` (or
``python -m segbench.profiling.profile``) composes ``conf/profile.yaml`` and writes
``profile.json``. Latency figures are rows keyed by runtime, precision, device
and batch (:mod:`segbench.profiling.latency`).
"""

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from segbench.config import CONFIG_DIR, run_checked
from segbench.errors import ConfigError, exit_on_user_error
from segbench.files import write_json
from segbench.models import build_network, load_network
from segbench.profiling.budget import check_budget
from segbench.profiling.flops import count_flops
from segbench.profiling.latency import runtime_latency
from segbench.profiling.params import count_params

log = logging.getLogger(__name__)


def profile_network(
    net: nn.Module,
    input_size: Sequence[int],
    batch_size: int = 8,
    runtimes: Iterable[str] = ("pytorch",),
    latency: bool = True,
    budget: Mapping | None = None,
    **latency_kwargs,
) -> dict:
    """Params, FLOPs (batch 1), latency rows and budget verdicts of ``net`` at ``input_size``.

    Args:
        net: The network (any device; it is copied for each measurement).
        input_size: ``[H, W]`` of one frame.
        batch_size: Latency is measured at batch 1 and at this batch.
        runtimes: Of :data:`segbench.runtimes.RUNTIMES`.
        latency: Measure latency (params/FLOPs/budget alone are fast).
        budget: ``conf/budget`` node (``devices``, ``scenarios``, ``utilization``);
            None skips the budget check.
        **latency_kwargs: ``devices``, ``precisions``, ``warmup``, ``runs`` (per
            round), ``rounds``, ``noisy_threshold``.
    """
    net = copy.deepcopy(net).cpu().float().eval()
    input_size = [int(v) for v in input_size]
    flops = count_flops(net, tuple(input_size))
    result = {
        "input_size": input_size,
        "params": count_params(net),
        "flops": {
            "gmacs": flops["gmacs"],
            "gflops": flops["gflops"],
            "batch": 1,
            "input_size": input_size,
            "counter": "torch.utils.flop_counter",
            "convention": "1 MAC = 2 FLOPs; GOP/frame = GFLOPs",
        },
        "latency": [],
        "skipped": [],
    }
    if latency:
        batches = sorted({1, int(batch_size)})
        for runtime in runtimes:
            rows, skipped = runtime_latency(runtime, net, input_size, batches, **latency_kwargs)
            result["latency"] += rows
            result["skipped"] += skipped
    if budget:
        budget = (
            OmegaConf.to_container(budget, resolve=True)
            if isinstance(budget, DictConfig)
            else dict(budget)
        )
        gop = {None: flops["gflops"]}
        for scenario in budget["scenarios"].values():
            res = scenario.get("resolution")
            if res and tuple(res) not in gop:
                gop[tuple(res)] = count_flops(net, tuple(res))["gflops"]
        result["budget"] = check_budget(
            gop,
            budget["devices"],
            budget["scenarios"],
            budget.get("utilization"),
            result["latency"],
        )
    return result


def profile(cfg: DictConfig) -> dict:
    """Profiles ``cfg.ckpt_path``'s network, or the configured model, and writes ``profile.json``."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    if cfg.get("ckpt_path"):
        net, hparams = load_network(cfg.ckpt_path)
        net_config, default_size = hparams["net"], hparams["data"]["image_size"]
    else:
        net_config = OmegaConf.to_container(cfg.model, resolve=True)
        # Weights change no count or timing: never look them up.
        net_config["backbone"] = {**net_config.get("backbone", {}), "weights": None}
        net, default_size = build_network(net_config), cfg.data.image_size
    input_size = list(cfg.get("input_size") or default_size)
    if len(input_size) != 2 or min(input_size) < getattr(net, "min_size", 1):
        raise ConfigError(
            "input_size", input_size, "must be [H, W], each >= 32", fix="e.g. input_size=[360,480]"
        )
    result = {
        "model": net_config,
        "ckpt_path": cfg.get("ckpt_path"),
        **profile_network(
            net,
            input_size,
            cfg.batch_size,
            cfg.runtimes,
            cfg.latency,
            cfg.get("budget"),
            devices=cfg.devices,
            precisions=cfg.precisions,
            warmup=cfg.warmup,
            runs=cfg.runs,
            rounds=cfg.rounds,
            noisy_threshold=cfg.noisy_threshold,
        ),
    }
    out = Path(cfg.paths.output_dir)
    write_json(out / "profile.json", result)
    log.info("profile -> %s", out / "profile.json")
    return result


#: Timing of train.py's after-fit profile: 3 rounds of 5 calls per row (a sweep profiles
#: every job, so it stays short); ``+profile_repeats.rounds=5`` etc. change it.
TRAINED_REPEATS = {"warmup": 2, "runs": 5, "rounds": 3}


def profile_trained(net: nn.Module, cfg: DictConfig, path: Path) -> dict:
    """Profiles a just-trained network at its dataset's size into ``path`` (train's ``profile``).

    Latency is timed with :data:`TRAINED_REPEATS`, updated by ``cfg.profile_repeats``
    when the run sets it.
    """
    repeats = {**TRAINED_REPEATS, **(cfg.get("profile_repeats") or {})}
    result = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        **profile_network(
            net,
            cfg.data.image_size,
            cfg.data.batch_size,
            runtimes=cfg.get("profile_runtimes") or ("pytorch",),
            budget=cfg.get("budget"),
            **repeats,
        ),
    }
    write_json(path, result)
    log.info("profile -> %s", path)
    return result


def summary(result: dict) -> str:
    """A few lines for the terminal."""
    flops = result["flops"]
    lines = [
        f"input {flops['input_size'][0]}x{flops['input_size'][1]}: "
        f"params {result['params']['total'] / 1e6:.2f} M "
        f"({result['params']['trainable'] / 1e6:.2f} M trainable), "
        f"{flops['gmacs']:.2f} GMACs = {flops['gflops']:.2f} GFLOPs per frame"
    ]
    for r in result["latency"]:
        lines.append(
            f"  {r['runtime']:<11} {r['device_type']:<4} {r['precision']:<5} batch "
            f"{r['batch']:<3} median {r['median_ms']:8.1f} ms  p90 {r['p90_ms']:8.1f} ms"
            f"{_spread(r)}  ({r['device']}, {r['threads']} threads, "
            f"load {r.get('load_per_cpu')}/CPU)"
        )
    for r in result.get("budget", []):
        verdict = "fits" if r["fits"] else "does not fit"
        measured = (
            f"; measured {r['measured_fps']:.1f} fps vs {r['required_fps']} needed"
            if "measured_fps" in r
            else ""
        )
        lines.append(
            f"  {r['scenario']:<8} {r['device']:<17} {r['precision']:<11} budget "
            f"{r['budget_gop']:8.1f} GOP/frame: {verdict} "
            f"(headroom {r['headroom_pct']:+.0f}%){measured}"
        )
    return "\n".join(lines)


def _spread(row: dict) -> str:
    rel = row.get("rel_spread")
    if rel is None:
        return ""
    return f"  spread {100 * rel:3.0f}%" + (" NOISY" if row.get("noisy") else "")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="profile")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        print(summary(profile(cfg)))


if __name__ == "__main__":
    run_checked(main)

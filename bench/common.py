"""Shared by the benchmarks: machine description, config composition, results files."""

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CAMVID = Path(os.environ.get("SEGBENCH_CAMVID", ROOT.parent / "shared" / "datasets" / "camvid"))
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    """CPU model, cores, GPU, versions, date: the header every figure carries."""
    from segbench.runtimes.latency import device_tags

    tags = device_tags("cpu")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": tags["device"],
        "cores": os.cpu_count(),
        "torch_threads": tags["threads"],
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "load_avg_1min": os.getloadavg()[0],
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def compose(name: str, overrides: list[str]):
    """Composes ``conf/<name>.yaml`` as train.py would (outputs under bench/out)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name=name, overrides=overrides, return_hydra_config=True)
    out = OUT / name
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = str(out)
        cfg.hydra.runtime.output_dir = str(out)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def save(name: str, result: dict) -> Path:
    """Writes ``bench/out/<name>.json`` (the figures RESULTS.md quotes)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return path

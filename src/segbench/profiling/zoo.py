"""``segbench models``: every valid model x backbone with its params and FLOPs.

Each network is built from its own ``conf/model/*.yaml`` and ``conf/backbone/*.yaml``
(defaults as shipped), a backbone with ``encoders`` per version and width (MobileNet)
at each of them, and counted with :func:`segbench.profiling.flops.count_flops` on
one image of the given size.

    segbench models                       # all pairs at 360x480, 11 classes (CamVid)
    segbench models --models fcn erfnet --size 512 1024 --num-classes 19
"""

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import OmegaConf

from segbench.config import CONFIG_DIR, group_options
from segbench.errors import ConfigError
from segbench.models import build_network, check_compatible
from segbench.profiling.flops import count_flops
from segbench.profiling.params import count_params

log = logging.getLogger(__name__)


def model_config(
    model: str, backbone: dict, num_classes: int, config_dir: Path = CONFIG_DIR
) -> dict:
    """The resolved ``conf/model/<model>.yaml`` with ``backbone`` and ``num_classes`` filled in."""
    cfg = OmegaConf.load(config_dir / "model" / f"{model}.yaml")
    cfg.pop("defaults", None)
    root = OmegaConf.create(
        {"model": cfg, "backbone": backbone, "data": {"num_classes": num_classes}}
    )
    return OmegaConf.to_container(root, resolve=True)["model"]


def backbone_variants(name: str, config_dir: Path = CONFIG_DIR) -> Iterator[tuple[str, dict]]:
    """``(label, backbone config)`` of a backbone option; once per version and width where
    its yaml lists ``encoders`` by version and width (MobileNet)."""
    base = OmegaConf.to_container(OmegaConf.load(config_dir / "backbone" / f"{name}.yaml"))
    if not base.get("encoders"):
        yield name, base
        return
    for version, widths in base["encoders"].items():
        for width in widths:
            width = float(width)
            yield f"{name}{version} x{width:g}", {**base, "version": version, "width": width}


def valid_pairs(
    models: list[str], backbones: list[str], config_dir: Path = CONFIG_DIR
) -> Iterator[tuple[str, str]]:
    """Every ``(model, backbone)`` option pair the model's class accepts."""
    for model in models:
        target = OmegaConf.load(config_dir / "model" / f"{model}.yaml")["_target_"]
        for backbone in backbones:
            bb = OmegaConf.to_container(
                OmegaConf.load(config_dir / "backbone" / f"{backbone}.yaml")
            )
            try:
                check_compatible({"_target_": target}, bb)
            except ConfigError:
                continue
            yield model, backbone


def rows(
    models: list[str], backbones: list[str], size: tuple[int, int], num_classes: int
) -> Iterator[dict]:
    """One row per valid model x backbone variant: ``params_m``, ``gflops``, ``gmacs``."""
    for model, backbone in valid_pairs(models, backbones):
        for label, bb in backbone_variants(backbone):
            net = build_network(model_config(model, bb, num_classes))
            params = count_params(net)["total"]
            flops = count_flops(net, size)
            yield {
                "model": model,
                "backbone": label,
                "params_m": params / 1e6,
                "gflops": flops["gflops"],
                "gmacs": flops["gmacs"],
            }
            del net


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segbench models", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=group_options("model"),
        help="model options (conf/model); default: all",
    )
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=group_options("backbone"),
        help="backbone options (conf/backbone); default: all",
    )
    parser.add_argument("--size", nargs=2, type=int, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=11, help="default: 11 (CamVid)")
    args = parser.parse_args(argv)
    for group, chosen in (("model", args.models), ("backbone", args.backbones)):
        options = group_options(group)
        for option in chosen:
            if option not in options:
                parser.exit(2, f"error: {ConfigError(group, option, 'no such option', options)}\n")
    torch.set_grad_enabled(False)
    h, w = args.size
    print(
        f"segbench model zoo at {h}x{w}, {args.num_classes} classes, batch 1 "
        "(FLOPs by torch.utils.flop_counter; 1 MAC = 2 FLOPs)\n"
    )
    print(
        f"| {'model':<14} | {'backbone':<18} | {'params (M)':>10} | {'GFLOPs':>8} | {'GMACs':>8} |"
    )
    print(f"|{'-' * 16}|{'-' * 20}|{'-' * 11}:|{'-' * 9}:|{'-' * 9}:|")
    for row in rows(args.models, args.backbones, (h, w), args.num_classes):
        print(
            f"| {row['model']:<14} | {row['backbone']:<18} | {row['params_m']:>10.3f} "
            f"| {row['gflops']:>8.2f} | {row['gmacs']:>8.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""FLOPs agreement: segbench's counter (torch.utils.flop_counter) vs fvcore and ptflops.

For every zoo model x backbone pair the configs offer (mobilenet at width 1.0,
resnet50; resnext_wsl with --all), at 360x480, batch 1. segbench counts
convolutions and matrix products (1 MAC = 2 FLOPs); compared with fvcore's
`conv` + `matmul`/`linear` counts (fvcore reports MACs and calls them flops) and
ptflops' aten backend (MACs of aten convolution/mm ops).

    python -m bench.flops [--size 360 480] [--all]
"""

import argparse
import warnings

import torch
from omegaconf import OmegaConf

from bench.common import compose, machine, save


def fvcore_gmacs(net, size) -> float:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(net, torch.zeros(1, 3, *size))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    counts = analysis.by_operator()
    return (
        sum(
            v
            for k, v in counts.items()
            if k in ("conv", "matmul", "linear", "addmm", "bmm", "einsum")
        )
        / 1e9
    )


def ptflops_gmacs(net, size) -> float:
    from ptflops import get_model_complexity_info

    macs, _ = get_model_complexity_info(
        net, (3, *size), as_strings=False, backend="aten", print_per_layer_stat=False, verbose=False
    )
    return macs / 1e9


def pairs(include_slow: bool) -> list[tuple[str, str]]:
    from segbench.config import group_options
    from segbench.errors import ConfigError
    from segbench.models import check_compatible

    out = []
    for model in group_options("model"):
        for backbone in group_options("backbone"):
            if backbone == "resnext_wsl" and not include_slow:
                continue
            cfg = compose("train", [f"model={model}", f"backbone={backbone}", "data=camvid"])
            try:
                check_compatible(cfg.model, cfg.backbone)
            except ConfigError:
                continue
            out.append((model, backbone))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480))
    parser.add_argument("--all", action="store_true", help="include resnext_wsl (slow)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from segbench.models import build_network
    from segbench.profiling.flops import count_flops

    rows = []
    for model, backbone in pairs(args.all):
        cfg = compose("train", [f"model={model}", f"backbone={backbone}", "data=camvid"])
        net = build_network(OmegaConf.to_container(cfg.model, resolve=True)).eval()
        ours = count_flops(net, tuple(args.size))["gmacs"]
        row = {"model": model, "backbone": backbone, "segbench_gmacs": ours}
        text = f"{model:>14} {backbone:>12}: segbench {ours:8.3f}"
        for name, counter in (("fvcore", fvcore_gmacs), ("ptflops", ptflops_gmacs)):
            try:
                theirs = counter(net, args.size)
            except Exception as err:  # a reference counter that cannot trace this network
                row[f"{name}_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
                text += f"  {name} cannot count it ({type(err).__name__})"
                continue
            row[f"{name}_gmacs"] = theirs
            row[f"diff_{name}_pct"] = 100 * (ours - theirs) / theirs
            text += f"  {name} {theirs:8.3f} ({row[f'diff_{name}_pct']:+.2f}%)"
        rows.append(row)
        print(text, flush=True)
    diffs = [abs(r[k]) for r in rows for k in ("diff_fvcore_pct", "diff_ptflops_pct") if k in r]
    uncompared = [
        f"{r['model']}/{r['backbone']}"
        for r in rows
        if "diff_fvcore_pct" not in r and "diff_ptflops_pct" not in r
    ]
    worst = max(diffs)
    print(
        f"largest disagreement: {worst:.3f}% (target <= 1%); "
        f"compared with neither: {uncompared or 'none'}"
    )
    save(
        "flops",
        {
            "machine": machine(),
            "size": list(args.size),
            "rows": rows,
            "max_abs_diff_pct": worst,
            "uncompared": uncompared,
        },
    )


if __name__ == "__main__":
    main()

"""Seeds of one configuration, summed up: mean and spread, and which configurations a sweep separates.

A *configuration* is every finished run with the same model, backbone, width,
init, data, resolution, epochs and batch size and the same overrides apart from
``seed`` (and the keys that change no result: data root, paths, workers, ...).
Its runs differ only in seed; their mIoUs give mean, sample std, min..max and n.

The rule for ranking (:func:`separated`): two configurations are *separated* when
each has at least :data:`MIN_SEEDS` seeds and their min..max ranges do not
overlap, i.e. every seed of one scored above every seed of the other. When two
configurations do not differ, every split of their six scores (three seeds each)
is equally likely, and 2 of the C(6, 3) = 20 splits put one set wholly above the
other: a false "separated" 1 time in 10 (1 in 20 per direction; with five seeds
each, 1 in 126).
Configurations are compared only with those of the same data, resolution and
epochs; a configuration's rank is 1 + the number of configurations separated
from it and above it, so configurations that are not separated share a rank.
"""

import math
import statistics
from collections.abc import Sequence

from segbench.runtimes.latency import NOISY_SPREAD

#: Fewer seeds than this are never separated: with 2 seeds each, disjoint ranges
#: happen by chance 1 time in 3 (2 / C(4, 2)).
MIN_SEEDS = 3

#: Overrides that change no result: left out of a configuration's identity.
IGNORED_OVERRIDES = (
    "seed",
    "experiment",
    "data.root",
    "data.num_workers",
    "resume",
    "ckpt_path",
    "trainer.devices",
    "callbacks.rich_progress_bar",
    "paths.",
    "hydra.",
    "logger",
    "logger.",
)
IDENTITY = ("model", "backbone", "width", "init", "data", "resolution")


def separated(a: Sequence[float], b: Sequence[float], min_seeds: int = MIN_SEEDS) -> bool:
    """True when every score of one set is above every score of the other, each set >= min_seeds."""
    if len(a) < min_seeds or len(b) < min_seeds:
        return False
    return min(a) > max(b) or min(b) > max(a)


def spread(values: Sequence[float]) -> dict:
    """``mean``, ``std`` (sample, n - 1; None for one value), ``min``, ``max``, ``n``."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def config_key(row: dict) -> tuple:
    """What a run's configuration is, seed left out."""
    varied = tuple(sorted(o.lstrip("+") for o in row.get("_overrides") or [] if _counts(o)))
    return (
        *(str(row.get(k, "")) for k in IDENTITY),
        row.get("max_epochs") or row.get("epochs"),
        row.get("batch_size"),
        varied,
    )


def _counts(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return not any(key == k or (k.endswith(".") and key.startswith(k)) for k in IGNORED_OVERRIDES)


def group_runs(rows: Sequence[dict]) -> list[list[dict]]:
    """Finished runs with an mIoU (not NaN), grouped by :func:`config_key` (first-seen order)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        miou = row.get("miou")
        if row["status"] == "ok" and miou is not None and not math.isnan(miou):
            groups.setdefault(config_key(row), []).append(row)
    return list(groups.values())


def gain_last_quarter(history: Sequence[tuple[int, float]]) -> float | None:
    """mIoU points gained over the last quarter of a run's validations (>= 1 step back).

    Positive: still improving when the budget ran out. None with fewer than 2 validations.
    """
    scores = [s for _, s in sorted(history) if not math.isnan(s)]
    if len(scores) < 2:
        return None
    back = max(1, round(len(scores) / 4))
    return 100 * (scores[-1] - scores[-1 - back])


def rank(configs: list[dict], min_seeds: int = MIN_SEEDS) -> None:
    """Sets ``rank`` and ``not_separated_from`` (names) of each configuration, in place.

    Compared within the same data, resolution and epochs only; ``rank`` is 1 + the
    number of configurations separated from it with a higher mean.
    """
    for c in configs:
        peers = [
            d
            for d in configs
            if d is not c and all(d[k] == c[k] for k in ("data", "resolution", "epochs"))
        ]
        above = [
            d
            for d in peers
            if separated(c["_scores"], d["_scores"], min_seeds) and d["miou_mean"] > c["miou_mean"]
        ]
        c["rank"] = 1 + len(above)
        c["not_separated_from"] = [
            d["name"] for d in peers if not separated(c["_scores"], d["_scores"], min_seeds)
        ]


def aggregate(rows: Sequence[dict], min_seeds: int = MIN_SEEDS) -> list[dict]:
    """One row per configuration: seeds, mIoU mean/std/min/max, test and runtime mIoU, budget.

    Returns the configurations ranked (:func:`rank`), best first within each
    data/resolution/epochs; ``_runs`` keeps each one's runs (for the curves).
    """
    groups = group_runs(rows)
    varied = [config_key(runs[0])[-1] for runs in groups]
    common = set.intersection(*(set(v) for v in varied)) if varied else set()
    configs = [
        _summarize(runs, [o for o in v if o not in common])
        for runs, v in zip(groups, varied, strict=True)
    ]
    rank(configs, min_seeds)
    return sorted(
        configs,
        key=lambda c: (c["data"], c["resolution"], c["epochs"] or 0, c["rank"], -c["miou_mean"]),
    )


def _summarize(runs: list[dict], varied: list[str]) -> dict:
    first = runs[0]
    c = {k: first.get(k) for k in IDENTITY}
    named = ("model=", "backbone=", "backbone.width=", "init=", "data=")
    c["variant"] = " ".join(o for o in varied if not o.startswith(named))
    width = "" if c["width"] in ("", None) else f" x{c['width']}"
    c["name"] = f"{c['model']}/{c['backbone']}{width}" + (
        f" {c['variant']}" if c["variant"] else ""
    )
    scores = [r["miou"] for r in runs]
    stats = spread(scores)
    c.update({f"miou_{k}": v for k, v in stats.items() if k != "n"})
    c["n"] = stats["n"]
    c["seeds"] = " ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r.get("seed") or 0))
    test = spread([r.get("test_miou") for r in runs])
    c.update({"test_miou_mean": test["mean"], "test_miou_std": test["std"], "test_n": test["n"]})
    for key in sorted({k for r in runs for k in r if k.startswith(("miou ", "delta "))}):
        c[key] = spread([r.get(key) for r in runs])["mean"]
    c["gain_last_quarter"] = spread([gain_last_quarter(r["_history"]) for r in runs])["mean"]
    c["epochs"] = first.get("max_epochs") or first.get("epochs")
    c["batch_size"] = first.get("batch_size")
    c["images_seen"] = spread([r.get("images_seen") for r in runs])["mean"]
    c["train_time_s"] = spread([r.get("train_time_s") for r in runs])["mean"]
    c["device"] = ", ".join(sorted({str(r["device"]) for r in runs if r.get("device")}))
    c["params_m"] = next((r["params_m"] for r in runs if r.get("params_m")), None)
    c["gflops"] = next((r["gflops"] for r in runs if r.get("gflops")), None)
    for key in sorted({k for r in runs for k in r.get("_latency", {})}):
        c.update(combine_latency(key, [r["_latency"][key] for r in runs if key in r["_latency"]]))
    c["_scores"], c["_runs"] = scores, runs
    return c


def combine_latency(key: str, rows: Sequence[dict]) -> dict:
    """One configuration's latency from its runs' rows: median of their medians.

    The spread is the largest of each row's own spread and the spread of the runs'
    medians (the same network timed in each seed's run); ``noisy`` when a row was
    noisy or that spread is above the rows' threshold.
    """
    medians = [r["median_ms"] for r in rows if r.get("median_ms")]
    if not medians:
        return {}
    median = statistics.median(medians)
    threshold = max(r.get("noisy_threshold") or NOISY_SPREAD for r in rows)
    across = (max(medians) - min(medians)) / median if len(medians) > 1 else None
    spreads = [s for s in [across, *(r.get("rel_spread") for r in rows)] if s is not None]
    loads = [r["load_per_cpu"] for r in rows if r.get("load_per_cpu") is not None]
    return {
        key: median,
        f"{key} spread": max(spreads) if spreads else None,
        f"{key} noisy": any(r.get("noisy") for r in rows) or (across or 0) > threshold,
        f"{key} load/cpu": max(loads) if loads else None,
        f"{key} device": rows[0].get("device"),
    }


CONFIG_HEAD = [
    "rank", "name", *IDENTITY, "variant", "seeds", "n", "miou_mean", "miou_std", "miou_min",
    "miou_max", "not_separated_from", "test_miou_mean", "test_miou_std", "test_n",
    "gain_last_quarter", "epochs", "batch_size", "images_seen", "train_time_s", "device",
    "params_m", "gflops",
]  # fmt: skip


def config_columns(configs: list[dict]) -> list[str]:
    """Columns of the configurations CSV (``_`` keys left out), head first."""
    rest = {k for c in configs for k in c if not k.startswith("_")} - set(CONFIG_HEAD)
    return CONFIG_HEAD + sorted(rest, key=lambda k: (not k.startswith(("miou ", "delta ")), k))

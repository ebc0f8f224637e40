"""The comparison report over fake run dirs: ok, evaluated, profiled, failed and skipped runs."""

import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

from segbench.errors import DataError
from segbench.evaluation.plots import pareto_front
from segbench.evaluation.report import main, write_report


def fake_run(
    path: Path,
    width: float | None,
    miou: float | None,
    *,
    params: int = 2_000_000,
    ms: float | None = None,
    eval_miou: float | None = None,
    status: dict | None = None,
    config: bool = True,
    seed: int = 42,
    history: list[float] | None = None,
    metrics_extra: dict | None = None,
    latency_extra: dict | None = None,
    export: dict | None = None,
) -> Path:
    path.mkdir(parents=True)
    if config:
        backbone = (
            {"name": "mobilenet", "version": "v2", "width": width, "weights": None}
            if width
            else {"name": "resnet50", "weights": None}
        )
        (path / "config.yaml").write_text(
            yaml.safe_dump(
                {
                    "model": {"_target_": "segbench.models.Unet", "backbone": backbone},
                    "backbone": backbone,
                    "init": {"scheme": "kaiming"},
                    "seed": seed,
                    "trainer": {"max_epochs": 2, "accelerator": "cpu"},
                    "data": {
                        "dataset": {"_target_": "segbench.data.camvid.CamVid"},
                        "image_size": [360, 480],
                        "batch_size": 4,
                    },
                }
            )
        )
        # Hydra's own copy of the config must not count as a run.
        (path / ".hydra").mkdir()
        (path / ".hydra" / "config.yaml").write_text("{}")
    if miou is not None:
        (path / "metrics.json").write_text(
            json.dumps(
                {
                    "best_val_miou": miou,
                    "per_class_iou": {"road": miou + 0.1, "car": miou - 0.1},
                    "params": params,
                    "epochs": 2,
                    "wall_time_s": 12.5,
                    "history": [
                        {"epoch": i, "step": 10 * (i + 1), "val/miou": v}
                        for i, v in enumerate(history or [])
                    ],
                    **(metrics_extra or {}),
                }
            )
        )
    if eval_miou is not None:
        (path / "eval.json").write_text(
            json.dumps(
                {"miou": eval_miou, "split": "test", "per_class_iou": {"road": 0.9, "car": 0.2}}
            )
        )
    if ms is not None:
        (path / "profile.json").write_text(
            json.dumps(
                {
                    "input_size": [360, 480],
                    "params": {"total": params, "trainable": params},
                    "flops": {"gflops": ms / 10, "gmacs": ms / 20},
                    "latency": [
                        {
                            "runtime": "pytorch",
                            "device_type": "cpu",
                            "precision": "fp32",
                            "batch": b,
                            "median_ms": ms * b,
                            "device": "Test CPU",
                            **(latency_extra or {}),
                        }
                        for b in (1, 4)
                    ],
                    "budget": [
                        {
                            "scenario": "urban",
                            "device": "drive_px2_igpu",
                            "precision": "fp32",
                            "fits": ms / 10 <= 5.44,
                            "headroom_pct": 100 * (5.44 - ms / 10) / 5.44,
                        }
                    ],
                }
            )
        )
    if status is not None:
        (path / "status.json").write_text(json.dumps(status))
    if export is not None:
        (path / "export.json").write_text(json.dumps(export))
    return path


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "multirun"
    fake_run(root / "0", 0.35, 0.40, params=1_000_000, ms=30.0)
    fake_run(
        root / "1",
        0.5,
        0.45,
        params=2_000_000,
        ms=50.0,
        eval_miou=0.47,
        status={"status": "ok", "reason": "", "overrides": ["backbone.width=0.5"]},
    )
    fake_run(root / "2", 1.0, 0.44, params=4_000_000, ms=80.0)  # dominated by run 1
    fake_run(root / "nested" / "deep" / "3", None, 0.55, params=30_000_000, ms=400.0)
    fake_run(
        root / "4",
        0.75,
        None,
        config=False,
        status={
            "status": "failed",
            "reason": "CUDA out of memory",
            "overrides": ["model=unet", "backbone=mobilenet", "backbone.width=0.75"],
        },
    )
    fake_run(
        root / "5",
        None,
        None,
        config=False,
        status={
            "status": "skipped",
            "reason": "pspnet needs static shapes\n  fix: use x",
            "overrides": ["model=pspnet", "backbone=resnet50"],
        },
    )
    return root


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_report_files_and_rows(runs, tmp_path):
    files = write_report(runs, tmp_path / "report")
    assert set(files) == {"md", "csv", "configs_csv", "pareto"}  # no history: no curves
    rows = read_csv(files["csv"])
    assert [r["run"] for r in rows] == ["nested/deep/3", "1", "2", "0", "4", "5"]
    by_run = {r["run"]: r for r in rows}
    # eval.json's score wins over training's best val/miou; both are kept.
    assert float(by_run["1"]["miou"]) == 0.47 and float(by_run["1"]["val_miou"]) == 0.45
    assert by_run["1"]["eval_split"] == "test" and float(by_run["1"]["iou_road"]) == 0.9
    assert by_run["0"]["width"] == "0.35" and by_run["nested/deep/3"]["backbone"] == "resnet50"
    assert float(by_run["0"]["params_m"]) == 1.0 and float(by_run["0"]["gflops"]) == 3.0
    assert float(by_run["0"]["ms pytorch cpu fp32 b4"]) == 120.0
    assert by_run["0"]["urban drive_px2_igpu fp32"] == "fits +45%"
    assert by_run["nested/deep/3"]["urban drive_px2_igpu fp32"].startswith("no -")
    # Failed and skipped runs are rows with their reason, identified from the overrides.
    assert by_run["4"]["status"] == "failed" and by_run["4"]["reason"] == "CUDA out of memory"
    assert by_run["4"]["width"] == "0.75" and by_run["4"]["miou"] == ""
    assert by_run["5"]["status"] == "skipped" and by_run["5"]["model"] == "pspnet"

    md = files["md"].read_text()
    table = [line for line in md.split("## Runs")[1].splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 6
    assert "ms pytorch cpu fp32" in table[0] and "urban drive_px2_igpu fp32" in table[0]
    assert (
        "| failed: CUDA out of memory |" in md
        and "skipped: pspnet needs static shapes; fix: use x |" in md
    )
    assert "47.00" in md and "fits +45%" in md
    assert Image.open(files["pareto"]).size[0] > 300


def test_pareto_front_marks_undominated():
    # (latency, mIoU): the third point is slower and worse than the second.
    points = [(30, 40), (50, 47), (80, 44), (400, 55), (400, 50)]
    assert pareto_front(points) == [0, 1, 3]


def test_wandb_table_when_run_active(runs, tmp_path, monkeypatch):
    logged = {}
    table = SimpleNamespace
    fake = SimpleNamespace(
        run=SimpleNamespace(log=logged.update),
        Table=lambda columns, data: table(columns=columns, data=data),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    write_report(runs, tmp_path / "report")
    assert len(logged["comparison"].data) == 6 and "miou" in logged["comparison"].columns


def test_cli_and_empty_dir(runs, tmp_path, capsys):
    main(
        [
            str(runs),
            "--out",
            str(tmp_path / "cli"),
            "--classes",
            "road,car",
            "--budget",
            "urban:drive_px2_igpu:fp32",
        ]
    )
    out = capsys.readouterr().out
    assert (
        "IoU road" in out and "IoU car" in out and (tmp_path / "cli" / "comparison.csv").is_file()
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no run directories"):
        write_report(tmp_path / "empty")


# -- seeds: aggregation and the "not separated" rule ------------------------------------------


def test_separated_only_when_ranges_are_disjoint_with_enough_seeds():
    from segbench.evaluation.aggregate import MIN_SEEDS, separated

    assert MIN_SEEDS == 3
    # Disjoint ranges: separated, in either order.
    assert separated([0.50, 0.51, 0.52], [0.40, 0.45, 0.49])
    assert separated([0.40, 0.45, 0.49], [0.50, 0.51, 0.52])
    # Ranges overlap by one seed: not separated, though the means are 7 points apart.
    assert not separated([0.50, 0.60, 0.61], [0.40, 0.41, 0.55])
    # Touching ranges (a tie) are not separated.
    assert not separated([0.50, 0.51, 0.52], [0.45, 0.48, 0.50])
    # Mean +/- std would overlap here ([9.27, 12.73] vs [7.26, 10.6]); the ranges do not.
    assert separated([10, 10, 13], [7, 9.9, 9.9])
    # A single seed, or two, is never separated, however far apart.
    assert not separated([0.9], [0.1, 0.2, 0.3])
    assert not separated([0.9, 0.91], [0.1, 0.2])
    assert separated([0.9, 0.91], [0.1, 0.2], min_seeds=2)


def test_spread_and_gain_last_quarter():
    from segbench.evaluation.aggregate import gain_last_quarter, spread

    s = spread([0.50, 0.52, 0.54])
    assert s["mean"] == pytest.approx(0.52) and s["std"] == pytest.approx(0.02)  # n - 1
    assert (s["min"], s["max"], s["n"]) == (0.50, 0.54, 3)
    assert spread([0.5])["std"] is None and spread([None, float("nan")])["n"] == 0
    # 8 validations: the last quarter is 2 back; 3 validations: 1 back.
    history = [(e, 0.1 * e) for e in range(1, 9)]
    assert gain_last_quarter(history) == pytest.approx(20.0)
    assert gain_last_quarter([(1, 0.3), (2, 0.5), (3, 0.45)]) == pytest.approx(-5.0)
    assert gain_last_quarter([(1, 0.3)]) is None


def _seed_runs(root: Path, width: float, scores: list[float], **kwargs) -> None:
    for seed, miou in enumerate(scores):
        overrides = [f"backbone.width={width}", f"seed={seed}", f"data.root=/data/{seed}"]
        fake_run(
            root / f"w{width}_seed{seed}",
            width,
            miou,
            seed=seed,
            status={"status": "ok", "reason": "", "overrides": overrides},
            history=[miou / 2, miou * 0.9, miou],
            **kwargs,
        )


@pytest.fixture
def seeded(tmp_path) -> Path:
    """Three configurations x three seeds: 0.5 and 1.0 overlap, 0.35 is below both; one 1-seed."""
    root = tmp_path / "sweep"
    _seed_runs(root, 0.5, [0.50, 0.52, 0.51], ms=50.0)
    _seed_runs(root, 1.0, [0.49, 0.515, 0.50], ms=80.0)
    _seed_runs(root, 0.35, [0.40, 0.42, 0.41], ms=30.0)
    fake_run(root / "resnet", None, 0.60, ms=400.0, seed=0, history=[0.3, 0.6])
    fake_run(
        root / "crashed",
        0.5,
        None,
        config=False,
        status={
            "status": "failed",
            "reason": "boom",
            "overrides": ["backbone.width=0.5", "seed=3"],
        },
    )
    return root


def test_seeds_aggregate_per_configuration_and_overlap_shares_a_rank(seeded):
    from segbench.evaluation.aggregate import aggregate
    from segbench.evaluation.runs import collect

    configs = {c["name"]: c for c in aggregate(collect(seeded))}
    assert set(configs) == {
        "unet/mobilenet x0.5",
        "unet/mobilenet x1.0",
        "unet/mobilenet x0.35",
        "unet/resnet50",
    }
    half = configs["unet/mobilenet x0.5"]
    # Seeds differing in data.root (a path) are one configuration; the failed run is not in it.
    assert half["n"] == 3 and half["seeds"] == "0 1 2"
    assert half["miou_mean"] == pytest.approx(0.51) and half["miou_std"] == pytest.approx(0.01)
    assert (half["miou_min"], half["miou_max"]) == (0.50, 0.52)
    assert half["gain_last_quarter"] == pytest.approx(100 * 0.51 * 0.1)
    assert half["epochs"] == 2 and half["images_seen"] == 4 * 30  # steps x batch (old runs)
    # 0.5 and 1.0 overlap: not ordered; 0.35 is separated from both, so it ranks third.
    assert half["rank"] == configs["unet/mobilenet x1.0"]["rank"] == 1
    assert "unet/mobilenet x1.0" in half["not_separated_from"]
    low = configs["unet/mobilenet x0.35"]
    assert low["rank"] == 3 and low["not_separated_from"] == ["unet/resnet50"]
    # A single seed is never separated: it outranks nobody, nobody outranks it.
    single = configs["unet/resnet50"]
    assert single["n"] == 1 and single["miou_std"] is None and single["rank"] == 1
    assert len(single["not_separated_from"]) == 3


def test_a_different_epoch_budget_is_not_ranked_against(seeded, tmp_path):
    from segbench.evaluation.aggregate import aggregate, config_key
    from segbench.evaluation.runs import collect

    rows = collect(seeded)
    for r in rows:
        if r["width"] == 0.35:
            r["max_epochs"] = 50
    configs = {c["name"]: c for c in aggregate(rows)}
    assert configs["unet/mobilenet x0.35"]["rank"] == 1
    assert "unet/mobilenet x0.35" not in configs["unet/mobilenet x0.5"]["not_separated_from"]
    # A changed setting (not a seed, not a path) makes another configuration.
    a = {"status": "ok", "_overrides": ["seed=1", "model.width=16", "paths.log_dir=/x"]}
    b = {"status": "ok", "_overrides": ["seed=2", "model.width=16", "paths.log_dir=/y"]}
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key({**b, "_overrides": ["seed=2", "model.width=8"]})


def test_report_states_spread_rank_budget_and_curves(seeded, tmp_path):
    files = write_report(seeded, tmp_path / "report")
    assert {"pareto", "curves", "configs_csv"} <= set(files)
    md = files["md"].read_text()
    configs_part, runs_part = md.split("## Runs")
    assert "51.00 ± 1.00" in configs_part and "50.00..52.00" in configs_part
    assert "| 1= |" in configs_part and "| 3= |" in configs_part
    assert "0 1 2 (n=3)" in configs_part and "not separated from" in configs_part
    assert "images seen" in configs_part and "![curves.png](curves.png)" in md
    assert "min..max ranges do not overlap" in md  # the rule, stated
    assert "failed: boom" in runs_part
    rows = read_csv(files["configs_csv"])
    half = next(r for r in rows if r["name"] == "unet/mobilenet x0.5")
    assert half["n"] == "3" and float(half["miou_std"]) == pytest.approx(0.01)
    assert Image.open(files["curves"]).size[0] > 300


# -- test scores, runtime accuracy, noisy latency ---------------------------------------------


def test_test_miou_column_only_when_a_run_has_it(tmp_path):
    plain = tmp_path / "plain"
    fake_run(plain / "a", 0.5, 0.40)
    assert "| test mIoU |" not in write_report(plain)["md"].read_text()

    tested = tmp_path / "tested"
    fake_run(tested / "a", 0.5, 0.40, metrics_extra={"test/miou": 0.31, "test/iou_road": 0.8})
    fake_run(tested / "b", 1.0, 0.45, metrics_extra={"test": {"test/miou": 0.33}})
    fake_run(tested / "c", 0.75, 0.42)  # trained without test_split
    files = write_report(tested)
    rows = {r["run"]: r for r in read_csv(files["csv"])}
    assert float(rows["a"]["test_miou"]) == 0.31 and float(rows["a"]["test_iou_road"]) == 0.8
    assert float(rows["b"]["test_miou"]) == 0.33 and rows["c"]["test_miou"] == ""
    runs_part = files["md"].read_text().split("## Runs")[1]
    header = runs_part.strip().splitlines()[0].split(" | ")
    cells = [line.split(" | ") for line in runs_part.splitlines() if "| 0.5 |" in line][0]
    assert cells[header.index("test mIoU")] == "31.00"
    # Selection stays on val: the row's mIoU is the val score.
    assert cells[header.index("mIoU")] == "40.00"


def test_every_exported_runtime_gets_an_accuracy_column_with_its_delta(tmp_path):
    export = {
        "precision": "fp32",
        "accuracy": {
            "split": "val",
            "miou": {"pytorch": 0.6510, "onnxruntime": 0.6509, "onnxruntime_int8": 0.6487},
            "miou_delta_points": {"onnxruntime": -0.01, "onnxruntime_int8": -0.23},
        },
    }
    fake_run(tmp_path / "runs" / "a", 0.5, 0.65, export=export)
    files = write_report(tmp_path / "runs")
    row = read_csv(files["csv"])[0]
    assert float(row["miou onnxruntime int8"]) == 0.6487
    assert float(row["delta onnxruntime int8"]) == -0.23
    assert float(row["miou onnxruntime fp32"]) == 0.6509 and row["runtime_split"] == "val"
    md = files["md"].read_text()
    assert "mIoU pytorch fp32 | mIoU onnxruntime fp32 | mIoU onnxruntime int8" in md
    assert "64.87 (-0.23)" in md and "65.09 (-0.01)" in md


def test_runtime_labels():
    from segbench.evaluation.runs import runtime_label

    assert runtime_label("onnxruntime", {}) == "onnxruntime fp32"
    assert runtime_label("onnxruntime_int8", {}) == "onnxruntime int8"
    assert runtime_label("tensorrt", {"precision": "fp16"}) == "tensorrt fp16"
    assert runtime_label("pytorch", {}) == "pytorch fp32"


def test_noisy_latency_is_marked_in_table_and_plot(tmp_path):
    from segbench.evaluation.aggregate import aggregate
    from segbench.evaluation.plots import cost_axis
    from segbench.evaluation.runs import collect

    root = tmp_path / "runs"
    quiet = {"rel_spread": 0.02, "noisy": False, "load_per_cpu": 0.5, "noisy_threshold": 0.1}
    loud = {"rel_spread": 0.35, "noisy": True, "load_per_cpu": 3.1, "noisy_threshold": 0.1}
    fake_run(root / "a", 0.5, 0.40, ms=156.0, latency_extra=quiet)
    fake_run(root / "b", 1.0, 0.45, ms=2908.0, latency_extra=loud)
    fake_run(root / "c", 0.35, 0.35, ms=60.0, latency_extra=quiet)
    files = write_report(root)
    md = files["md"].read_text()
    assert "156.0 (2%)" in md and "2908.0 (35%, noisy, load 3.1/CPU)" in md
    assert "spread over 10%" in md  # the threshold, stated
    row = next(r for r in read_csv(files["csv"]) if r["run"] == "b")
    assert row["ms pytorch cpu fp32 b1 noisy"] == "True"
    assert float(row["ms pytorch cpu fp32 b1 load/cpu"]) == 3.1

    configs = aggregate(collect(root))
    key, label, reason = cost_axis(configs)
    assert key == "ms pytorch cpu fp32 b1" and "Test CPU" in label and "1 noisy" in reason
    # Seeds timed at different speeds make the configuration noisy even if each row was not.
    from segbench.evaluation.aggregate import combine_latency

    rows = [{"median_ms": m, "rel_spread": 0.01, "noisy": False} for m in (100, 101, 150)]
    combined = combine_latency("k", rows)
    assert combined["k"] == 101 and combined["k noisy"] and combined["k spread"] == 0.5 / 1.01
    # A configuration without a CPU latency: the whole plot uses GFLOPs, and says why.
    configs[0].pop("ms pytorch cpu fp32 b1")
    key, label, reason = cost_axis(configs)
    assert key == "gflops" and "1 of 3 configurations have no CPU latency" in reason


def test_metrics_json_states_the_budget_and_the_report_shows_it(tmp_path, data_dir):
    from tests.conftest import ROOT, SYNTHETIC, compose_config

    from segbench.training.train import train

    overrides = [
        *SYNTHETIC,
        "model=tiny",
        f"hydra.searchpath=[file://{ROOT / 'tests' / 'sweep_configs'}]",
        "logger=csv",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "callbacks.rich_progress_bar=null",
        "callbacks.model_cost.latency_runs=0",
    ]
    run = tmp_path / "runs" / "one"
    metrics = train(compose_config("train", run, overrides, data_dir))
    # 2 epochs x 3 batches x 4 images, all counted.
    assert metrics["images_seen"] == 24 and metrics["steps"] == 6
    assert metrics["device"] and metrics["devices"] == 1 and metrics["precision"]
    row = read_csv(write_report(tmp_path / "runs")["csv"])[0]
    assert (
        row["images_seen"] == "24" and row["epochs"] == "2" and row["device"] == metrics["device"]
    )


# -- a seeded sweep end to end (train.py -m; slow) ---------------------------------------------


@pytest.mark.slow
def test_seeded_sweep_reports_mean_spread_curves_and_not_separated(tmp_path):
    """Two configurations x three seeds through `train.py -m experiment=arch_comparison`.

    TinyNet ignores the backbone width, so both configurations are the same network and,
    with deterministic CPU training, score alike per seed: the report must not rank them.
    """
    import os
    import subprocess

    from tests.conftest import ROOT, SYNTHETIC

    args = [
        "-m",
        "experiment=arch_comparison",
        f"hydra.searchpath=[file://{ROOT / 'tests' / 'sweep_configs'}]",
        "hydra.sweeper.params.model=tiny",
        "hydra.sweeper.params.backbone=mobilenet",
        "backbone.width=0.5,1.0",
        *SYNTHETIC,
        "augment=none",
        "trainer.deterministic=true",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "logger=csv",
        "profile_runtimes=[pytorch]",
        "callbacks.rich_progress_bar=null",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.data_dir={tmp_path / 'data'}",
        # All these overrides in the dir name would pass the 255-character limit.
        "hydra.sweep.subdir=w${backbone.width}_seed${seed}",
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    sweep = tmp_path / "logs" / "arch_comparison" / "multiruns" / "synthetic"
    assert json.loads((sweep / "sweep_status.json").read_text())["counts"]["ok"] == 6
    assert sorted(p.name.split("seed")[1] for p in sweep.glob("*seed*")) == list("001122")

    md = (sweep / "comparison.md").read_text()
    configs_part = md.split("## Runs")[0]
    lines = [line for line in configs_part.splitlines() if line.startswith("| 1= |")]
    assert len(lines) == 2, configs_part  # both share rank 1: not separated
    for line in lines:
        assert "0 1 2 (n=3)" in line and " ± " in line and "tinynet/mobilenet x" in line
    header = configs_part.split("## Configurations (over seeds)")[1].strip().splitlines()[0]
    cells = lines[0].split(" | ")
    images = cells[header.split(" | ").index("images seen")]
    assert images == "24"  # 3 epochs x 2 batches x 4 images
    assert Image.open(sweep / "curves.png").size[0] > 300
    for run in sweep.glob("*seed*"):
        assert len(json.loads((run / "metrics.json").read_text())["history"]) == 3
        latency = json.loads((run / "profile.json").read_text())["latency"]
        assert all(r["rounds"] == 3 and "noisy" in r and r["load_avg"] for r in latency)


def test_segbench_report_command_as_documented(seeded, runs, tmp_path):
    """`segbench report <dir>` in a fresh process, on seeds and on failed/skipped runs."""
    import os
    import subprocess

    from tests.conftest import ROOT

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    for folder in (seeded, runs):
        proc = subprocess.run(
            [sys.executable, "-m", "segbench.cli", "report", str(folder), "--classes", "road"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "## Configurations (over seeds)" in proc.stdout and "IoU road" in proc.stdout
        assert (folder / "comparison.md").is_file() and (folder / "pareto.png").is_file()

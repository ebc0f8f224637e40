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
                    "data": {
                        "dataset": {"_target_": "segbench.data.camvid.CamVid"},
                        "image_size": [360, 480],
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
    assert set(files) == {"md", "csv", "pareto"}
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
    table = [line for line in md.splitlines() if line.startswith("| ")]
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

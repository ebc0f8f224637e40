"""A new user's first hour: multiruns from any directory, reports of sweeps with skipped and
failed jobs, job checkpoints pasted as written, ``device=``, ``data.root=``, resume on a
changed config, and what evaluation and export show."""

import functools
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from PIL import Image
from tests.conftest import ROOT, SYNTHETIC, compose_config
from torch import nn

from segbench.config import check_group_overrides, save_resolved
from segbench.deploy.export import export, summary_table
from segbench.env import job_dirname
from segbench.errors import ConfigError
from segbench.evaluation import evaluate as evaluate_module
from segbench.evaluation.evaluate import checkpoint_data, evaluate, spread_indices, stored_root
from segbench.evaluation.visualize import PANEL_TITLES, overlay_figure, overlay_grid, overlay_panels
from segbench.models.checkpoint import read_checkpoint
from segbench.runtimes.pytorch import torch_device
from segbench.training.status import read_status
from segbench.training.sweep import run_job

SAFE = re.compile(r"[A-Za-z0-9._+@-]+")
FAST = [*SYNTHETIC, "logger=csv", "callbacks.rich_progress_bar=null"]


def _run(args: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SEGBENCH_ROOT"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc


# -- multiruns start from any directory, without paths.log_dir ----------------------------------


@pytest.mark.parametrize(
    "launcher",
    [
        pytest.param([], id="basic"),
        pytest.param(
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            id="joblib",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_plain_multirun_from_any_directory(tmp_path, launcher):
    # hydra.sweep.dir interpolates paths.log_dir before Hydra's runtime config exists.
    _ok(
        _run(
            [
                sys.executable,
                ROOT / "train.py",
                "-m",
                "model=unet,fcn",
                "debug=fdr",
                *FAST,
                *launcher,
            ],
            tmp_path,
        )
    )
    (sweep,) = (tmp_path / "logs" / "debug" / "multiruns").iterdir()
    summary = json.loads((sweep / "sweep_status.json").read_text())
    assert summary["counts"] == {"ok": 2, "failed": 0, "skipped": 0}
    assert (tmp_path / "data" / "synthetic" / "train").is_dir()  # paths follow the launch dir


# -- a sweep with a trained, a failed and two skipped jobs --------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("sweep")
    _ok(
        _run(
            [
                sys.executable,
                ROOT / "train.py",
                "-m",
                "experiment=arch_comparison",
                "hydra.sweeper.params.model=fcn",  # a segbench class: checkpoints open
                "hydra.sweeper.params.backbone='mobilenet,erfnet'",  # FCN refuses erfnet
                "hydra.sweeper.params.seed=0",  # one seed: one job per pair
                *FAST,
                "data.batch_size=4,-1",  # -1 fails in the DataLoader: a failed job
                "paths.data_dir=data",  # relative: the checkpoint must store it absolute
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=1",
                "profile=false",
                "callbacks.model_cost.latency_runs=0",
            ],
            cwd,
        )
    )
    return cwd / "logs" / "arch_comparison" / "multiruns" / "synthetic"


@pytest.fixture(scope="module")
def job_ckpt(sweep) -> Path:
    (ok,) = [
        r
        for r in json.loads((sweep / "sweep_status.json").read_text())["runs"]
        if r["status"] == "ok"
    ]
    return sweep / ok["dir"] / "checkpoints" / "best.ckpt"


def _segbench() -> list:
    script = Path(sys.executable).parent / "segbench"
    return [script] if script.is_file() else [sys.executable, "-m", "segbench.cli"]


@pytest.mark.parametrize(
    "command",
    [_segbench() + ["report"], [sys.executable, "-m", "segbench.evaluation.report"]],
    ids=["segbench report", "python -m segbench.evaluation.report"],
)
def test_report_on_a_sweep_with_skipped_and_failed_runs(sweep, tmp_path, command):
    counts = json.loads((sweep / "sweep_status.json").read_text())["counts"]
    assert counts == {"ok": 1, "failed": 1, "skipped": 2}
    proc = _ok(_run([*command, sweep], tmp_path))
    table = (sweep / "comparison.md").read_text()
    assert "skipped" in table and "failed" in table, proc.stdout + table


def test_job_checkpoint_pastes_into_evaluate_as_written(sweep, job_ckpt, tmp_path):
    job = job_ckpt.parents[1]
    assert SAFE.fullmatch(job.name), job.name
    assert "data.image_size-64_96" in job.name  # [64,96] in the name without brackets or comma
    arg = f"ckpt_path={job_ckpt}"
    (override,) = OverridesParser.create().parse_overrides([arg])
    assert override.value() == str(job_ckpt)
    proc = _ok(
        _run([sys.executable, ROOT / "evaluate.py", arg, f"hydra.run.dir={tmp_path}"], tmp_path)
    )
    assert (tmp_path / "eval.json").is_file(), proc.stderr[-2000:]


def test_train_stores_the_absolute_data_root(sweep, job_ckpt):
    stored = read_checkpoint(job_ckpt)["hyper_parameters"]["datamodule"]["root"]
    assert stored == str(sweep.parents[3] / "data" / "synthetic")  # given as paths.data_dir=data


@pytest.mark.parametrize(
    "value,expected",
    [
        (
            "backbone-mobilenet__data.image_size-[64,96]",
            "backbone-mobilenet__data.image_size-64_96",
        ),
        ("data.image_size-[64, 96]", "data.image_size-64_96"),  # same overrides, same dir
        ("init.checkpoint-/runs/a b/best.ckpt", "init.checkpoint--runs-ab-best.ckpt"),
        ("loss.class_weights-'median_freq'", "loss.class_weights-median_freq"),
        ("", "job"),
    ],
)
def test_job_dir_names_need_no_quoting(value, expected):
    name = job_dirname(value)
    assert name == expected
    (override,) = OverridesParser.create().parse_overrides([f"ckpt_path=/s/{name}/best.ckpt"])
    assert override.value() == f"/s/{name}/best.ckpt"
    long = job_dirname("x-" + "a" * 400)
    assert len(long) <= 200 and long != job_dirname("x-" + "a" * 399)


# -- device= of evaluate.py and export.py, the budget devices ----------------------------------


def test_device_cuda_is_accepted(job_ckpt, tmp_path):
    args = [f"ckpt_path={job_ckpt}", "device=cuda", f"hydra.run.dir={tmp_path}"]
    proc = _run([sys.executable, ROOT / "evaluate.py", *args], tmp_path)
    if torch.cuda.is_available():
        _ok(proc)
        return
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: device='cuda': CUDA is not available on this machine")
    assert "config group" not in proc.stderr
    # export.py takes the same key, and says the same before building anything.
    with pytest.raises(ConfigError, match="CUDA is not available"):
        export(compose_config("export", tmp_path / "export", args[:2]))
    assert not (tmp_path / "export" / "model.onnx").exists()


def test_budget_devices_and_the_device_key_do_not_collide(tmp_path):
    check_group_overrides(["device=cuda"])  # a plain key now, not a config group
    cfg = compose_config(
        "profile",
        tmp_path,
        ["+budget/device@budget.devices.nano2=jetson_orin_nano", "~budget.devices.jetson_agx_orin"],
    )
    assert cfg.budget.devices.nano2.name == "Jetson Orin Nano 8GB"
    assert "jetson_agx_orin" not in cfg.budget.devices and "cpu_local" in cfg.budget.devices
    assert compose_config("evaluate", tmp_path, ["ckpt_path=x", "device=cuda:0"]).device == "cuda:0"


def test_torch_device_says_what_is_missing(monkeypatch):
    assert torch_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="not a torch device"):
        torch_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"(?s)device='cuda'.*CUDA is not available.*device=cpu"):
        torch_device("cuda")


# -- data.root= re-points a checkpoint's dataset -----------------------------------------------


def test_data_root_alone_repoints_the_checkpoint_dataset(job_ckpt, tmp_path, monkeypatch):
    moved = tmp_path / "moved"
    hparams = read_checkpoint(job_ckpt)["hyper_parameters"]
    export_cfg = compose_config("export", tmp_path, [f"ckpt_path={job_ckpt}", f"data.root={moved}"])
    assert checkpoint_data(export_cfg, hparams).root == str(moved)
    cfg = compose_config(
        "evaluate", tmp_path, [f"ckpt_path={job_ckpt}", f"data.root={moved}", "num_overlays=3"]
    )
    datamodule = checkpoint_data(cfg, hparams)
    assert datamodule.root == str(moved)
    assert datamodule.class_names == hparams["data"]["class_names"]
    picked = []
    stack = evaluate_module.stack_samples
    monkeypatch.setattr(
        evaluate_module, "stack_samples", lambda ds, idx: picked.append(idx) or stack(ds, idx)
    )
    report = evaluate(cfg)
    assert 0 <= report["miou"] <= 1 and (moved / "val").is_dir()  # regenerated where pointed
    assert picked == [[0, 4, 7]]  # overlay frames spread over the 8 of the val split


def test_a_relative_root_of_an_old_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match=r"(?s)data.root='data/camvid'.*relative.*fix: .*data.root="
    ):
        stored_root("data/camvid", "old.ckpt")
    (tmp_path / "data" / "camvid").mkdir(parents=True)
    assert stored_root("data/camvid", "old.ckpt") == str(tmp_path / "data" / "camvid")
    assert stored_root("/abs/camvid", "old.ckpt") == "/abs/camvid"


# -- resume=auto on a changed config ------------------------------------------------------------


def _job(tmp_path, data_dir, *overrides, multirun=False):
    extra = ["hydra.mode=MULTIRUN"] if multirun else []
    return compose_config("train", tmp_path, [*FAST, "resume=auto", *extra, *overrides], data_dir)


def test_resume_auto_says_what_changed_and_what_to_do(tmp_path, data_dir):
    calls = []

    def task(cfg):  # what train() leaves behind: the resolved config and the metrics
        calls.append(cfg.trainer.max_epochs)
        save_resolved(cfg, Path(cfg.paths.output_dir) / "config.yaml")
        (Path(cfg.paths.output_dir) / "metrics.json").write_text('{"best_val_miou": 0.5}')
        return {"best_val_miou": 0.5}

    assert run_job(_job(tmp_path, data_dir, "trainer.max_epochs=3"), task) == 0.5
    # The same config, or one that differs only where files go or how data loads: not redone.
    assert run_job(_job(tmp_path, data_dir, "trainer.max_epochs=3"), task) == 0.5
    assert (
        run_job(_job(tmp_path, data_dir, "trainer.max_epochs=3", "data.num_workers=1"), task) == 0.5
    )
    assert calls == [3]
    with pytest.raises(ConfigError) as err:
        run_job(_job(tmp_path, data_dir, "trainer.max_epochs=5", "optimizer.lr=0.01"), task)
    message = str(err.value)
    assert "trainer.max_epochs: 3 -> 5" in message and "optimizer.lr: 0.001 -> 0.01" in message
    assert "resume=never" in message and "hydra.run.dir=" in message and calls == [3]
    # In a sweep the job is recorded as failed with the same reason, and the sweep goes on.
    assert run_job(_job(tmp_path, data_dir, "trainer.max_epochs=5", multirun=True), task) is None
    status = read_status(tmp_path)
    assert status["status"] == "failed" and "trainer.max_epochs: 3 -> 5" in status["reason"]
    # resume=never retrains the dir with the new config.
    run_job(_job(tmp_path, data_dir, "trainer.max_epochs=5", "resume=never"), task)
    assert calls == [3, 5] and read_status(tmp_path)["status"] == "ok"


# -- what evaluation and export show ------------------------------------------------------------

META = {
    "class_names": ["road", "car"],
    "colors": [[128, 64, 128], [0, 0, 142]],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "ignore_index": 255,
}


def test_overlays_have_column_titles_and_a_colour_legend(tmp_path):
    images = torch.zeros(2, 3, 32, 48)
    targets = torch.zeros(2, 32, 48, dtype=torch.long)
    targets[:, :, 24:] = 255
    preds = torch.ones(2, 32, 48, dtype=torch.long)
    fig = overlay_figure(images, targets, preds, META, row_labels=["val #0", "val #7"])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == list(PANEL_TITLES)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["val #0", "val #7"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["road", "car", "ignored (uncoloured)"]
    # ERFNet's encoder-only stage predicts at 1/8: shown scaled to the image.
    low = overlay_panels(images, targets, torch.ones(2, 4, 6, dtype=torch.long), META)
    assert low.shape == (2, 32, 3 * 48, 3)
    path = overlay_grid(images, targets, preds, META, tmp_path / "overlays.png")
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    for color in META["colors"]:  # the legend shows each class colour unblended
        assert (pixels == color).all(1).any(), color


def test_spread_indices():
    assert spread_indices(101, 6) == [0, 20, 40, 60, 80, 100]
    assert spread_indices(3, 6) == [0, 1, 2] and spread_indices(10, 1) == [0]
    assert spread_indices(0, 3) == [] and spread_indices(5, 0) == []


def test_unknown_option_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"e\.g\. model=segnet$"):
        check_group_overrides(["model=segnt"])
    with pytest.raises(ConfigError, match=r"e\.g\. \+budget/device@budget\.devices\.x=jetson_"):
        check_group_overrides(["+budget/device@budget.devices.x=jetson_orn"])


def test_export_prints_parity_and_miou_per_runtime():
    report = {
        "parity": {"onnxruntime": {"agreement_pct": 99.95, "max_abs_diff": 3.2e-5}},
        "accuracy": {
            "split": "val",
            "images": 8,
            "miou": {"pytorch": 0.5123, "onnxruntime": 0.5121},
            "miou_delta_points": {"onnxruntime": -0.02},
        },
    }
    lines = summary_table(report).splitlines()
    assert "mIoU val (8 img)" in lines[0]
    assert lines[1].split() == ["pytorch", "reference", "-", "51.23", "-"]
    assert lines[2].split() == ["onnxruntime", "99.950%", "3.2e-05", "51.21", "-0.02"]


def test_model_summary_counts_flops_instead_of_zero():
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from segbench.profiling.flops import count_flops
    from segbench.training.module import SegmentationModule

    backbone = {"name": "mobilenet", "version": "v2", "width": 0.35, "weights": None}
    backbone["encoders"] = {"v2": {"0.35": "tu-mobilenetv2_035"}}
    net = {"_target_": "segbench.models.FCN", "backbone": backbone, "num_classes": 2}
    data = {**META, "num_classes": 2, "image_size": [64, 96]}
    module = SegmentationModule(
        net, data, nn.CrossEntropyLoss(), functools.partial(torch.optim.SGD, lr=0.1)
    )
    flops = ModelSummary(module, max_depth=1).total_flops
    assert flops > 0 and flops == pytest.approx(count_flops(module.net, (64, 96))["gflops"] * 1e9)


def test_noise_lines_are_dropped(tmp_path):
    from segbench.training.loggers import WandbLogger, drop_noise

    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    assert "anonymous" not in logger._wandb_init  # wandb warns on every run when it is passed
    drop_noise()
    tip = logging.LogRecord(
        "lightning.pytorch.utilities.rank_zero", 20, "", 0, "💡 Tip: x", None, None
    )
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert not all(f.filter(tip) for f in rank_zero.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop_noise()
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1
        )
        warnings.warn("a warning that matters", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning that matters"]

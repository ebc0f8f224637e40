import json
import math
import os
import subprocess
import sys

import pytest
import torch
from tests.conftest import ROOT, compose_config

from segbench.evaluation.evaluate import evaluate
from segbench.models import load_network
from segbench.training.module import SegmentationModule
from segbench.training.train import train


def test_fast_dev_run_synthetic(train_cfg):
    train(train_cfg("debug=fdr"))


def test_fast_dev_run_camvid(train_cfg, camvid_root):
    cfg = train_cfg(
        "data=camvid",
        f"data.root={camvid_root}",
        "debug=fdr",
        "data.batch_size=2",
        "backbone.width=0.35",
    )
    train(cfg)


def test_checkpoint_rebuilds_network_and_evaluate_agrees(train_cfg, tmp_path):
    cfg = train_cfg("trainer.max_epochs=2", "trainer.limit_train_batches=2")
    metrics = train(cfg)
    out = tmp_path
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert len(metrics["history"]) == 2 and metrics["params"] > 0
    assert set(metrics["per_class_iou"]) == set(cfg.data.class_names)
    best = out / "checkpoints" / "best.ckpt"
    assert best.is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "config.yaml").is_file()

    net, hparams = load_network(best)
    assert not net.training
    assert net(torch.zeros(1, 3, 45, 70)).shape == (1, cfg.data.num_classes, 45, 70)

    eval_dir = tmp_path / "eval"
    eval_cfg = compose_config("evaluate", eval_dir, [f"ckpt_path={best}"])
    report = evaluate(eval_cfg)
    assert math.isclose(report["miou"], metrics["best_val_miou"], abs_tol=1e-4)
    assert (eval_dir / "eval.json").is_file()


def test_metrics_count_epochs_trained_not_validations(train_cfg, tmp_path):
    cfg = train_cfg(
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.check_val_every_n_epoch=2",
    )
    metrics = train(cfg)
    assert metrics["epochs"] == 3
    assert metrics["validations"] == 1 and [r["epoch"] for r in metrics["history"]] == [1]


def test_bad_monitor_fails_before_training(train_cfg):
    from segbench.errors import ConfigError

    with pytest.raises(ConfigError, match="(?s)val/mIoU.*allowed: val/miou"):
        train(train_cfg("callbacks.model_checkpoint.monitor=val/mIoU"))


def test_missing_dataset_root_is_one_line_not_a_traceback(tmp_path):
    """The error raised inside Hydra's instantiate still reaches the user as segbench's message."""
    missing = tmp_path / "camvid"
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=camvid",
            f"data.root={missing}",
            "logger=csv",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "InstantiationException" not in proc.stderr
    error = proc.stderr[proc.stderr.index("error: ") :]
    assert error.startswith(f"error: {missing}: dataset root does not exist")
    assert "fix: set data.root" in error


def test_experiment_logger_settings_without_the_logger_are_ignored(train_cfg, tmp_path, caplog):
    # experiment=arch_comparison sets logger.wandb.project; logger=csv then leaves that
    # setting without a _target_, which must not fail every job of the sweep.
    cfg = train_cfg(
        "experiment=arch_comparison",
        "hydra.mode=RUN",
        "logger=csv",
        "profile=false",
        "debug=fdr",
        "backbone.width=0.35",
    )
    assert "_target_" not in cfg.logger.wandb
    train(cfg)
    assert "logger.wandb has settings but no _target_" in caplog.text
    assert (tmp_path / "csv").is_dir()


class HostReads:
    """Counts tensor values read back to Python: each one waits for a GPU's queue to drain.

    torch.optim's own reads are not counted: its step counters stay on the host even
    for CUDA parameters (Adam and SGD without ``capturable``), so they wait for nothing.
    """

    METHODS = ("item", "tolist", "__bool__", "__float__", "__int__")

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                caller = sys._getframe(1).f_code.co_filename
                if f"torch{os.sep}optim{os.sep}" not in caller:
                    self.count += 1
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


def _reads_per_step(train_cfg, monkeypatch, *overrides: str) -> float:
    """Host reads per training step: a 9-step epoch minus a 3-step one, over 6 steps."""
    counts = []
    for steps in (3, 9):
        cfg = train_cfg(
            "loss=ohem", f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0", "data.batch_size=2", *overrides,
        )  # fmt: skip
        with monkeypatch.context() as mp:
            reads = HostReads(mp)
            train(cfg)
        counts.append(reads.count)
    return (counts[1] - counts[0]) / 6


def test_a_training_step_reads_nothing_back_on_an_accelerator(train_cfg, monkeypatch):
    """On a GPU, a read of a tensor value waits for the step: the loss (OHEM), the divergence
    check and the progress bar read nothing between the logger's every-50-step reads.
    Here on the CPU (where reads are free and happen every step) the accelerator's choices
    are forced: the module's and the divergence check's."""
    every_step = _reads_per_step(train_cfg, monkeypatch, "trainer.log_every_n_steps=1")
    assert every_step >= 2  # the divergence check and the bar's train/loss, at least
    monkeypatch.setattr(SegmentationModule, "_host_reads_are_free", lambda self: False)
    deferred = _reads_per_step(
        train_cfg,
        monkeypatch,
        "callbacks.stop_on_non_finite.sync_every=50",
        "trainer.log_every_n_steps=50",
    )
    assert deferred == 0

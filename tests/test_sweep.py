"""Sweep jobs: status files, skipped and failed runs, resume=auto, the end-of-sweep callback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tests.conftest import ROOT, SYNTHETIC, compose_config

from segbench.errors import ConfigError
from segbench.training.status import read_status, write_status
from segbench.training.sweep import SweepCallback, run_job, summarize
from segbench.training.wandb_offline import find_runs, read_run

TINY = ["model=tiny", f"hydra.searchpath=[file://{ROOT / 'tests' / 'sweep_configs'}]"]


def _cfg(tmp_path, data_dir, *overrides, multirun=True):
    base = [
        *SYNTHETIC,
        *TINY,
        "logger=csv",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "callbacks.rich_progress_bar=null",
    ]
    if multirun:
        base.append("hydra.mode=MULTIRUN")
    return compose_config("train", tmp_path, [*base, *overrides], data_dir)


def test_incompatible_pair_is_skipped_with_the_reason(tmp_path, data_dir):
    calls = []
    cfg = _cfg(tmp_path, data_dir, "backbone=resnet50")
    assert run_job(cfg, calls.append) is None
    status = read_status(tmp_path)
    assert status["status"] == "skipped" and calls == []
    assert "TinyNet does not take this backbone" in status["reason"]
    assert "allowed: mobilenet" in status["reason"]
    assert "backbone=resnet50" in status["overrides"]


def test_incompatible_pair_in_a_single_run_is_an_error(tmp_path, data_dir):
    cfg = _cfg(tmp_path, data_dir, "backbone=resnet50", multirun=False)
    with pytest.raises(ConfigError, match="TinyNet does not take"):
        run_job(cfg, lambda c: {})
    assert read_status(tmp_path)["status"] == "skipped"


def test_crash_is_recorded_as_failed_and_does_not_raise_in_a_sweep(tmp_path, data_dir):
    def crash(cfg):
        raise RuntimeError("CUDA out of memory (simulated)")

    assert run_job(_cfg(tmp_path, data_dir), crash) is None
    status = read_status(tmp_path)
    assert status == {
        "status": "failed",
        "reason": "RuntimeError: CUDA out of memory (simulated)",
        "overrides": status["overrides"],
    }
    with pytest.raises(RuntimeError):
        run_job(_cfg(tmp_path / "single", data_dir, multirun=False), crash)


def test_resume_auto_skips_finished_and_continues_unfinished(tmp_path, data_dir):
    seen = []

    def task(cfg):
        seen.append(cfg.get("ckpt_path"))
        (Path(cfg.paths.output_dir) / "metrics.json").write_text(json.dumps({"best_val_miou": 0.5}))
        return {"best_val_miou": 0.5}

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "last.ckpt").write_bytes(b"x")
    (ckpts / ".last.ckpt.abc.tmp").write_bytes(b"half")  # a write killed half-way
    cfg = _cfg(tmp_path, data_dir, "resume=auto")
    assert run_job(cfg, task) == 0.5
    assert seen == [str(ckpts / "last.ckpt")]
    assert not (ckpts / ".last.ckpt.abc.tmp").exists()
    assert read_status(tmp_path)["status"] == "ok"
    # Finished: not redone.
    assert run_job(_cfg(tmp_path, data_dir, "resume=auto"), task) == 0.5
    assert len(seen) == 1
    # Without resume=auto the job is not run there: the finished run's files stay as they are.
    assert run_job(_cfg(tmp_path, data_dir), task) is None
    assert len(seen) == 1 and read_status(tmp_path)["status"] == "ok"


def test_bad_resume_mode_names_the_choices(tmp_path, data_dir):
    with pytest.raises(ConfigError, match="(?s)resume='yes'.*allowed: .*auto"):
        run_job(_cfg(tmp_path, data_dir, "resume=yes"), lambda c: {})


def _sweep_config(sweep_dir: Path):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})


def test_callback_summarizes_and_exits_nonzero_only_if_nothing_succeeded(tmp_path):
    write_status(tmp_path / "a", "failed", "RuntimeError: boom")
    write_status(tmp_path / "b", "skipped", "backbone='resnet50': ...")
    with pytest.raises(SystemExit, match="no run of the sweep succeeded"):
        SweepCallback(report=False).on_multirun_end(_sweep_config(tmp_path))
    write_status(tmp_path / "c", "ok")
    SweepCallback(report=False).on_multirun_end(_sweep_config(tmp_path))
    summary = json.loads((tmp_path / "sweep_status.json").read_text())
    assert summary["counts"] == {"ok": 1, "failed": 1, "skipped": 1}
    assert summary == summarize(tmp_path)
    assert {r["dir"]: r["status"] for r in summary["runs"]} == {
        "a": "failed",
        "b": "skipped",
        "c": "ok",
    }


def test_wandb_group_and_name_come_from_the_sweep(tmp_path, data_dir):
    cfg = _cfg(
        tmp_path,
        data_dir,
        "logger=wandb",
        "backbone.width=0.5",
        f"hydra.sweep.dir={tmp_path}/my_sweep",
    )
    assert cfg.logger.wandb.group == "my_sweep"
    assert cfg.logger.wandb.name == "tiny-mobilenet-v2-w0.5"
    single = _cfg(tmp_path, data_dir, "logger=wandb", "backbone=resnet50", multirun=False)
    assert single.logger.wandb.group == "train" and single.logger.wandb.name == "tiny-resnet50"


def test_arch_comparison_states_its_grid_and_shared_budget(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_config("train", tmp_path, ["experiment=arch_comparison"])
    hydra_cfg = HydraConfig.get()
    assert set(hydra_cfg.sweeper.params) == {"model", "backbone", "seed"}
    # Every configuration over three seeds: the report gives mean and spread.
    assert str(hydra_cfg.sweeper.params.seed).split(",") == ["0", "1", "2"]
    # The whole zoo: every conf/model and conf/backbone option is in the grid.
    conf = Path(__file__).parents[1] / "conf"
    for group in ("model", "backbone"):
        options = {p.stem for p in (conf / group).glob("*.yaml")}
        assert set(hydra_cfg.sweeper.params[group].split(",")) == options, group
    assert str(hydra_cfg.mode) == "RunMode.MULTIRUN"
    assert cfg.profile is True and cfg.resume == "auto"
    # Deterministic job dirs (no timestamp): re-running the command finds its jobs.
    sweep_yaml = OmegaConf.to_yaml(hydra_cfg.sweep)
    assert "${now:" not in sweep_yaml and "override_dirname" in sweep_yaml


def test_launcher_and_search_configs_compose(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    compose_config("train", tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert HydraConfig.get().launcher.n_jobs == 2
    compose_config(
        "train",
        tmp_path,
        [
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.devices=4",
            "hydra.launcher.partition=gpu",
        ],
    )
    launcher = HydraConfig.get().launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 4 and launcher.tasks_per_node == 4
    compose_config("train", tmp_path, ["hparams_search=optuna"])
    sweeper = HydraConfig.get().sweeper
    assert sweeper.direction == "maximize" and sweeper.sampler.seed == 1234
    assert set(sweeper.params) == {"optimizer.lr", "optimizer.weight_decay", "loss"}


# -- end to end through train.py (subprocesses; slow) ---------------------------------------

GRID = [
    *TINY[1:],
    "hydra.sweeper.params.model=tiny",
    "hydra.sweeper.params.backbone='mobilenet,resnet50'",
    "hydra.sweeper.params.seed=0",  # one seed: one run per pair (the default sweeps 0,1,2)
    *SYNTHETIC,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_cost.latency_runs=2",
    "callbacks.prediction_images.every_n_epochs=1",
]


def _train(tmp_path, *args, check=True):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *args,
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweep_end_to_end_and_rerun_resumes(tmp_path, launcher):
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    # A crashing point (batch_size=-1 fails in the DataLoader) next to a good one.
    _train(tmp_path, "-m", "experiment=arch_comparison", *GRID, *extra, "data.batch_size=4,-1")
    sweep = tmp_path / "logs" / "arch_comparison" / "multiruns" / "synthetic"
    summary = json.loads((sweep / "sweep_status.json").read_text())
    assert summary["counts"] == {"ok": 1, "failed": 1, "skipped": 2}
    by_status = {r["status"]: r for r in summary["runs"]}
    assert "batch_size" in by_status["failed"]["reason"]
    assert "TinyNet does not take this backbone" in by_status["skipped"]["reason"]
    ok_dir = sweep / by_status["ok"]["dir"]
    metrics = json.loads((ok_dir / "metrics.json").read_text())

    run = read_run(find_runs(ok_dir)[0])
    assert run.group == "synthetic" and run.name == "tiny-mobilenet-v2-w1.0"
    assert run.project == "segbench-arch-comparison" and run.exit_code == 0
    assert run.config["model"]["_target_"] == "tests.tiny_net.TinyNet"  # resolved config
    assert run.series("val/miou") == pytest.approx([h["val/miou"] for h in metrics["history"]])
    assert {f"val/iou_{c}" for c in metrics["per_class_iou"]} <= set(run.summary)
    assert run.summary["model/params"] == metrics["params"] and run.summary["model/gflops"] > 0
    image = run.summary["val/predictions"]
    assert (run.files_dir / image["filenames"][0]).is_file()

    # The same command again: finished runs are not redone, skipped stay skipped.
    mtime = (ok_dir / "metrics.json").stat().st_mtime_ns
    _train(tmp_path, "-m", "experiment=arch_comparison", *GRID, *extra, "data.batch_size=4,-1")
    assert (ok_dir / "metrics.json").stat().st_mtime_ns == mtime
    assert json.loads((sweep / "sweep_status.json").read_text())["counts"]["ok"] == 1


@pytest.mark.slow
def test_sweep_where_every_run_fails_exits_nonzero(tmp_path):
    proc = _train(
        tmp_path, "-m", "experiment=arch_comparison", *GRID, "data.batch_size=-1", check=False
    )
    assert proc.returncode != 0
    assert "no run of the sweep succeeded (1 failed, 1 skipped)" in proc.stderr


@pytest.mark.slow
def test_sweep_writes_the_comparison_report(tmp_path):
    _train(tmp_path, "-m", "experiment=arch_comparison", *GRID)
    sweep = tmp_path / "logs" / "arch_comparison" / "multiruns" / "synthetic"
    from segbench.evaluation.report import write_report

    written = write_report(sweep)
    assert written and all(Path(p).is_file() for p in written.values())


@pytest.mark.slow
def test_optuna_search_runs_and_reports_the_best(tmp_path):
    _train(
        tmp_path,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        *TINY[1:],
        "+hydra.sweeper.params.model=tiny",
        *SYNTHETIC,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "callbacks.rich_progress_bar=null",
        "logger=csv",
        "callbacks.model_cost.latency_runs=0",
    )
    results = list((tmp_path / "logs" / "hparams_search").rglob("optimization_results.yaml"))
    assert len(results) == 1
    best = OmegaConf.load(results[0])
    assert set(best.best_params) == {"optimizer.lr", "optimizer.weight_decay", "loss"}
    assert 0.0 <= best.best_value <= 1.0
    assert len(list(results[0].parent.rglob("status.json"))) == 2

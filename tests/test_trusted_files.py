"""Files you can trust: checkpoints that run no code, last.ckpt that is the last epoch,
reruns and resumes that lose nothing, divergence and write failures that stop clearly.

Everything goes through the entry points as a user runs them (``train.py``,
``evaluate.py``, ``export.py``, ``segbench profile``) in subprocesses.
"""

import csv
import errno
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.conftest import ROOT, SYNTHETIC
from tests.faults import KILL_ENV

ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
TINY = ["model=tiny", f"hydra.searchpath=[file://{ROOT / 'tests' / 'sweep_configs'}]"]
TRAIN = [
    *TINY,
    *SYNTHETIC,
    "logger=csv",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_cost.latency_runs=0",
]


def run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs ``python <args>`` from the repository root, as a user would."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train(run_dir: Path, data_dir: Path, *extra: str, env: dict | None = None):
    return run(
        "train.py",
        *TRAIN,
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={data_dir}",
        *extra,
        env=env,
    )


def user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Asserts a one-line ``error: ...`` naming ``needles`` and a fix, and no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert "error: " in proc.stderr, proc.stderr[-4000:]
    error = proc.stderr[proc.stderr.rindex("error: ") :]
    for needle in (*needles, "fix: "):
        assert needle in error, f"{needle!r} not in:\n{error}"
    return error


# --- checkpoints that run no code -------------------------------------------------------


class MakesMarker:
    """Unpickling this creates the marker folder: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def crafted_checkpoint(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A checkpoint that would create ``tmp_path/marker`` if opened carelessly.

    ``pickle``: an object whose unpickling runs ``os.mkdir``. The others hold plain
    values only, with a ``_target_`` that Hydra's ``instantiate`` would call:
    at ``hyper_parameters.net``, ``.datamodule`` or ``.datamodule.dataset``.
    Returns the file and the key the error must name.
    """
    marker = str(tmp_path / "marker")
    hparams = {
        "net": {"_target_": "segbench.models.FCN", "num_classes": 3, "backbone": {}},
        "data": {"num_classes": 3, "class_names": ["a", "b", "c"], "image_size": [64, 96]},
        "datamodule": {
            "_target_": "segbench.data.SegmentationDataModule",
            "dataset": {"_target_": "segbench.data.synthetic.SyntheticStreets", "_partial_": True},
        },
    }
    key = {
        "pickle": "pickled",
        "net": "hyper_parameters.net._target_",
        "datamodule": "hyper_parameters.datamodule._target_",
        "dataset": "hyper_parameters.datamodule.dataset._target_",
    }[kind]
    ckpt = {"state_dict": {"net.w": torch.zeros(1)}, "hyper_parameters": hparams}
    if kind == "pickle":
        ckpt["callbacks"] = {"x": MakesMarker(tmp_path / "marker")}
    elif kind == "net":
        hparams["net"] = {"_target_": "os.mkdir", "path": marker}
    elif kind == "datamodule":
        code = f"import os; os.mkdir({marker!r})"
        hparams["datamodule"] = {"_target_": "builtins.exec", "_args_": [code]}
    else:
        hparams["datamodule"]["dataset"] = {"_target_": "os.mkdir", "path": marker}
    path = tmp_path / f"{kind}.ckpt"
    torch.save(ckpt, path)
    return path, key


def open_with(command: str, ckpt: Path, tmp_path: Path, data_dir: Path):
    """Opens ``ckpt`` with one of the commands that take a checkpoint."""
    out = f"hydra.run.dir={tmp_path / command}"
    if command == "evaluate":
        return run("evaluate.py", f"ckpt_path={ckpt}", out)
    if command == "export":
        return run("export.py", f"ckpt_path={ckpt}", out)
    if command == "profile":  # `segbench profile ...`
        return run("-m", "segbench.cli", "profile", f"ckpt_path={ckpt}", out, "latency=false")
    if command == "train_init":
        return train(tmp_path / command, data_dir, f"init.checkpoint={ckpt}")
    return train(tmp_path / command, data_dir, f"ckpt_path={ckpt}")  # resume


COMMANDS = ["evaluate", "export", "profile", "train_init", "train_resume"]
# The fast suite opens both kinds with evaluate.py; the slow tests run the whole matrix.
FAST = {("evaluate", "pickle"), ("evaluate", "datamodule")}
CASES = [
    pytest.param(
        command,
        kind,
        marks=[] if (command, kind) in FAST else [pytest.mark.slow],
        id=f"{command}-{kind}",
    )
    for command in COMMANDS
    for kind in ("pickle", "net", "datamodule", "dataset")
]


@pytest.mark.parametrize("command,kind", CASES)
def test_crafted_checkpoint_is_refused_and_runs_nothing(command, kind, tmp_path, data_dir):
    ckpt, key = crafted_checkpoint(tmp_path, kind)
    proc = open_with(command, ckpt, tmp_path, data_dir)
    error = user_error(proc, str(ckpt), key, "refused")
    assert not (tmp_path / "marker").exists(), "opening the checkpoint ran its code"
    if kind != "pickle":
        assert "nothing was imported or run" in error


@pytest.mark.slow
def test_segbench_checkpoints_still_open_everywhere(tmp_path, data_dir):
    """The checks refuse crafted files, not segbench's own: a real run resumes and transfers."""
    first = tmp_path / "first"
    assert train(first, data_dir).returncode == 0
    last = first / "checkpoints" / "last.ckpt"
    proc = train(tmp_path / "init", data_dir, f"init.checkpoint={last}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = train(first, data_dir, "ckpt_path=last", "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(last, weights_only=True)["epoch"] == 1


# --- last.ckpt is the last epoch ---------------------------------------------------------


@pytest.mark.slow
def test_last_checkpoint_is_the_last_epoch_after_epochs_that_do_not_improve(tmp_path, data_dir):
    # mode=min on val/miou: every epoch after the first "does not improve", which is what a
    # plateau does to the real monitor. Lightning's save_last would leave last.ckpt at epoch 0.
    out = tmp_path / "run"
    proc = train(out, data_dir, "trainer.max_epochs=3", "callbacks.model_checkpoint.mode=min")
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["epoch"] < 2, "every epoch improved: the test proves nothing"
    assert (last["epoch"], last["global_step"]) == (2, 3 * 4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["last_checkpoint"] == str(out / "checkpoints" / "last.ckpt")
    assert [r["epoch"] for r in metrics["history"]] == [0, 1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


# --- a second run into the same dir neither mixes nor loses files ------------------------


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


@pytest.mark.slow
def test_second_run_into_the_same_dir_is_refused_and_loses_nothing(tmp_path, data_dir):
    out = tmp_path / "run"
    assert train(out, data_dir).returncode == 0
    before = snapshot(out)
    assert "checkpoints/best.ckpt" in before and "status.json" in before

    proc = train(out, data_dir, "optimizer.lr=0.01")
    user_error(proc, f"hydra.run.dir='{out}'", "already holds a training run", "ckpt_path=last")
    assert snapshot(out) == before  # not a byte changed, no best-v1.ckpt, status still ok
    assert json.loads((out / "status.json").read_text())["status"] == "ok"

    # resume=auto: the finished run is not redone, and nothing changes either.
    assert train(out, data_dir, "resume=auto").returncode == 0
    assert snapshot(out) == before


@pytest.mark.slow
def test_resume_auto_starts_over_where_the_earlier_attempt_left_no_checkpoint(tmp_path, data_dir):
    # What a sweep job killed (or crashed) before its first checkpoint leaves behind.
    out = tmp_path / "run"
    (out / "csv").mkdir(parents=True)
    (out / "csv" / "metrics.csv").write_text("epoch,step,train/loss_step\n0,0,99.0\n")
    (out / "config.yaml").write_text("stale: true\n")
    (out / "status.json").write_text('{"status": "failed", "reason": "killed", "overrides": []}')
    proc = train(out, data_dir, "resume=auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "99.0" not in (out / "csv" / "metrics.csv").read_text()
    assert "stale" not in (out / "config.yaml").read_text()
    assert json.loads((out / "status.json").read_text())["status"] == "ok"


# --- divergence stops at the first non-finite loss ---------------------------------------


def test_diverged_run_stops_at_the_first_nan_and_marks_nothing_best(tmp_path, data_dir):
    out = tmp_path / "run"
    proc = train(out, data_dir, "optimizer=sgd", "optimizer.lr=1e12", "trainer.max_epochs=2")
    error = user_error(proc, "training diverged", "optimizer.lr=1e+12", "no checkpoint was written")
    assert re.search(r"train/loss is (nan|inf|-inf) at step \d+ \(epoch 0, batch \d+\)", error)
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "training diverged" in status["reason"]
    assert not list((out / "checkpoints").glob("*.ckpt"))
    assert not (out / "metrics.json").exists()
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    assert len([r for r in rows if r.get("train/loss_step")]) < 4  # stopped within epoch 0


def test_deferred_loss_checks_still_name_the_first_bad_step(tmp_path, data_dir):
    """On a GPU the losses are read back every 50 steps, not every step (a read drains the
    GPU's queue); the run still stops before any checkpoint and names the first bad step."""
    out = tmp_path / "run"
    proc = train(
        out, data_dir, "optimizer=sgd", "optimizer.lr=1e12", "trainer.max_epochs=2",
        "callbacks.stop_on_non_finite.sync_every=50",
    )  # fmt: skip
    error = user_error(proc, "training diverged", "no checkpoint was written")
    step = int(re.search(r"train/loss is (?:nan|inf|-inf) at step (\d+) ", error).group(1))
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    bad = [int(r["step"]) for r in rows if r.get("train/loss_step") in ("nan", "inf", "-inf")]
    assert bad and step == bad[0]
    assert not list((out / "checkpoints").glob("*.ckpt"))


@pytest.mark.slow
def test_late_divergence_keeps_the_good_checkpoints(tmp_path, data_dir):
    out = tmp_path / "run"
    proc = train(
        out,
        data_dir,
        "trainer.max_epochs=3",
        "+callbacks.poison._target_=tests.faults.PoisonWeightsAt",
        "+callbacks.poison.epoch=1",
    )
    last = out / "checkpoints" / "last.ckpt"
    user_error(proc, "training diverged", "epoch 1", f"the last good one: {last}")
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(out / "checkpoints" / name, weights_only=True)
        assert ckpt["epoch"] == 0
        assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_checkpoint"] == str(out / "checkpoints" / "best.ckpt")
    assert [r["epoch"] for r in metrics["history"]] == [0]
    assert json.loads((out / "status.json").read_text())["status"] == "failed"


# --- resuming keeps the whole history ----------------------------------------------------


def csv_rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "csv" / "metrics.csv").open()))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ckpt_path=last", "resume=auto"])
def test_resume_after_kill_keeps_the_whole_history(tmp_path, data_dir, how):
    out = tmp_path / "run"
    kill = [
        "trainer.max_epochs=3",
        "+callbacks.kill._target_=tests.faults.KillAt",
        "+callbacks.kill.epoch=2",
        "+callbacks.kill.batch=1",
    ]
    proc = train(out, data_dir, *kill, env={**ENV, KILL_ENV: "1"})
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILL two batches into epoch 2
    killed = csv_rows(out)
    assert {r["epoch"] for r in killed if r.get("train/loss_step")} == {"0", "1", "2"}

    proc = train(out, data_dir, *kill, how)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = csv_rows(out)
    steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    assert steps == list(range(12)), "a step is missing or logged twice"
    epoch_loss = {
        int(r["epoch"]): float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")
    }
    assert sorted(epoch_loss) == [0, 1, 2]
    assert len([r for r in rows if r.get("val/miou")]) == 3
    # metrics.json: each epoch's own training loss, the last epoch included (not shifted).
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [0, 1, 2]
    for row in history:
        assert row["train/loss_epoch"] == pytest.approx(epoch_loss[row["epoch"]], rel=1e-6)


# --- write failures: before the first step, naming the file -------------------------------


def test_unwritable_checkpoint_dir_fails_before_the_first_step(tmp_path, data_dir):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the checkpoint folder should go")
    out = tmp_path / "run"
    proc = train(
        out,
        data_dir,
        f"callbacks.model_checkpoint.dirpath={blocker / 'checkpoints'}",
        "+callbacks.marker._target_=tests.faults.StepMarker",
        f"+callbacks.marker.path={tmp_path / 'trained'}",
    )
    user_error(proc, str(blocker / "checkpoints" / "last.ckpt"), "cannot be written")
    assert not (tmp_path / "trained").exists(), "a training step ran before the check"
    assert json.loads((out / "status.json").read_text())["status"] == "failed"


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.slow
def test_full_disk_fails_before_the_first_step(small_disk, tmp_path, data_dir):
    # U-Net on MobileNetV2 (width 0.35): ~2M weights, checkpoints of ~25 MiB > 16 MiB.
    out = small_disk / "run"
    proc = run(
        "train.py",
        *SYNTHETIC,
        "logger=csv",
        "trainer.accelerator=cpu",
        "backbone.width=0.35",
        f"hydra.run.dir={out}",
        f"paths.data_dir={data_dir}",
        "+callbacks.marker._target_=tests.faults.StepMarker",
        f"+callbacks.marker.path={tmp_path / 'trained'}",
    )
    user_error(proc, str(out / "checkpoints"), "MiB free, but the checkpoints need about")
    assert not (tmp_path / "trained").exists()


@pytest.mark.slow
def test_disk_full_during_training_keeps_the_good_checkpoints(small_disk, data_dir):
    out = small_disk / "run"
    proc = train(
        out,
        data_dir,
        "trainer.max_epochs=3",
        "+callbacks.fill._target_=tests.faults.FillDiskAt",
        f"+callbacks.fill.path={small_disk / 'filler'}",
        "+callbacks.fill.epoch=1",
    )
    # Whichever file the run writes first on the full disk (metrics.csv, a checkpoint,
    # metrics.json) is named; the checkpoints of the good epoch stay.
    error = user_error(proc, "cannot be written (No space left on device)", "previous file")
    assert re.search(rf"error: {re.escape(str(out))}/\S+: cannot be written", error)
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.load(out / "checkpoints" / name, weights_only=True)["epoch"] == 0
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_write_error_during_training_names_the_file_in_process(train_cfg, tmp_path, monkeypatch):
    """Without mount rights: the checkpoint writer fails with ENOSPC from the second epoch on."""
    from segbench.files import WriteError
    from segbench.training.train import train as train_fn

    save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "state_dict" in obj and obj.get("epoch", 0) >= 1:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    cfg = train_cfg(*FAST_RUN, "trainer.max_epochs=2")
    with pytest.raises(WriteError, match=r"(best|last).ckpt: cannot be written \(No space left"):
        train_fn(cfg)
    ckpts = tmp_path / "checkpoints"
    assert torch.load(ckpts / "best.ckpt", weights_only=True)["epoch"] == 0
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["epoch"] == 0
    assert not list(ckpts.glob(".*.tmp"))


# --- the same behaviour in-process, for the fast suite -----------------------------------

FAST_RUN = [
    *TINY,
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.model_cost.latency_runs=0",
]


def test_last_checkpoint_follows_every_epoch_in_process(train_cfg, tmp_path):
    from segbench.training.train import train as train_fn

    metrics = train_fn(
        train_cfg(*FAST_RUN, "trainer.max_epochs=3", "callbacks.model_checkpoint.mode=min")
    )
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["epoch"] < 2 and last["epoch"] == 2
    assert metrics["last_checkpoint"] == str(tmp_path / "checkpoints" / "last.ckpt")
    # each row carries its own epoch's training loss, the last epoch's included
    rows = csv_rows(tmp_path)
    epoch_loss = {
        int(r["epoch"]): float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")
    }
    assert [r["epoch"] for r in metrics["history"]] == [0, 1, 2]
    for row in metrics["history"]:
        assert row["train/loss_epoch"] == pytest.approx(epoch_loss[row["epoch"]], rel=1e-6)


def test_resume_keeps_the_csv_history_in_process(train_cfg, tmp_path):
    from segbench.training.train import train as train_fn

    train_fn(train_cfg(*FAST_RUN, "trainer.max_epochs=2"))
    with (tmp_path / "csv" / "metrics.csv").open("a") as f:
        f.write("2,,,,4,,9.99\n")  # a row of the killed epoch 2, re-run after the resume
    train_fn(train_cfg(*FAST_RUN, "trainer.max_epochs=3", "ckpt_path=last"))
    rows = csv_rows(tmp_path)
    assert [int(r["step"]) for r in rows if r.get("train/loss_step")] == list(range(6))
    assert "9.99" not in (tmp_path / "csv" / "metrics.csv").read_text()
    assert sorted({r["epoch"] for r in rows if r.get("val/miou")}) == ["0", "1", "2"]
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [0, 1, 2]


def test_late_divergence_in_process_keeps_good_checkpoints(train_cfg, tmp_path):
    from segbench.training.callbacks import DivergedError
    from segbench.training.train import train as train_fn

    cfg = train_cfg(
        *FAST_RUN,
        "trainer.max_epochs=3",
        "+callbacks.poison._target_=tests.faults.PoisonWeightsAt",
        "+callbacks.poison.epoch=1",
    )
    with pytest.raises(DivergedError, match=r"train/loss is nan at step 2 \(epoch 1, batch 0\)"):
        train_fn(cfg)
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.load(tmp_path / "checkpoints" / name, weights_only=True)["epoch"] == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_checkpoint"] == str(tmp_path / "checkpoints" / "best.ckpt")
    assert [r["epoch"] for r in metrics["history"]] == [0]


def test_run_dir_rules(train_cfg, tmp_path):
    from segbench.errors import ConfigError
    from segbench.training.rundir import prepare_run_dir

    prepare_run_dir(train_cfg())  # an empty dir: fine
    (tmp_path / "config.yaml").write_text("first: run\n")
    (tmp_path / "csv").mkdir()
    with pytest.raises(ConfigError, match=r"(?s)hydra.run.dir=.*already holds a training run"):
        prepare_run_dir(train_cfg())
    with pytest.raises(ConfigError, match=r"ckpt_path='last': there is no .*last.ckpt"):
        prepare_run_dir(train_cfg("ckpt_path=last"))
    elsewhere = tmp_path.parent / f"{tmp_path.name}-other.ckpt"
    elsewhere.write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds a training run"):
        prepare_run_dir(train_cfg(f"ckpt_path={elsewhere}"))  # another run's checkpoint
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    prepare_run_dir(train_cfg("ckpt_path=last"))  # continues this run: fine
    (tmp_path / "checkpoints" / "last.ckpt").unlink()
    prepare_run_dir(train_cfg("resume=auto"))  # nothing to continue: starts over
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "csv").exists()


def test_too_little_disk_space_fails_before_the_first_step_in_process(
    train_cfg, tmp_path, monkeypatch
):
    import shutil

    from segbench.files import WriteError
    from segbench.training import preflight
    from segbench.training.train import train as train_fn

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage._replace(free=2**20))
    cfg = train_cfg(
        *FAST_RUN,
        "+callbacks.marker._target_=tests.faults.StepMarker",
        f"+callbacks.marker.path={tmp_path / 'trained'}",
    )
    with pytest.raises(WriteError, match=r"checkpoints: 1 MiB free, but the checkpoints need"):
        train_fn(cfg)
    assert not (tmp_path / "trained").exists()

"""kill -9 and resume: atomic checkpoints, and the same final numbers as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tests.conftest import ROOT, SYNTHETIC
from tests.test_sweep import TINY

from segbench.training.checkpoint_io import AtomicCheckpointIO
from segbench.training.resume import resume_checkpoint

_WRITER = """
import sys, torch
from segbench.training.checkpoint_io import AtomicCheckpointIO
io, path = AtomicCheckpointIO(), sys.argv[1]
state = {"w": torch.randn(4_000_000)}
io.save_checkpoint({"step": 0, **state}, path)
print("ready", flush=True)
step = 0
while True:
    step += 1
    io.save_checkpoint({"step": step, **state}, path)
"""


@pytest.mark.slow
def test_checkpoint_survives_sigkill_during_writes(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # several 16 MB writes in flight
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ckpt = torch.load(path, weights_only=True)  # complete, never truncated
    assert ckpt["w"].numel() == 4_000_000
    # resume_checkpoint clears what an interrupted write left and returns the good file.
    assert resume_checkpoint(tmp_path) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_atomic_io_replaces_the_file_only_when_complete(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"v": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full (simulated)")

    with pytest.raises(RuntimeError):
        AtomicCheckpointIO().save_checkpoint({"v": 2, "x": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


RUN = [
    *TINY[1:],
    "model=tiny",
    *SYNTHETIC,
    "augment=none",
    "trainer.deterministic=true",
    "trainer.max_epochs=4",
    "trainer.accelerator=cpu",
    "logger=csv",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_cost.latency_runs=0",
    "data.dataset.num_train=32",
]


def _cmd(run_dir, data_dir, *extra):
    return [
        sys.executable,
        str(ROOT / "train.py"),
        *RUN,
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={data_dir}",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ckpt_path=last", "resume=auto"])
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, how):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    data = tmp_path / "data"
    reference = tmp_path / "reference"
    subprocess.run(_cmd(reference, data), env=env, cwd=ROOT, check=True, capture_output=True)

    killed = tmp_path / "killed"
    slow = "+callbacks.slow._target_=tests.tiny_net.SlowBatches"
    proc = subprocess.Popen(
        _cmd(killed, data, slow),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics_file = killed / "metrics.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        # Two epochs validated and checkpointed: kill a few batches into the third.
        if metrics_file.is_file() and len(json.loads(metrics_file.read_text())["history"]) >= 2:
            time.sleep(1.0)
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(json.loads(metrics_file.read_text())["history"]) < 4
    assert not (killed / "status.json").exists()

    # The same command again (resume=auto refuses a run whose config changed), resuming.
    subprocess.run(
        _cmd(killed, data, slow, how), env=env, cwd=ROOT, check=True, capture_output=True
    )
    want = json.loads((reference / "metrics.json").read_text())
    got = json.loads(metrics_file.read_text())
    assert [h["epoch"] for h in got["history"]] == [0, 1, 2, 3]

    # Bit-exact: every epoch's step count, last training loss, val/miou, val/loss and per-class
    # IoU. (A row may also carry the previous epoch's train/loss_epoch, which a resumed run
    # did not see: not compared.) json.dumps compares NaN (an absent class) as equal.
    def model_numbers(history):
        return json.dumps(
            [
                {
                    k: v
                    for k, v in row.items()
                    if k in ("epoch", "step", "train/loss") or k.startswith("val/")
                }
                for row in history
            ]
        )

    assert model_numbers(got["history"]) == model_numbers(want["history"])
    assert got["best_val_miou"] == want["best_val_miou"]
    assert json.loads((killed / "status.json").read_text())["status"] == "ok"

"""What a training run logs to W&B (read back offline), TensorBoard and CSV at once."""

import json
import struct
import time

import pytest
from tests.test_sweep import TINY

from segbench.errors import DataError
from segbench.training import train
from segbench.wandb_offline import find_runs, read_run


def read_finished(path, timeout_s: float = 30.0):
    """Reads a run once W&B's writer process has written its exit record (it lags finish())."""
    deadline = time.monotonic() + timeout_s
    while (run := read_run(path)).exit_code is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return run


@pytest.mark.slow
def test_offline_wandb_run_reads_back_what_was_logged(train_cfg, tmp_path):
    cfg = train_cfg(
        *TINY,
        "logger=[csv,wandb,tensorboard]",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "callbacks.prediction_images.every_n_epochs=1",
        "callbacks.prediction_images.num_images=2",
        "callbacks.model_cost.latency_runs=2",
        "logger.wandb.log_model=true",
        "tags=[unit,wandb]",
    )
    metrics = train(cfg)
    import wandb

    wandb.finish()
    (path,) = find_runs(tmp_path)
    run = read_finished(path)
    assert run.exit_code == 0 and run.project == "segbench" and run.tags == ["unit", "wandb"]
    assert run.name == "tiny-mobilenet-v2-w1.0" and run.group == "train"
    # The resolved config: interpolations replaced by values.
    assert run.config["model"]["num_classes"] == cfg.data.num_classes == 8
    assert run.config["data"]["root"] == cfg.data.root
    # Curves: one val/miou point per epoch, as metrics.json has them.
    assert run.series("val/miou") == pytest.approx([h["val/miou"] for h in metrics["history"]])
    assert len(run.series("train/loss_epoch")) == 2
    for name, iou in metrics["history"][-1].items():
        if name.startswith("val/iou_"):
            assert run.summary[name] == pytest.approx(iou, nan_ok=True)
    # Cost figures in the summary.
    assert run.summary["model/params"] == metrics["params"] == 312
    assert run.summary["model/gflops"] == pytest.approx(0.00086016)
    assert run.summary["model/latency_ms"] > 0 and run.summary["model/input_size"] == "64x96"
    # Prediction overlays: an image per logged sample, [input | truth | prediction] wide.
    images = run.series("val/predictions")
    assert len(images) == 2 and images[-1]["count"] == 2
    assert images[-1]["width"] == 3 * 96 and images[-1]["height"] == 64
    assert all((run.files_dir / f).is_file() for f in images[-1]["filenames"])
    # The checkpoint as an artifact when asked (log_model=true).
    assert any(a["type"] == "model" for a in run.artifacts)
    # The other loggers of the same run.
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert "model/gflops" in (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]


def test_reader_keeps_complete_records_of_a_killed_run_and_refuses_other_files(tmp_path):
    import wandb

    run = wandb.init(project="p", dir=str(tmp_path), config={"a": 1})
    for step in range(50):
        run.log({"x": step})
    run.finish()
    (path,) = find_runs(tmp_path)
    full = read_finished(path)
    assert full.series("x") == list(range(50)) and full.config == {"a": 1}
    # Cut the file mid-way, as a SIGKILL during a write would.
    cut = tmp_path / "offline-run-cut" / "run-cut.wandb"
    cut.parent.mkdir()
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    partial = read_run(cut)
    assert partial.series("x") == list(range(len(partial.series("x"))))
    assert partial.exit_code is None
    bad = tmp_path / "bad.wandb"
    bad.write_bytes(struct.pack("<4sHB", b"XXXX", 0, 0) + json.dumps({}).encode())
    with pytest.raises(DataError, match="not a W&B transaction log"):
        read_run(bad)

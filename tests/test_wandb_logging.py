"""What a training run logs to W&B (read back offline), TensorBoard and CSV at once."""

import json
import struct
import time

import pytest
from tests.test_sweep import TINY

from segbench.errors import DataError
from segbench.training.train import train
from segbench.training.wandb_offline import find_runs, read_run


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
        "profile=true",
        "profile_runtimes=[pytorch,onnxruntime,tensorrt]",
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
    # The after-fit profile: latency per runtime (ONNX Runtime through an export), budget.
    profile = json.loads((tmp_path / "profile.json").read_text())
    for row in profile["latency"]:
        key = f"{row['runtime']}_cpu_fp32_b{row['batch']}"
        assert run.summary[f"profile/latency_ms/{key}"] == pytest.approx(row["median_ms"])
    assert {r["runtime"] for r in profile["latency"]} == {"pytorch", "onnxruntime"}
    assert "profile/gflops" not in run.summary  # measured once: model/gflops above
    assert "profile/skipped/tensorrt" in run.summary  # not installable here: its reason
    assert any(k.startswith("profile/headroom_pct/urban_") for k in run.summary)
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


def test_profile_after_fit_times_each_runtime_and_reaches_the_loggers(train_cfg, tmp_path):
    cfg = train_cfg(
        *TINY,
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "callbacks.model_cost=null",
        "profile=true",
        "profile_runtimes=[pytorch,onnxruntime,tensorrt]",
    )
    train(cfg)
    profile = json.loads((tmp_path / "profile.json").read_text())
    batches = sorted({1, cfg.data.batch_size})
    timed = sorted((r["runtime"], r["batch"]) for r in profile["latency"])
    assert timed == sorted((rt, b) for rt in ("onnxruntime", "pytorch") for b in batches)
    assert all(r["median_ms"] > 0 and r["input_size"] == [64, 96] for r in profile["latency"])
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        (trt,) = [s for s in profile["skipped"] if s["runtime"] == "tensorrt"]
        assert "tensorrt" in trt["reason"].lower()
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "profile/latency_ms/onnxruntime_cpu_fp32_b1" in header
    assert "model/gflops" in header  # one measurement: the headline keys


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

"""The benchmarks' recipes compose, and bench.throughput runs end to end on a tiny fixture."""

import argparse
import json
import subprocess
import sys

import pytest
from bench.accuracy import MODELS, merged, recipe, recipe_config
from bench.common import compose
from bench.throughput import bottleneck
from tests.conftest import ROOT
from tests.layouts import write_camvid


@pytest.mark.parametrize("full", [False, True], ids=["cpu", "full"])
@pytest.mark.parametrize("name", ["field", "baseline"])
def test_accuracy_recipes_compose(name, full):
    args = argparse.Namespace(
        data_root="/data/camvid",
        epochs=200 if full else 10,
        batch=16 if full else 8,
        workers=None if full else 2,
        seed=42,
        test=True,
        recipe=name,
        full=full,
        crop=[240, 320],
        max_minutes=8 if full else None,
    )
    cfg = compose("train", [*MODELS["pspnet"], *recipe(args)])
    assert cfg.data.root == "/data/camvid" and cfg.test_split == "test"
    assert cfg.trainer.accelerator == ("gpu" if full else "cpu")
    if name == "field":
        crop = (360, 480) if full else (240, 320)
        assert cfg.loss.min_kept == args.batch * crop[0] * crop[1] // 16
        assert list(cfg.augment.size) == list(crop)
        assert cfg.scheduler.warmup_iters == round(0.02 * args.epochs * (367 // args.batch))
        assert cfg.model.variant == "paper" and cfg.optimizer.weight_decay == 1e-4
        assert cfg.loss.class_weights == "enet"
    if full:
        assert cfg.trainer.precision == "bf16-mixed" and cfg.data.num_workers == 8
    if full and name == "field":
        assert cfg.trainer.max_time == "00:00:08:00"


@pytest.mark.slow
def test_throughput_benchmark_runs_on_a_tiny_fixture(tmp_path):
    root = write_camvid(tmp_path / "camvid", n=6)
    out = tmp_path / "throughput.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.throughput",
            f"--data-root={root}",
            "--steps=3",
            "--warmup=1",
            "--batch=2",
            "--workers=1",
            f"--out={out}",
            "data.image_size=[64,96]",
            "backbone.width=0.35",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    train = result["train"]
    assert result["loader_images_per_s"] > 0 and result["step"]["images_per_s"] > 0
    assert train["images_per_s"] > 0 and train["steps_timed"] == 3
    assert 0.0 <= train["data_wait_share"] < 1.0 and train["device"] == "cpu"
    assert result["bottleneck"] == bottleneck(train, result["step"])
    # on the CPU queuing a step is the step (nothing runs asynchronously)
    assert result["step"]["cpu_share"] == pytest.approx(1.0, abs=0.05)
    assert "bottleneck:" in proc.stdout


def test_resumed_accuracy_keeps_other_models_of_the_same_recipe_only(tmp_path):
    path = tmp_path / "accuracy.json"
    same, other = ["experiment=camvid_recipe", "seed=42"], ["loss=ce", "seed=42"]
    config = recipe_config(same)
    path.write_text(
        json.dumps(
            {
                "recipe": {"overrides": same, "config": config},
                "runs": {"fcn8s": {"val_miou": 0.5}, "unet": {"val_miou": 0.1}},
            }
        )
    )
    new = {"unet": {"val_miou": 0.4}}
    both = {"fcn8s": {"val_miou": 0.5}, "unet": {"val_miou": 0.4}}
    assert merged(path, same, new, recipe_config(same)) == both
    # another recipe's figures never join the table: other overrides, or the same ones
    # after the experiment file changed (here: its optimizer)
    assert merged(path, other, new, recipe_config(other)) == new
    edited = recipe_config([*same, "optimizer=sgd", "~optimizer.momentum"])
    assert edited["optimizer"] != config["optimizer"]
    assert merged(path, same, new, edited) == new
    assert merged(tmp_path / "missing.json", same, new, config) == new


def test_throughput_bottleneck_rule():
    step = {"cpu_share": 0.95}
    assert bottleneck({"data_wait_share": 0.2, "device": "cuda:0"}, step) == "data (loader)"
    assert bottleneck({"data_wait_share": 0.05, "device": "cuda:0"}, step) == (
        "CPU (queuing the step)"
    )
    assert bottleneck({"data_wait_share": 0.05, "device": "cuda:0"}, {"cpu_share": 0.4}) == (
        "step (compute)"
    )
    # on the CPU queuing is computing: never "CPU-bound"
    assert bottleneck({"data_wait_share": 0.05, "device": "cpu"}, step) == "step (compute)"

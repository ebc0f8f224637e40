"""The CamVid training recipe: schedule, experiment config, GPU settings, EMA, test split."""

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from tests.conftest import ROOT, compose_config
from tests.layouts import write_camvid

from segbench.errors import ConfigError
from segbench.evaluation.evaluate import evaluate
from segbench.models import load_network
from segbench.training.distributed import ChannelsLast, CompileTraining
from segbench.training.optim import WarmupPoly, warmup_poly
from segbench.training.train import train
from segbench.training.wandb_offline import find_runs, read_run


def test_warmup_poly_hand_values():
    f = WarmupPoly(total_iters=1000, warmup_iters=200, warmup_start_factor=1e-3, power=0.9)
    assert f(0) == pytest.approx(1e-3)
    assert f(100) == pytest.approx(1e-3 + 0.999 * 0.5)
    assert f(200) == pytest.approx(1.0)  # end of warm-up: the base rate
    assert f(600) == pytest.approx(0.5**0.9)  # halfway through the 800 decay steps
    assert f(1000) == 0.0 and f(1200) == 0.0


def test_warmup_poly_from_config_steps_an_optimizer(tmp_path):
    cfg = compose_config("train", tmp_path, ["scheduler=warmup_poly", "optimizer=sgd"])
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = instantiate(cfg.optimizer)([param])
    scheduler = instantiate(cfg.scheduler)(optimizer, total_iters=1000)
    lrs = []
    for _ in range(1000):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    base = cfg.optimizer.lr
    assert lrs[0] == pytest.approx(base * 1e-3) and lrs[200] == pytest.approx(base)
    assert max(lrs) == pytest.approx(base) and lrs.index(max(lrs)) == 200
    assert lrs[600] == pytest.approx(base * 0.5**0.9)
    # the scheduler's state holds plain numbers (a checkpoint opens with weights_only)
    state = scheduler.state_dict()["lr_lambdas"][0]
    assert state == {
        "total_iters": 1000,
        "warmup_iters": 200,
        "warmup_start_factor": 1e-3,
        "power": 0.9,
    }


def test_warmup_poly_shortens_a_warmup_longer_than_half_the_run(caplog):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = warmup_poly(optimizer, total_iters=100, warmup_iters=200)
    assert scheduler.lr_lambdas[0].warmup_iters == 50
    assert "more than half" in caplog.text
    with pytest.raises(ConfigError, match="scheduler.warmup_start_factor"):
        warmup_poly(optimizer, total_iters=100, warmup_start_factor=0.0)


def test_recipe_experiment_states_the_anchor_values(tmp_path):
    cfg = compose_config("train", tmp_path, ["experiment=camvid_recipe"])
    assert cfg.data.dataset._target_ == "segbench.data.camvid.CamVid"
    assert cfg.loss._target_ == "segbench.training.losses.OhemCrossEntropy"
    assert (cfg.loss.thresh, cfg.loss.min_kept, cfg.loss.ignore_index) == (0.7, 172800, 11)
    assert cfg.loss.min_kept == cfg.data.batch_size * 360 * 480 // 16
    # from scratch: ERFNet's (and ENet's) Adam and class weights
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.loss.class_weights == "enet"
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (5e-4, 1e-4)
    assert cfg.scheduler.warmup_iters == 200 and cfg.scheduler.power == 0.9
    assert cfg.trainer.max_epochs == 650
    names = [t._target_.rsplit(".", 1)[1] for t in cfg.augment.train]
    assert names[:3] == ["RandomScale", "RandomCrop", "HorizontalFlip"]
    assert list(cfg.augment.size) == [360, 480] and cfg.augment.train[1].fill_mask == 11
    psp = compose_config("train", tmp_path, ["experiment=camvid_recipe", "model=pspnet"])
    assert psp.model.variant == "paper"  # the comparison's PSPNet is the paper's shape


def test_recipe_comment_gives_the_pretrained_anchors_optimizer(tmp_path):
    """The override line in conf/experiment/camvid_recipe.yaml, as written there."""
    text = (ROOT / "conf/experiment/camvid_recipe.yaml").read_text()
    (line,) = [ln for ln in text.splitlines() if "optimizer=sgd" in ln]
    args = line.split("python train.py ", 1)[1].split()
    cfg = compose_config("train", tmp_path, args)
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.loss.class_weights == "none"
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (
        0.01,
        0.9,
        5e-4,
    )
    assert cfg.backbone.weights == "imagenet"


def test_trainer_gpu_brings_bf16_channels_last_and_loader_settings(tmp_path):
    cfg = compose_config("train", tmp_path, ["trainer=gpu", "data=camvid"])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.benchmark is True
    assert cfg.data.num_workers == 8 and cfg.data.pin_memory is True
    assert cfg.callbacks.channels_last.enabled == "auto" and cfg.data.cache == "auto"
    # the command line and experiments still win
    cfg = compose_config("train", tmp_path, ["trainer=gpu", "data.num_workers=3"])
    assert cfg.data.num_workers == 3
    cpu = compose_config("train", tmp_path, ["data=camvid"])
    assert cpu.data.num_workers == 2 and cpu.data.pin_memory is False


def _trainer(device: str, precision: str):
    return SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)), precision=precision
    )


def test_channels_last_auto_means_cuda_with_16_bit_precision():
    auto = ChannelsLast("auto")
    assert auto.wanted(_trainer("cuda", "bf16-mixed")) and auto.wanted(_trainer("cuda", "16-mixed"))
    assert not auto.wanted(_trainer("cuda", "32-true"))
    assert not auto.wanted(_trainer("cpu", "bf16-mixed"))
    assert ChannelsLast(True).wanted(_trainer("cpu", "32-true"))
    assert not ChannelsLast(False).wanted(_trainer("cuda", "bf16-mixed"))
    with pytest.raises(ConfigError, match="callbacks.channels_last.enabled"):
        ChannelsLast("yes")


def test_compile_auto_means_cuda():
    assert CompileTraining("auto").wanted(_trainer("cuda", "bf16-mixed"))
    assert not CompileTraining("auto").wanted(_trainer("cpu", "32-true"))
    assert CompileTraining(True).wanted(_trainer("cpu", "32-true"))
    assert not CompileTraining(False).wanted(_trainer("cuda", "bf16-mixed"))
    with pytest.raises(ConfigError, match="callbacks.compile.enabled"):
        CompileTraining("on")


@pytest.mark.slow
def test_compiled_training_trains_the_same_weights_the_checkpoint_keeps(train_cfg):
    """callbacks.compile.enabled=true: the training forward is compiled and the checkpoint
    holds each weight once, under the eager network's keys (it loads without the compiler)."""
    from torch._dynamo.utils import counters

    counters.clear()
    cfg = train_cfg(
        "callbacks.compile.enabled=true",
        "model=fcn",
        "backbone.width=0.35",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
    )
    train(cfg)
    assert counters["stats"]["unique_graphs"] >= 1  # a wrong wiring compiles nothing
    path = f"{cfg.paths.output_dir}/checkpoints/last.ckpt"
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    net, _ = load_network(path)
    assert {k for k in state if not k.startswith("loss.")} == {f"net.{k}" for k in net.state_dict()}


def _recipe_args(root, log_dir, *extra):
    """experiment=camvid_recipe shrunk to a 64x96 CamVid-layout fixture on the CPU."""
    return [
        "experiment=camvid_recipe",
        "data=camvid",
        f"data.root={root}",
        "data.image_size=[64,96]",
        "data.batch_size=2",
        "data.num_workers=0",
        "loss.min_kept=1536",  # 2 x 64 x 96 / 8
        "backbone.width=0.35",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "trainer.accelerator=cpu",
        "logger=csv",
        "callbacks.rich_progress_bar=null",
        *([f"paths.log_dir={log_dir}"] if log_dir else []),
        *extra,
    ]


def test_recipe_with_ema_and_test_split_scores_the_averaged_best_checkpoint(train_cfg, tmp_path):
    """val/miou, best.ckpt and test/miou all come from the EMA weights, test from the best epoch."""
    root = write_camvid(tmp_path / "camvid", n=6)
    cfg = train_cfg(*_recipe_args(root, None, "test_split=test", "callbacks=[default,ema]"))
    metrics = train(cfg)
    best = tmp_path / "checkpoints" / "best.ckpt"
    assert metrics["test_split"] == "test" and metrics["test_checkpoint"] == str(best)
    assert set(metrics["test_per_class_iou"]) == set(cfg.data.class_names)
    assert metrics["test"]["test/miou"] == metrics["test_miou"]
    assert json.loads((tmp_path / "metrics.json").read_text())["test_miou"] == metrics["test_miou"]
    # the checkpoint holds the average, the raw weights beside it for resuming
    ckpt = torch.load(best, weights_only=True)
    raw, avg = ckpt["current_model_state"], ckpt["state_dict"]
    assert any(not torch.equal(raw[k], avg[k]) for k in avg if k.startswith("net."))
    for split, expected in (("test", metrics["test_miou"]), ("val", metrics["best_val_miou"])):
        out = tmp_path / f"eval_{split}"
        report = evaluate(compose_config("evaluate", out, [f"ckpt_path={best}", f"split={split}"]))
        assert math.isclose(report["miou"], expected, abs_tol=1e-4), split
    # the budget of every history row: steps, images seen (3 steps x 2 per epoch), wall time
    rows = metrics["history"]
    assert [r["images_seen"] for r in rows] == [6, 12] and [r["step"] for r in rows] == [3, 6]
    assert rows[0]["wall_time_s"] <= rows[1]["wall_time_s"] <= metrics["wall_time_s"]
    assert metrics["device_type"] == "cpu" and metrics["devices"] == 1
    assert metrics["precision"] == "32-true" and metrics["images_seen"] == 12
    csv = (tmp_path / "csv" / "metrics.csv").read_text()
    assert "test/miou" in csv.splitlines()[0]


def _run_train(args, tmp_path):
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_test_split_missing_fails_before_training_naming_the_key(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train", "val"), n=2)
    proc = _run_train(_recipe_args(root, tmp_path / "logs", "test_split=test"), tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    error = proc.stderr[proc.stderr.index("error: ") :]
    assert error.startswith("error: test_split='test': the dataset has no usable test split")
    assert "fix: test_split=null" in error
    assert not list((tmp_path / "logs").rglob("*.ckpt"))  # nothing was trained


def test_test_split_refuses_the_selection_splits(train_cfg, tmp_path):
    root = write_camvid(tmp_path / "camvid", n=2)
    with pytest.raises(ConfigError, match="test_split='val'.*selects the model"):
        train(train_cfg(*_recipe_args(root, None, "test_split=val")))


@pytest.mark.slow
def test_documented_recipe_command_runs(tmp_path):
    """The README's commands, shrunk to the fixture: the recipe with PSPNet, test split, EMA."""
    root = write_camvid(tmp_path / "camvid", n=4)
    run_dir = tmp_path / "run"
    args = [
        "logger=[csv,wandb]" if a == "logger=csv" else a
        for a in _recipe_args(
            root,
            tmp_path / "logs",
            "model=pspnet",
            "test_split=test",
            "callbacks=[default,ema]",
            f"hydra.run.dir={run_dir}",
        )
    ]
    proc = _run_train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test_miou"] <= 1.0 and metrics["epochs"] == 2
    config = (run_dir / "config.yaml").read_text()
    assert "OhemCrossEntropy" in config and "variant: paper" in config and "EMAWeights" in config
    (wandb_run,) = find_runs(run_dir)
    summary = read_run(wandb_run).summary  # the test score in the W&B run summary
    assert summary["test/miou"] == pytest.approx(metrics["test_miou"])
    assert all(f"test/iou_{name}" in summary for name in metrics["test_per_class_iou"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trainer_gpu_trains_in_bf16_channels_last(train_cfg, tmp_path):
    root = write_camvid(tmp_path / "camvid", n=8)
    cfg = train_cfg(
        *_recipe_args(root, None, "trainer=gpu", "data.num_workers=2", "test_split=test")
    )
    metrics = train(cfg)
    assert metrics["device_type"] == "cuda" and metrics["precision"] == "bf16-mixed"
    assert math.isfinite(metrics["test_miou"])

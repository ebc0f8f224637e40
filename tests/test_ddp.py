"""Distributed and mixed-precision training on CPU: exact metrics across ranks, bf16, channels_last."""

import json
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tests.conftest import ROOT, SYNTHETIC
from tests.test_sweep import TINY
from torch.utils.data import DistributedSampler

from segbench.training.distributed import unpadded_count
from segbench.training.module import SegmentationModule
from segbench.training.train import train


@pytest.mark.parametrize("n, replicas, batch", [(5, 2, 2), (7, 3, 2), (8, 2, 3), (1, 2, 1)])
def test_unpadded_count_scores_every_sample_exactly_once(n, replicas, batch):
    dataset = list(range(n))
    scored = []
    for rank in range(replicas):
        sampler = DistributedSampler(
            dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=3
        )
        order, seen = list(sampler), 0
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            scored += chunk[: unpadded_count(sampler, seen, len(chunk))]
            seen += len(chunk)
    assert sorted(scored) == dataset  # padding repeats samples; each is scored once


def _build(cfg):
    datamodule = instantiate(cfg.data, augment=[])
    datamodule.setup("fit")
    L.seed_everything(0)
    module = SegmentationModule(
        net=OmegaConf.to_container(cfg.model, resolve=True),
        data=datamodule.meta,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
    )
    return module, datamodule


@pytest.mark.slow
def test_two_process_gloo_validation_equals_one_process(train_cfg):
    # 5 val images over 2 ranks: DistributedSampler pads one repeat, batches are uneven.
    cfg = train_cfg(*TINY, "data.dataset.num_val=5", "data.batch_size=2")
    module, datamodule = _build(cfg)
    state = {k: v.clone() for k, v in module.state_dict().items()}

    single = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    (one,) = single.validate(module, dataloaders=datamodule.val_dataloader(), verbose=False)

    module.load_state_dict(state)
    ddp = L.Trainer(
        accelerator="cpu",
        devices=2,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        strategy=L.pytorch.strategies.DDPStrategy(
            start_method="spawn", process_group_backend="gloo"
        ),
    )
    (two,) = ddp.validate(module, dataloaders=datamodule.val_dataloader(), verbose=False)
    assert set(one) == set(two)
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6, nan_ok=True), key
    assert one["val/miou"] > 0


@pytest.mark.slow
def test_trainer_ddp_cpu_trains_through_train_py(tmp_path):
    # (trainer.sync_batchnorm=true needs CUDA: torch refuses SyncBatchNorm on CPU modules.)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *TINY,
            *SYNTHETIC,
            "trainer=ddp_cpu",
            "trainer.max_epochs=1",
            "logger=csv",
            "callbacks.rich_progress_bar=null",
            "callbacks.model_cost.latency_runs=0",
            f"hydra.run.dir={run}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "status.json").read_text())["status"] == "ok"
    metrics = json.loads((run / "metrics.json").read_text())
    # 16 train images, batch 4, 2 ranks: 2 optimizer steps in the epoch.
    assert metrics["history"][0]["step"] == 2


def test_bf16_mixed_and_channels_last_on_cpu(train_cfg, tmp_path):
    cfg = train_cfg(
        *TINY,
        "debug=fdr",
        "trainer.precision=bf16-mixed",
        "callbacks.channels_last.enabled=true",
        "callbacks.model_cost.latency_runs=0",
    )
    seen = {}

    def record(module, args, out):
        if isinstance(module, torch.nn.Conv2d):
            # The first call is a training step (ModelCost measures later, outside autocast).
            seen.setdefault(
                "conv", (out.dtype, args[0].is_contiguous(memory_format=torch.channels_last))
            )

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        train(cfg)
    finally:
        hook.remove()
    # Under bf16 autocast the convolutions compute in bfloat16, on channels_last inputs.
    assert seen["conv"] == (torch.bfloat16, True)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    weight = next(v for k, v in ckpt["state_dict"].items() if v.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)

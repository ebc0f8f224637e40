"""Bad inputs through the entry points: one ``error: ...`` naming the key or file and the fix.

Table-driven: each case is a command as a user types it, what the error must name,
and never a traceback. Most fail before any training step, so each costs little
more than the command's start-up; the fast suite runs one or two per category,
``make test-all`` all of them.

Categories: config types and ranges, required values, checkpoints, data files
(where ``segbench check`` and the loader must agree, also through DataLoader
workers), Cityscapes prediction files, write failures.
"""

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from PIL import Image
from tests.conftest import ROOT, SYNTHETIC, compose_config
from tests.layouts import write_camvid
from tests.test_trusted_files import ENV, user_error

BASE = [
    "logger=csv",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_cost.latency_runs=0",
]
TRAIN = [*SYNTHETIC, *BASE]
#: CamVid copies written by the tests: 4 samples of 64x96 per split; data.num_workers
#: stays at CamVid's default 2, so sample errors come out of DataLoader workers.
CAMVID = ["data=camvid", "data.image_size=[64,96]", "data.batch_size=4"]


@dataclass
class Case:
    """One bad input: the command (``{tmp}``, ``{data}``, ``{camvid}``, ``{ckpt}`` filled in),
    what the error must name, and whether the fast suite runs it."""

    id: str
    argv: list[str]
    needles: list[str]
    fast: bool = False
    needs: list[str] = field(default_factory=list)  # "camvid", "ckpt", "no_cuda"


CASES = [
    # --- config types and ranges (train.py, before any data is read) ---
    Case(
        "max_epochs_text",
        ["train.py", "trainer.max_epochs=abc"],
        ["trainer.max_epochs='abc'", "whole number"],
        fast=True,
    ),
    Case("max_epochs_zero", ["train.py", "trainer.max_epochs=0"], ["trainer.max_epochs=0"]),
    Case(
        "batch_size_zero",
        ["train.py", "data.batch_size=0"],
        ["data.batch_size=0", ">= 1"],
    ),
    Case("num_workers_negative", ["train.py", "data.num_workers=-1"], ["data.num_workers=-1"]),
    Case("lr_negative", ["train.py", "optimizer.lr=-0.01"], ["optimizer.lr=-0.01", ">= 0"]),
    Case("lr_text", ["train.py", "optimizer=sgd", "optimizer.lr=fast"], ["optimizer.lr='fast'"]),
    Case(
        "momentum_above_one",
        ["train.py", "optimizer=sgd", "optimizer.momentum=1.5"],
        ["optimizer.momentum=1.5", "< 1"],
    ),
    Case(
        "weight_decay_negative",
        ["train.py", "optimizer.weight_decay=-1"],
        ["optimizer.weight_decay=-1"],
    ),
    Case(
        "gradient_clip_negative",
        ["train.py", "trainer.gradient_clip_val=-1"],
        ["trainer.gradient_clip_val=-1"],
    ),
    Case(
        "accumulate_zero",
        ["train.py", "trainer.accumulate_grad_batches=0"],
        ["trainer.accumulate_grad_batches=0"],
    ),
    Case(
        "limit_batches_fraction",
        ["train.py", "trainer.limit_train_batches=2.5"],
        ["trainer.limit_train_batches=2.5"],
    ),
    Case("seed_text", ["train.py", "seed=abc"], ["seed='abc'"]),
    Case(
        "precision_unknown",
        ["train.py", "trainer.precision=17"],
        ["trainer.precision=17", "refused by Lightning"],
    ),
    Case(
        "accelerator_without_gpu",
        ["train.py", "trainer.accelerator=gpu"],
        ["trainer.accelerator='gpu'", "trainer=cpu"],
        needs=["no_cuda"],
    ),
    Case("image_size_tiny", ["train.py", "data.image_size=[8,8]"], ["data.image_size=", ">= 32"]),
    Case(
        "crop_larger_than_frames",
        ["train.py", "augment=crop", "augment.size=[4000,4000]"],
        ["augment.size=[4000, 4000]", "larger than the frames"],
        fast=True,
    ),
    Case(
        "class_names_count",
        ["train.py", "data.num_classes=3"],
        ["data.class_names=", "names for data.num_classes=3"],
    ),
    # --- required values left at ??? ---
    Case(
        "evaluate_without_ckpt",
        ["evaluate.py"],
        ["ckpt_path='???'", "add ckpt_path=<run dir>/checkpoints/best.ckpt"],
        fast=True,
    ),
    Case("export_without_ckpt", ["export.py"], ["ckpt_path='???'", "add ckpt_path="]),
    Case("folder_without_root", ["train.py", "data=folder"], ["is required and not set"]),
    # --- checkpoints ---
    Case(
        "evaluate_missing_file",
        ["evaluate.py", "ckpt_path={tmp}/nope.ckpt"],
        ["{tmp}/nope.ckpt", "checkpoint not found"],
    ),
    Case(
        "evaluate_not_a_checkpoint",
        ["evaluate.py", "ckpt_path={tmp}/notes.txt"],
        ["{tmp}/notes.txt", "cannot be read as a checkpoint"],
    ),
    Case(
        "profile_missing_file",
        ["-m", "segbench.cli", "profile", "ckpt_path={tmp}/nope.ckpt"],
        ["{tmp}/nope.ckpt", "checkpoint not found"],
    ),
    Case(
        "init_checkpoint_missing",
        ["train.py", "init.checkpoint={tmp}/nope.ckpt"],
        ["{tmp}/nope.ckpt", "checkpoint not found"],
    ),
    Case(
        "evaluate_other_class_count",
        ["evaluate.py", "ckpt_path={ckpt}", *CAMVID, "data.root={camvid}"],
        ["data.num_classes=11", "the checkpoint predicts 8 classes"],
        fast=True,
        needs=["camvid", "ckpt"],
    ),
    Case(
        "evaluate_batch_size_zero",
        ["evaluate.py", "ckpt_path={ckpt}", "batch_size=0"],
        ["data.batch_size=0", "batch_size=... for evaluate/export"],
        needs=["ckpt"],
    ),
    Case(
        "export_input_size_tiny",
        ["export.py", "ckpt_path={ckpt}", "input_size=[8,8]"],
        ["input_size=", "32"],
        needs=["ckpt"],
    ),
    # --- write failures ---
    Case(
        "checkpoint_dir_is_a_file",
        ["train.py", "callbacks.model_checkpoint.dirpath={tmp}/notes.txt/checkpoints"],
        ["{tmp}/notes.txt/checkpoints/last.ckpt", "cannot be written"],
    ),
]


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory) -> Path:
    """A segbench checkpoint (U-Net, MobileNetV2 x0.35, 8 synthetic classes) as train.py
    stores it: network config, dataset facts and config, the network's tensors (untrained:
    the cases refuse it before any score)."""
    from omegaconf import OmegaConf

    from segbench.models import build_network

    out = tmp_path_factory.mktemp("trained")
    cfg = compose_config("train", out, [*SYNTHETIC, "backbone.width=0.35"], data_dir=out / "data")
    net_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    facts = ("num_classes", "ignore_index", "class_names", "colors", "mean", "std", "image_size")
    net = build_network(net_cfg)
    path = out / "best.ckpt"
    hparams = {"net": net_cfg, "data": {k: data_cfg[k] for k in facts}, "datamodule": data_cfg}
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"hyper_parameters": hparams, "state_dict": state}, path)
    return path


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=[] if c.fast else [pytest.mark.slow]) for c in CASES]
)
def test_bad_input_is_one_clear_line(case, tmp_path, data_dir, request):
    if "no_cuda" in case.needs and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    values = {"tmp": str(tmp_path), "data": str(data_dir)}
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    if "camvid" in case.needs:
        values["camvid"] = str(write_camvid(tmp_path / "camvid", h=64, w=96))
    if "ckpt" in case.needs:
        values["ckpt"] = str(request.getfixturevalue("trained_ckpt"))
    argv = [fill(a, values) for a in case.argv]
    extra = [f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={data_dir}"]
    if argv[0] == "train.py":  # the small synthetic set, unless the case names its data
        extra += BASE if any(a.startswith("data=") for a in argv) else TRAIN
    proc = subprocess.run(
        [sys.executable, *argv[:1], *extra, *argv[1:]]
        if argv[0] == "train.py"
        else [sys.executable, *argv, *extra],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    user_error(proc, *(fill(n, values) for n in case.needles))


# --- data files: segbench check and the loader agree ------------------------------------


def damage(root: Path, kind: str) -> Path:
    """Damages one training sample of a CamVid copy; returns the file to be named."""
    name = "0001TP_000002.png"
    image, mask = root / "train" / name, root / "trainannot" / name
    if kind == "tiny_image":  # a 1x1 image with its 1x1 mask
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(image)
        Image.fromarray(np.zeros((1, 1), np.uint8)).save(mask)
        return image
    if kind == "odd_size":  # a valid pair, but smaller than the rest of the split
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(image)
        Image.fromarray(np.zeros((40, 60), np.uint8)).save(mask)
        return image
    labels = np.array(Image.open(mask))
    labels[0, :5] = 200  # not a CamVid class id, not the ignore index
    Image.fromarray(labels).save(mask)
    return mask


DATA_CASES = [
    ("tiny_image", "too_small", "segbench networks take H, W >= 32", True),
    ("odd_size", "mixed_sizes", "images batched together must have one size", False),
    ("bad_mask", "unknown_ids", "label values [200]", False),
]


@pytest.mark.parametrize(
    "kind,problem,loader_says,fast",
    [pytest.param(*c, id=c[0], marks=[] if c[3] else [pytest.mark.slow]) for c in DATA_CASES],
)
def test_checker_and_loader_agree_on_a_damaged_file(kind, problem, loader_says, fast, tmp_path):
    root = write_camvid(tmp_path / "camvid", h=64, w=96)
    bad = damage(root, kind)
    data = [*CAMVID, f"data.root={root}"]
    check = subprocess.run(
        [sys.executable, "-m", "segbench.cli", "check", *data],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert check.returncode == 1, check.stdout + check.stderr
    assert f"{problem}: " in check.stdout and bad.name in check.stdout, check.stdout

    # Training reads the split through 2 DataLoader workers: the worker's error comes
    # out as the loader's own one line, not wrapped in two tracebacks.
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            *BASE,
            *data,
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.data_dir={tmp_path / 'data'}",
            "data.num_workers=2",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    error = user_error(proc, str(bad), loader_says)
    assert "DataLoader worker" not in error and "Caught" not in error


# --- Cityscapes predictions written as train ids ------------------------------------------


def cityscapes_predictions(root: Path, as_train_ids: bool) -> Path:
    """gtFine/val of two frames and a perfect prediction of each, as label or train ids."""
    rng = np.random.default_rng(0)
    evaluated = [lab for lab in cs_labels if lab.id >= 0 and not lab.ignoreInEval]
    to_train = np.zeros(256, np.uint8)
    for lab in evaluated:
        to_train[lab.id] = lab.trainId
    pred_dir = root / "results"
    for frame in ("000019", "000020"):
        cells = rng.choice([lab.id for lab in evaluated], size=(6, 12))
        gt = np.kron(cells, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
        gt_dir = root / "gtFine" / "val" / "aachen"
        gt_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gt).save(gt_dir / f"aachen_000000_{frame}_gtFine_labelIds.png")
        Image.fromarray(gt).save(gt_dir / f"aachen_000000_{frame}_gtFine_instanceIds.png")
        pred_dir.mkdir(exist_ok=True)
        pred = to_train[gt] if as_train_ids else gt
        Image.fromarray(pred).save(pred_dir / f"aachen_000000_{frame}_pred.png")
    return pred_dir


def test_cityscapes_train_id_predictions_are_refused(tmp_path):
    preds = cityscapes_predictions(tmp_path, as_train_ids=True)
    proc = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"predictions={preds}",
            f"gt_root={tmp_path}",
            "instances=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    user_error(proc, str(preds), "look like train ids, not label ids", "to_label_ids")


def test_cityscapes_label_id_predictions_still_score(tmp_path):
    from segbench.evaluation.cityscapes import evaluate_predictions

    preds = cityscapes_predictions(tmp_path, as_train_ids=False)
    result = evaluate_predictions(tmp_path, preds, "val", instances=False)
    assert result["miou"] == pytest.approx(1.0)


def test_loader_and_networks_agree_on_the_smallest_image():
    from segbench.data.reading import MIN_SIZE
    from segbench.models import SegmentationNetwork

    assert SegmentationNetwork.min_size == MIN_SIZE


def test_worker_errors_are_unwrapped_to_the_segbench_error():
    from segbench.data.reading import SampleError
    from segbench.errors import user_error as find_user_error

    try:
        raise SampleError(
            "/data/x.png", "unknown_ids", "label values [200] are outside", fix="check it"
        )
    except SampleError:
        from torch._utils import ExceptionWrapper

        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(RuntimeError) as info:
        wrapped.reraise()
    found = find_user_error(info.value)
    assert str(found) == "/data/x.png: label values [200] are outside\n  fix: check it"
    # A RuntimeError from a worker that is not segbench's own stays what it is.
    try:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    except RuntimeError:
        other = ExceptionWrapper(where="in DataLoader worker process 1")
    with pytest.raises(RuntimeError) as info:
        other.reraise()
    assert find_user_error(info.value) is None

"""evaluate.py: its files, its agreement with training, the Cityscapes folder mode."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import compose_config
from tests.test_cityscapes_eval import make_fixture, official

from segbench.errors import ConfigError
from segbench.evaluation.evaluate import evaluate, markdown_table, summarize
from segbench.evaluation.visualize import colorize
from segbench.training.train import train


def test_evaluate_writes_report_and_agrees_with_training(train_cfg, tmp_path):
    cfg = train_cfg("trainer.max_epochs=1", "trainer.limit_train_batches=1", "backbone.width=0.35")
    metrics = train(cfg)
    eval_dir = tmp_path / "eval"
    best = tmp_path / "checkpoints" / "best.ckpt"
    report = evaluate(compose_config("evaluate", eval_dir, [f"ckpt_path={best}", "num_overlays=3"]))
    assert math.isclose(report["miou"], metrics["best_val_miou"], abs_tol=1e-4)
    for name, iou in metrics["per_class_iou"].items():
        assert math.isclose(report["per_class_iou"][name], iou, abs_tol=1e-4) or (
            math.isnan(iou) and math.isnan(report["per_class_iou"][name])
        )
    assert json.loads((eval_dir / "eval.json").read_text())["miou"] == report["miou"]
    table = (eval_dir / "eval.md").read_text()
    assert all(f"| {name} |" in table for name in cfg.data.class_names)
    assert f"mIoU {100 * report['miou']:.2f}" in table
    h, w = cfg.data.image_size
    width, height = Image.open(eval_dir / "overlays.png").size  # 3 rows, titles and legend
    assert width >= 3 * w and height > 3 * h * width / (3 * w)
    assert Image.open(eval_dir / "confusion_matrix.png").size[0] > 200


def test_markdown_table_and_colours():
    confmat = torch.tensor([[3, 1], [0, 0]])
    table = markdown_table(summarize(confmat, ["road", "car"]))
    assert "| road | 75.00 | 75.00 |" in table and "| car | 0.00 | – |" in table
    rgb = colorize(torch.tensor([[0, 1, 255]]), [[1, 2, 3], [4, 5, 6]], ignore_index=255)
    assert rgb.tolist() == [[[1, 2, 3], [4, 5, 6], [0, 0, 0]]]


def test_cityscapes_folder_through_evaluate(tmp_path):
    root, pred_dir = make_fixture(tmp_path / "cityscapes")
    out = tmp_path / "out"
    result = evaluate(
        compose_config("evaluate", out, [f"predictions={pred_dir}", f"gt_root={root}"])
    )
    ref = official(root, pred_dir)
    assert abs(result["miou"] - ref["averageScoreClasses"]) < 1e-6
    assert abs(result["category_miiou"] - ref["averageScoreInstCategories"]) < 1e-6
    saved = json.loads((out / "eval.json").read_text())
    assert np.isclose(saved["miiou"], ref["averageScoreInstClasses"], atol=1e-6)
    assert "| person |" in (out / "eval.md").read_text()


def test_cityscapes_folder_needs_a_root(tmp_path):
    with pytest.raises(ConfigError, match="gt_root"):
        evaluate(compose_config("evaluate", tmp_path, [f"predictions={tmp_path}"]))

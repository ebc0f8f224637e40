"""segbench's Cityscapes folder scores against the official csEvalPixelLevelSemanticLabeling."""

import math
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels
from PIL import Image

from segbench.errors import DataError
from segbench.evaluation.cityscapes import evaluate_predictions

LABEL_IDS = [lab.id for lab in labels if lab.id >= 0]
INSTANCE_IDS = [lab.id for lab in labels if lab.hasInstances]  # caravan/trailer included


def make_fixture(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """gtFine/val with label and instance maps over every label id, and noisy predictions."""
    rng = np.random.default_rng(seed)
    pred_dir = root / "results"
    frames = [
        ("aachen", "000000", "000019"),
        ("aachen", "000001", "000019"),
        ("bochum", "000000", "000313"),
    ]
    for city, seq, frame in frames:
        h, w = 48, 96
        # Blocky ground truth: 8x8 cells of random label ids (ignored ones too).
        cells = rng.choice(LABEL_IDS, size=(h // 8, w // 8))
        gt = np.kron(cells, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
        inst = gt.astype(np.int32).copy()
        for k, (cy, cx) in enumerate(zip(*np.nonzero(np.isin(cells, INSTANCE_IDS)), strict=True)):
            if k % 4 == 3:
                continue  # a crowd region: instance map keeps the bare label id
            block = inst[cy * 8 : (cy + 1) * 8, cx * 8 : (cx + 1) * 8]
            block[:, :4] = block[:, :4] * 1000 + k  # two instances per cell
            block[:, 4:] = block[:, 4:] * 1000 + k + 500
        pred = gt.copy()
        noise = rng.random(gt.shape) < 0.3
        pred[noise] = rng.choice(LABEL_IDS, size=int(noise.sum()))
        gt_dir = root / "gtFine" / "val" / city
        gt_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{city}_{seq}_{frame}"
        Image.fromarray(gt).save(gt_dir / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(inst.astype(np.uint16)).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
        (pred_dir / city).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pred).save(pred_dir / city / f"{stem}_leftImg8bit_pred.png")
    return root, pred_dir


def official(root: Path, pred_dir: Path) -> dict:
    """Runs the official script's own evaluation function on the fixture."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    cs.args.quiet = True
    cs.args.JSONOutput = False
    cs.args.evalInstLevelScore = True
    cs.args.predictionPath = str(pred_dir)
    cs.args.predictionWalk = None
    gts = sorted(str(p) for p in (root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    preds = [cs.getPrediction(cs.args, gt) for gt in gts]
    return cs.evaluateImgLists(preds, gts, cs.args)


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6


def test_agrees_with_official_script(tmp_path):
    root, pred_dir = make_fixture(tmp_path)
    ours = evaluate_predictions(root, pred_dir, "val")
    ref = official(root, pred_dir)
    assert ours["images"] == 3
    assert np.array_equal(np.array(ours["confusion_matrix"]), ref["confMatrix"])
    for ours_key, ref_key in [
        ("class_iou", "classScores"),
        ("class_iiou", "classInstScores"),
        ("category_iou", "categoryScores"),
        ("category_iiou", "categoryInstScores"),
    ]:
        for name, value in ours[ours_key].items():
            assert close(value, ref[ref_key][name]), (ours_key, name, value, ref[ref_key][name])
    assert close(ours["miou"], ref["averageScoreClasses"])
    assert close(ours["miiou"], ref["averageScoreInstClasses"])
    assert close(ours["category_miou"], ref["averageScoreCategories"])
    assert close(ours["category_miiou"], ref["averageScoreInstCategories"])
    # The fixture exercises every kind of score: defined and not trivially perfect.
    assert 0.2 < ours["miou"] < 0.95 and 0.2 < ours["miiou"] < 0.95
    assert len(ours["class_iou"]) == 19 and math.isnan(ours["category_iou"]["void"])


def test_train_ids_are_refused(tmp_path):
    root, pred_dir = make_fixture(tmp_path)
    bad = next(pred_dir.rglob("*.png"))
    Image.fromarray(np.full((48, 96), 255, dtype=np.uint8)).save(bad)
    with pytest.raises(DataError, match="no Cityscapes label ids"):
        evaluate_predictions(root, pred_dir, "val")


def test_missing_prediction_names_the_file(tmp_path):
    root, pred_dir = make_fixture(tmp_path)
    next(pred_dir.rglob("bochum*.png")).unlink()
    with pytest.raises(DataError, match="no prediction matching bochum_000000_000313"):
        evaluate_predictions(root, pred_dir, "val")

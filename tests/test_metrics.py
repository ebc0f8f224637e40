import math

import torch

from segbench.evaluation.metrics import ConfusionMatrix, scores


def test_scores_against_hand_computed_values():
    # rows = ground truth, cols = prediction
    confmat = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    s = scores(confmat)
    # class 0: tp 3, fp 2, fn 1 -> 3/6; class 1: tp 4, fp 1, fn 2 -> 4/7; class 2 absent -> NaN
    assert math.isclose(s["iou"][0].item(), 0.5)
    assert math.isclose(s["iou"][1].item(), 4 / 7)
    assert math.isnan(s["iou"][2].item())
    assert math.isclose(s["miou"].item(), (0.5 + 4 / 7) / 2)
    assert math.isclose(s["pixel_acc"].item(), 7 / 10)
    assert math.isclose(s["mean_acc"].item(), (3 / 4 + 4 / 6) / 2)


def test_confusion_matrix_ignores_ignore_index_and_takes_logits():
    target = torch.tensor([[[0, 1], [255, 1]]])
    pred = torch.tensor([[[0, 0], [1, 1]]])
    logits = torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float()
    cm = ConfusionMatrix(num_classes=2, ignore_index=255)
    cm.update(logits, target)
    # the ignored pixel (predicted 1) counts nowhere
    assert cm.compute().tolist() == [[1, 0], [1, 1]]

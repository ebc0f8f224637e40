"""Accuracy: metrics, scoring a checkpoint or exported model, Cityscapes scoring, pictures, report."""

from segbench.evaluation.metrics import ConfusionMatrix, scores

__all__ = ["ConfusionMatrix", "scores"]

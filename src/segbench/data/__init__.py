"""Datasets in their official layouts, and the data module that serves them (plain PyTorch)."""

from segbench.data.datamodule import SegmentationDataModule, data_from_config
from segbench.data.dataset import Sample, SegmentationDataset

__all__ = ["Sample", "SegmentationDataModule", "SegmentationDataset", "data_from_config"]

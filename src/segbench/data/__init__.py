"""Datasets in their official layouts, and the datamodule that serves them."""

from segbench.data.datamodule import SegmentationDataModule
from segbench.data.dataset import Sample, SegmentationDataset

__all__ = ["Sample", "SegmentationDataModule", "SegmentationDataset"]

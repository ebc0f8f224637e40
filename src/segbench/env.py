"""Process-wide settings: defaults that keep runs off the network, where the configs live."""

import os
from pathlib import Path

# Each is only a default: a value the user exported wins.
_OFFLINE_DEFAULTS = {
    # Weights & Biases logs locally; `wandb sync` uploads later.
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    # smp and timm resolve pretrained weights through the Hugging Face hub: read
    # only the local cache, so a missing file fails at once instead of retrying.
    "HF_HUB_OFFLINE": "1",
    # albumentations checks PyPI for a newer version on import.
    "NO_ALBUMENTATIONS_UPDATE": "1",
}


def set_offline_defaults() -> None:
    """Sets the offline defaults for variables the user has not set."""
    for key, value in _OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


#: The Hydra config tree (``conf/`` beside ``src/``): config groups, dataset and backbone facts.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"

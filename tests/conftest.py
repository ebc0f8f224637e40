"""Shared fixtures: the real config tree composed with overrides, tiny generated data."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import segbench.config  # noqa: F401  (offline defaults before wandb; the OmegaConf resolvers)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "conf"
CAMVID = Path(os.environ.get("SEGBENCH_CAMVID", ROOT.parent / "shared" / "datasets" / "camvid"))

# A small synthetic dataset: enough batches for train and val, seconds to generate.
SYNTHETIC = [
    "data.dataset.num_train=16",
    "data.dataset.num_val=8",
    "data.image_size=[64,96]",
    "data.batch_size=4",
]


def compose_config(
    name: str, tmp_path: Path, overrides: list[str] = (), data_dir: Path | None = None
) -> DictConfig:
    """Composes ``conf/<name>.yaml`` as Hydra would, with outputs under ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.data_dir = str(data_dir or tmp_path / "data")
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig().set_config(cfg)
    # As in a real run, the job's config holds no `hydra` node (${hydra:...} still resolves).
    with open_dict(cfg):
        del cfg.hydra
    return cfg


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data dir shared by the session (the synthetic set is generated once)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def train_cfg(tmp_path, data_dir):
    """Factory: the train config with fast CPU defaults plus the given overrides."""

    def make(*overrides: str) -> DictConfig:
        custom_data = any(o.startswith("data=") for o in overrides)
        base = [
            *([] if custom_data else SYNTHETIC),
            "logger=csv",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            "callbacks.rich_progress_bar=null",
        ]
        return compose_config("train", tmp_path, [*base, *overrides], data_dir)

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def camvid_root() -> Path:
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID} (set SEGBENCH_CAMVID to its folder)")
    return CAMVID

import subprocess
import sys

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from tests.conftest import ROOT, compose_config

from segbench.config import CONFIG_DIR, check_group_overrides, group_options
from segbench.errors import ConfigError

GROUPS = [
    "model",
    "backbone",
    "data",
    "init",
    "loss",
    "optimizer",
    "scheduler",
    "augment",
    "trainer",
    "logger",
    "callbacks",
    "debug",
]


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group, tmp_path):
    options = group_options(group)
    assert options, f"conf/{group} has no options"
    for option in options:
        compose_config("train", tmp_path, [f"{group}={option}"])
        assert HydraConfig.get().runtime.choices[group] == option


def test_strict_mode_refuses_unknown_keys(tmp_path):
    with pytest.raises(Exception, match="optimiser"):
        compose_config("train", tmp_path, ["optimiser.lr=0.1"])


def test_unknown_group_option_lists_closest_first():
    with pytest.raises(ConfigError) as err:
        check_group_overrides(["model=unett"], CONFIG_DIR)
    message = str(err.value)
    assert "model='unett'" in message
    allowed = message.split("allowed: ")[1].splitlines()[0].split(", ")
    assert allowed[0] == "unet"
    assert set(allowed) == set(group_options("model"))


def test_train_script_refuses_unknown_option_before_hydra():
    proc = subprocess.run(
        [sys.executable, "train.py", "backbone=resnet5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "allowed: resnet50" in proc.stderr


def test_dataset_facts_reach_model_and_loss(tmp_path):
    cfg = compose_config("train", tmp_path, ["data=camvid"])
    assert cfg.model.num_classes == cfg.data.num_classes == 11
    assert instantiate(cfg.loss).ignore_index == 11


def test_user_error_found_inside_hydra_instantiate():
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from segbench.errors import DataError, user_error

    with pytest.raises(InstantiationException) as info:
        instantiate(
            {
                "_target_": "segbench.data.camvid.CamVid",
                "root": "/nonexistent/camvid",
                "split": "train",
            }
        )
    found = user_error(info.value)
    assert isinstance(found, DataError) and str(found.path) == "/nonexistent/camvid"
    assert user_error(RuntimeError("unrelated")) is None

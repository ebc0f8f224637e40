"""Config helpers shared by the entry points: group-option checks, resolvers, resolved-config I/O."""

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from segbench.env import CONFIG_DIR
from segbench.errors import ConfigError, closest_first
from segbench.files import write_text

__all__ = ["CONFIG_DIR", "check_group_overrides", "group_options", "run_checked", "save_resolved"]


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """Lists the options of a config group (``model`` -> ``[fcn, unet, ...]``)."""
    folder = config_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def check_group_overrides(argv: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """Refuses ``group=option`` overrides that name no option of the group.

    Hydra's own message lists the options alphabetically and buries them in a
    traceback; this one puts the closest match first and runs before Hydra.

    Raises:
        ConfigError: an override names an unknown option.
    """
    extra_dirs = _searchpath_dirs(argv)
    for arg in argv:
        if "=" not in arg or arg.startswith(("~", "hydra.", "hydra/")):
            continue
        written, value = arg.split("=", 1)
        key = written.lstrip("+").split("@", 1)[0]  # +budget/device@budget.devices.x: budget/device
        if key.startswith("hydra/") or not (config_dir / key).is_dir():
            continue
        choices = [v.strip() for v in value.strip("[]").split(",")] if value else []
        options = sorted({o for d in (config_dir, *extra_dirs) for o in group_options(key, d)})
        for choice in choices:
            if choice in ("null", "") or choice in options:
                continue
            closest = closest_first(choice, options)
            raise ConfigError(
                key,
                choice,
                f"no such option in config group '{key}' ({config_dir / key})",
                allowed=options,
                fix=f"pick one of the allowed options, e.g. {written}={closest[0] if closest else '...'}",
            )


def _searchpath_dirs(argv: list[str]) -> list[Path]:
    """Config dirs added with ``hydra.searchpath=[file://...]`` (their options count too)."""
    dirs = []
    for arg in argv:
        if arg.startswith("hydra.searchpath="):
            for item in arg.split("=", 1)[1].strip("[]").split(","):
                item = item.strip().strip("'\"")
                if item.startswith("file://"):
                    dirs.append(Path(item.removeprefix("file://")))
    return dirs


def run_checked(main, argv: list[str] | None = None) -> None:
    """Checks group overrides, then calls a ``@hydra.main`` function."""
    try:
        check_group_overrides(sys.argv[1:] if argv is None else argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    main()


def save_resolved(cfg: DictConfig, path: Path) -> None:
    """Writes ``cfg`` with every interpolation resolved, for reproducing a run."""
    write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``)."""
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra run (a config composed by hand)
        return False


def job_overrides() -> list[str]:
    """The command-line overrides of the current Hydra job (empty outside Hydra)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def sweep_group(default: str) -> str:
    """OmegaConf resolver ``${sweep_group:<default>}``: the sweep dir's name in a multirun.

    Runs of one multirun share a W&B group; a single run falls back to ``default``.
    """
    return Path(HydraConfig.get().sweep.dir).name if is_multirun() else default


def run_name(model: str, backbone: DictConfig | dict) -> str:
    """OmegaConf resolver ``${run_name:<model option>,${backbone}}``: ``unet-mobilenet-v2-w0.5``."""
    parts = [str(model), str(backbone.get("name"))]
    if backbone.get("version") is not None:
        parts.append(str(backbone["version"]))
    if backbone.get("width") is not None:
        parts.append(f"w{backbone['width']}")
    return "-".join(parts)


def register_resolvers() -> None:
    """Registers segbench's OmegaConf resolvers (idempotent)."""
    for name, fn in (("sweep_group", sweep_group), ("run_name", run_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


# ${sweep_group:...} and ${run_name:...} in conf/logger/wandb.yaml: every entry point
# composes its config after importing this module. (${launch_dir:} and ${job_dirname:...},
# which Hydra resolves before a job runs, are registered by `import segbench`: segbench.env.)
register_resolvers()

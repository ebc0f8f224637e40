"""Config helpers shared by the entry points: group-option checks and resolved-config I/O."""

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from segbench.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


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
        key, value = arg.split("=", 1)
        key = key.lstrip("+")
        if key.startswith("hydra/") or not (config_dir / key).is_dir():
            continue
        choices = [v.strip() for v in value.strip("[]").split(",")] if value else []
        options = sorted({o for d in (config_dir, *extra_dirs) for o in group_options(key, d)})
        for choice in choices:
            if choice in ("null", "") or choice in options:
                continue
            raise ConfigError(
                key,
                choice,
                f"no such option in config group '{key}' ({config_dir / key})",
                allowed=options,
                fix=f"pick one of the allowed options, e.g. {key}={options[0] if options else '...'}",
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))

"""``segbench <command> [args]``: one entry point for the tools beside train/evaluate/export.

Each command is a module runnable on its own (``python -m <module> ...``); this
only dispatches to it.
"""

import runpy
import sys

from segbench.errors import closest_first

COMMANDS = {
    "models": ("segbench.profiling.zoo", "list the model zoo with params and FLOPs"),
    "check": ("segbench.data.check", "check a dataset: counts, sizes, labels, problems"),
    "profile": (
        "segbench.profiling.profile",
        "params, FLOPs, latency and real-time budget of a model",
    ),
    "report": (
        "segbench.evaluation.report",
        "architecture comparison table from a sweep or runs dir",
    ),
    "export": ("segbench.deploy.export", "export a checkpoint (ONNX, TensorRT)"),
    "predict": (
        "segbench.deploy.predict",
        "label maps and overlays for images, folders, videos",
    ),
    "import-labelstudio": (
        "segbench.data.labelstudio",
        "Label Studio export -> images/ + masks/ (data=folder)",
    ),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: segbench <command> [args]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(
            f"error: unknown command {command!r}; commands: "
            f"{', '.join(closest_first(command, COMMANDS))}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    sys.argv = [f"segbench {command}", *rest]
    runpy.run_module(COMMANDS[command][0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

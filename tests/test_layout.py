"""The package's shape: layers that import one way, no loops, plain models and data, small units.

The layers, bottom to top (a module may import its own layer and the ones below):

0. ``segbench`` (``errors``, ``env``, ``files``, ``targets``, ``config``, ``cli`` is the exception:
   it dispatches to every command)
1. ``segbench.models``, ``segbench.data``
2. ``segbench.runtimes``
3. ``segbench.profiling``, ``segbench.evaluation``
4. ``segbench.deploy``
5. ``segbench.training``
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.conftest import ROOT

SRC = ROOT / "src" / "segbench"
LAYERS = {
    "models": 1,
    "data": 1,
    "runtimes": 2,
    "profiling": 3,
    "evaluation": 3,
    "deploy": 4,
    "training": 5,
}
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60  # without the docstring; longer ones say why in it ("long because")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def segbench_imports(path: Path) -> set[str]:
    """Every segbench module ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("segbench"):
            found.add(node.module)
            for alias in node.names:  # `from segbench.data import datamodule` names a module
                if (SRC.parent / node.module.replace(".", "/") / f"{alias.name}.py").is_file():
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("segbench"))
    return found


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}
GRAPH = {name: segbench_imports(path) & set(MODULES) for name, path in MODULES.items()}


def test_imports_run_one_way_through_the_layers():
    upward = [
        f"{name} (layer {layer(name)}) imports {dep} (layer {layer(dep)})"
        for name, deps in GRAPH.items()
        if name != "segbench.cli"
        for dep in deps
        if layer(dep) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_loops():
    # A package imports its own submodules (its __init__ re-exports them); a submodule
    # importing its package's __init__ back would be a loop and is caught here.
    state: dict[str, int] = {}
    loops = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                loops.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not loops, "\n".join(loops)


def test_the_layer_test_sees_a_wrong_import():
    # The checks above must be able to fail: a models module importing training is upward.
    fake = {"segbench.models.x": {"segbench.training.train"}}
    assert any(layer(d) > layer(n) for n, deps in fake.items() for d in deps)


def test_modules_and_functions_stay_small():
    too_long = []
    for name, path in MODULES.items():
        source = path.read_text()
        if (lines := source.count("\n")) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            doc = ast.get_docstring(node) or ""
            if doc:
                length -= node.body[0].end_lineno - node.body[0].lineno + 1
            if length > MAX_FUNCTION_LINES and "long because" not in doc:
                too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


@pytest.mark.parametrize("needle,home", [("time.perf_counter()", "segbench.runtimes.latency")])
def test_one_latency_timer(needle, home):
    # Latency is timed by runtimes.latency.time_callable alone (ONNX export time is a duration
    # of the export, not a latency, and is the one other clock reading).
    users = {n for n, p in MODULES.items() if needle in p.read_text()}
    assert users <= {home, "segbench.runtimes.onnx"}, users


def test_one_parameter_counter_and_one_atomic_writer():
    counters = {n for n, p in MODULES.items() if "numel() for p in" in p.read_text()}
    assert counters == {"segbench.profiling.params"}
    writers = {n for n, p in MODULES.items() if "os.replace(" in p.read_text()}
    assert writers == {"segbench.files"}


def test_models_and_data_load_a_checkpoint_without_lightning_or_hydra(tmp_path):
    from segbench.models import FCN

    backbone = {"name": "mobilenet", "version": "v2", "width": 0.35, "weights": None}
    backbone["encoders"] = {"v2": {"0.35": "tu-mobilenetv2_035"}}
    net = FCN(backbone=backbone, num_classes=3)
    ckpt = {
        "hyper_parameters": {
            "net": {"_target_": "segbench.models.FCN", "backbone": backbone, "num_classes": 3},
            "data": {"num_classes": 3},
        },
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
    }
    path = tmp_path / "best.ckpt"
    torch.save(ckpt, path)
    code = (
        "import sys, torch, segbench.models, segbench.data\n"
        f"net, _ = segbench.models.load_network({str(path)!r})\n"
        "assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)\n"
        "print(sorted(m for m in ('lightning', 'pytorch_lightning', 'hydra') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os

    from segbench.files import write_text

    path = write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask

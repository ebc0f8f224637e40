"""The README's commands, run as written, from a fresh working directory.

Every line of a ```bash block of README.md that runs segbench (``python
train.py|evaluate.py|export.py ...``, ``python -m segbench...``, ``segbench ...``,
``make ...``) becomes a test: it runs as a subprocess in a fresh directory that
holds only the checkout's entry points, configs and sources (no ``logs/``, no
``data/``), with small limits appended (one epoch of two batches, tiny synthetic
data, a two-job grid, few timing runs). Placeholders take the outputs of earlier
README commands: ``<run>`` the first training run, ``logs/train/multiruns/<time>``
the first sweep, ``logs/export/runs/<run>`` the first export; ``<... run>`` after
``init.checkpoint=`` the closest earlier command of the same block training the same
model and backbone. Optional ``[key=value]`` parts and a bare ``...`` are left out.

The first runnable training and evaluation commands are in the fast suite; the rest
are ``slow`` (``make test-all``). What this machine cannot run is skipped with the
reason (CUDA, GPUs, SLURM, TensorRT, a missing dataset or cached weights, ``make
test`` itself, a ``# test-skip: <reason>`` comment); anything else that is not
understood fails, so the README keeps its promise as it grows.
"""

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tests.conftest import CAMVID, ROOT

README = ROOT / "README.md"
#: What a fresh checkout has at its top that the commands use.
CHECKOUT = (
    "train.py",
    "evaluate.py",
    "export.py",
    "predict.py",
    "conf",
    "src",
    "Makefile",
    "pyproject.toml",
)
#: Kinds whose first runnable command is in the fast suite (`make test`); the sweep, report,
#: export and profile paths have their own fast tests (test_first_hour.py).
FAST_KINDS = ("train.py", "evaluate.py")

TRAIN_LIMITS = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_cost.latency_runs=1",
]
TINY_SYNTHETIC = [
    "data.dataset.num_train=8",
    "data.dataset.num_val=4",
    "data.image_size=[64,96]",
    "data.batch_size=4",
]
REAL_DATA = ["data.batch_size=2", "data.num_workers=0"]
TWO_JOB_GRID = [
    "hydra.sweeper.params.model=unet",
    "hydra.sweeper.params.backbone='mobilenet,erfnet'",
    "hydra.sweeper.params.seed=0",
    "profile_runtimes=[pytorch]",
]
OPTUNA = ["hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=1"]
EXPORT_LIMITS = ["parity_images=4", "bench.runs=2", "bench.warmup=1", "bench.batch_sizes=[1]"]
#: A two-batch model's logits are near ties: INT8 flips more pixels than a trained one's.
INT8_LIMITS = ["int8.min_agreement=50"]
PROFILE_LIMITS = ["runs=2", "warmup=1"]
CAMVID_SPELLINGS = ("../shared/datasets/camvid", "/path/to/CamVid")


@dataclass
class Command:
    index: int
    line: int  # README line number
    block: int
    text: str  # continuation lines joined, comment removed
    comment: str
    argv: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str | None:
        """``train.py``, ``train.py -m``, ``evaluate.py``, ``segbench report``, ``make train``..."""
        a = self.argv
        if a and a[0] in ("python", ".venv/bin/python") and len(a) > 1:
            if a[1] == "train.py":
                multirun = "-m" in a[2:] or "--multirun" in a[2:] or "hparams_search=" in self.text
                return "train.py -m" if multirun else "train.py"
            if a[1] in ("evaluate.py", "export.py", "predict.py"):
                return a[1]
            if a[1] == "-m" and len(a) > 2 and a[2].startswith("segbench"):
                return f"python -m {a[2]}"
            return None
        if a and a[0] == "segbench":
            return f"segbench {a[1] if len(a) > 1 else ''}".strip()
        if a and a[0] == "make":
            return f"make {next((t for t in a[1:] if '=' not in t), '')}".strip()
        return None

    def option(self, key: str, default: str | None = None) -> str | None:
        """The last ``key=value`` of the command (the one Hydra keeps)."""
        values = [t.split("=", 1)[1] for t in self.args() if t.split("=", 1)[0] == key]
        return values[-1] if values else default

    def args(self) -> list[str]:
        if self.kind and self.kind.startswith("make"):
            return [t for a in self.argv if a.startswith("ARGS=") for t in shlex.split(a[5:])]
        return self.argv


def _split_comment(line: str) -> tuple[str, str]:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def readme_commands(path: Path = README) -> list[Command]:
    """Every command line of the ```bash blocks, in README order."""
    commands, block, inside, pending, start = [], 0, False, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if raw.strip().startswith("```"):
            inside = raw.strip() == "```bash"
            block += inside
            continue
        if not inside or not (raw.strip() or pending):
            continue
        start = start or number
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text, comment = _split_comment(pending + raw)
        pending, line = "", start
        start = 0
        if text.strip():
            # An optional part is written as a separate `[...]` word.
            argv = shlex.split(re.sub(r"(?<=\s)\[[^\]]*\]", "", text))
            commands.append(Command(len(commands), line, block, text.strip(), comment, argv))
    return commands


COMMANDS = readme_commands()


@functools.cache
def _venv_ready() -> str | None:
    """None if ``make`` would not install anything into this interpreter's venv, else why."""
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix):
        return "the tests do not run in a venv, which make would create and install into"
    proc = subprocess.run(
        ["make", "-q", "install", f"VENV={venv}"], cwd=ROOT, capture_output=True, timeout=60
    )
    if proc.returncode != 0:
        return (
            f"make would (re)install into {venv} (its install stamp is older than pyproject.toml)"
        )
    return None


#: Tools a README line may call that are not segbench (shell setup, installs, W&B's CLI).
OTHER_TOOLS = ("source", "export", "pip", "wandb", "cd", "git")


def skip_reason(c: Command) -> str | None:
    """Why ``c`` cannot run here, or None."""
    if m := re.match(r"test-skip:\s*(.+)", c.comment):
        return m.group(1)
    if c.kind is None:
        first = c.argv[0] if c.argv else ""
        # Anything else is not understood: test_every_readme_command_is_understood fails.
        return f"not a segbench command ({first})" if first in OTHER_TOOLS else None
    if c.kind == "make test":
        return "it runs this test suite"
    if c.kind.startswith("make") and (why := _venv_ready()):
        return why
    text = " ".join(c.args())
    if ("hydra/launcher=slurm" in text or int(c.option("trainer.num_nodes", "1")) > 1) and (
        shutil.which("sbatch") is None
    ):
        return "needs SLURM (no sbatch here)"
    if c.option("format") == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "needs TensorRT on an NVIDIA GPU (not importable here)"
    gpus = 0
    if re.search(
        r"\btrainer=gpu\b|\bdevice=cuda|\btrainer.accelerator=gpu\b|--gpu\b|--full\b", text
    ):
        gpus = 1
    if c.option("trainer") == "ddp":
        gpus = int(c.option("trainer.devices", "2"))
    if gpus > torch.cuda.device_count():
        return f"needs {gpus} CUDA GPU(s); this machine has {torch.cuda.device_count()}"
    if c.kind in ("predict.py", "segbench predict") and (why := _missing_source(c)):
        return why
    if c.kind == "segbench import-labelstudio" and not Path(c.argv[2]).exists():
        return f"needs the Label Studio export {c.argv[2]} (tests/test_labelstudio.py builds one)"
    root = c.option("data.root")
    data = _data(c)
    split = c.option("test_split")
    if split not in (None, "null") and root in CAMVID_SPELLINGS and not (CAMVID / split).is_dir():
        return f"needs CamVid's {split} split (not in {CAMVID})"
    if (
        root is None
        and data != "synthetic"
        and c.kind.startswith(("train", "make", "segbench check"))
    ):
        return f"reads data={data} from its default data.root (data/{data}), absent in a fresh dir"
    if root in CAMVID_SPELLINGS and not (CAMVID / "train").is_dir():
        return f"needs CamVid at {CAMVID} (set SEGBENCH_CAMVID)"
    if root and root not in CAMVID_SPELLINGS and "<" not in root and not Path(root).exists():
        return f"needs the dataset at {root}"
    return None


def _missing_source(c: Command) -> str | None:
    """Why a predict command's ``source`` is not here (a video, a glob of the user's own)."""
    source = c.option("source") or ""
    if any(source.startswith(s) for s in CAMVID_SPELLINGS):
        return None if (CAMVID / "train").is_dir() else f"needs CamVid at {CAMVID}"
    return f"needs the user's own frames ({source})"


def _data(c: Command) -> str:
    """The dataset a training command reads (``experiment=camvid_recipe`` sets CamVid)."""
    default = "camvid" if c.option("experiment") == "camvid_recipe" else "synthetic"
    return c.option("data", default)


def _first(kind: str, needle: str = "") -> int | None:
    """The first README command of ``kind`` (holding ``needle``) that runs here (training: one
    without placeholders)."""
    return next(
        (
            c.index
            for c in COMMANDS
            if c.kind == kind
            and needle in c.text
            and skip_reason(c) is None
            and not (kind.startswith("train") and "<" in c.text)
        ),
        None,
    )


def _fast(c: Command) -> bool:
    return c.kind in FAST_KINDS and _first(c.kind) == c.index


def test_every_readme_command_is_understood():
    kinds = [c.kind for c in COMMANDS]
    assert {"train.py", "train.py -m", "evaluate.py", "export.py", "segbench report"} <= set(kinds)
    not_segbench = [
        f"README.md:{c.line}: {c.text}"
        for c in COMMANDS
        if c.kind is None and skip_reason(c) is None
    ]
    assert not not_segbench, "not a segbench command (add `# test-skip: <reason>`):\n" + "\n".join(
        not_segbench
    )
    unknown = [
        f"README.md:{c.line}: {p}"
        for c in COMMANDS
        if c.kind
        for p in re.findall(r"<[^<>]+>", c.text)
        if not _placeholder_known(p)
    ]
    assert not unknown, "unknown placeholders (see tests/test_readme.py):\n" + "\n".join(unknown)


def _placeholder_known(p: str) -> bool:
    return bool(
        re.fullmatch(r"<([^<>]*\brun\b[^<>]*|time|folder|Cityscapes root|dataset folder)>", p)
    )


# -- running one command ------------------------------------------------------------------------


@dataclass
class Outcome:
    workdir: Path
    proc: subprocess.CompletedProcess

    def find(self, pattern: str) -> Path:
        hits = sorted(self.workdir.glob(pattern))
        assert hits, f"no {pattern} under {self.workdir}"
        return hits[-1]


_OUTCOMES: dict[int, Outcome] = {}


def produce(index: int, tmp_factory) -> Outcome:
    """Runs README command ``index`` once per test process (later commands reuse its files)."""
    if index not in _OUTCOMES:
        c = COMMANDS[index]
        workdir = tmp_factory.mktemp(f"readme{c.line}")
        for name in CHECKOUT:
            (workdir / name).symlink_to(ROOT / name)
        argv = _argv(c, tmp_factory)
        env = {k: v for k, v in os.environ.items() if k != "SEGBENCH_ROOT"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
        proc = subprocess.run(
            argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900
        )
        _OUTCOMES[index] = Outcome(workdir, proc)
    return _OUTCOMES[index]


def _ok(index: int, tmp_factory) -> Outcome:
    out = produce(index, tmp_factory)
    c = COMMANDS[index]
    assert out.proc.returncode == 0, (
        f"README.md:{c.line} `{c.text}` exited {out.proc.returncode}:\n{out.proc.stderr[-3000:]}"
    )
    return out


def _producer(c: Command) -> int:
    """The command whose run a ``<... run>`` of ``c`` means."""
    if "init.checkpoint=<" in c.text:
        key = (c.option("model", "unet"), c.option("backbone", "mobilenet"))
        for o in reversed(COMMANDS[: c.index]):
            same = (o.option("model", "unet"), o.option("backbone", "mobilenet")) == key
            if same and o.block == c.block and o.kind == "train.py" and skip_reason(o) is None:
                return o.index
    return _first("train.py")


def _substitute(c: Command, tmp_factory) -> str:
    text = re.sub(r"(?<=\s)\[[^\]]*\]", "", c.text)
    text = re.sub(r"(?<=\s)\.\.\.(?=\s|$)", "", text)
    for spelling in CAMVID_SPELLINGS:
        text = text.replace(spelling, str(CAMVID))
    if "logs/export/runs/<run>" in text:
        int8 = "model_int8.onnx" in text  # then the export that wrote one
        producer = _first("export.py", "precision=int8" if int8 else "")
        model = "model_int8.onnx" if int8 else "model.onnx"
        export = _ok(producer, tmp_factory).find(f"logs/export/runs/*/{model}").parent
        text = text.replace("logs/export/runs/<run>", str(export))
    if c.kind == "segbench report" and "logs/arch_comparison/" in text:
        sweep = _ok(_first("train.py -m", "experiment=arch_comparison"), tmp_factory)
        text = text.replace("logs/arch_comparison/", f"{sweep.workdir}/logs/arch_comparison/")
    if "<time>" in text:
        sweep = _ok(_first("train.py -m"), tmp_factory).find("logs/*/multiruns/*/sweep_status.json")
        text = re.sub(r"(?:logs/train/multiruns/)?<time>", str(sweep.parent), text)
    if re.search(r"<[^<>]*\brun\b[^<>]*>|ckpt_path=\.\.\.|<dataset folder>", text):
        run = _ok(_producer(c), tmp_factory).find("logs/*/runs/*/checkpoints/best.ckpt").parents[1]
        text = re.sub(r"(?:logs/train/runs/)?<[^<>]*\brun\b[^<>]*>", str(run), text)
        text = text.replace("ckpt_path=...", f"ckpt_path={run}/checkpoints/best.ckpt")
        text = text.replace("<dataset folder>", OmegaConf.load(run / "config.yaml").data.root)
    if "<folder>" in text or "<Cityscapes root>" in text:
        from tests.test_cityscapes_eval import make_fixture

        gt_root, predictions = make_fixture(tmp_factory.mktemp("cityscapes"))
        text = text.replace("<folder>", str(predictions)).replace("<Cityscapes root>", str(gt_root))
    return text


def _limits(c: Command) -> list[str]:
    kind, text = c.kind, " ".join(c.args())
    if kind in ("train.py", "train.py -m", "make train"):
        data = _data(c)
        extra = TRAIN_LIMITS + (TINY_SYNTHETIC if data == "synthetic" else REAL_DATA)
        if "experiment=arch_comparison" in text:
            extra += TWO_JOB_GRID
        if "hparams_search=optuna" in text:
            extra += OPTUNA
        return extra
    if kind == "export.py":
        return EXPORT_LIMITS + (INT8_LIMITS if c.option("precision") == "int8" else [])
    if kind == "segbench profile":
        return PROFILE_LIMITS
    return []


def _argv(c: Command, tmp_factory) -> list[str]:
    argv = shlex.split(_substitute(c, tmp_factory))
    limits = _limits(c)
    if argv[0] in ("python", ".venv/bin/python"):
        return [sys.executable, *argv[1:], *limits]
    if argv[0] == "segbench":
        return [sys.executable, "-m", "segbench.cli", *argv[1:], *limits]
    if argv[0] == "make":
        args = [a for a in argv[1:] if not a.startswith("ARGS=")]
        given = next((a[5:] for a in argv[1:] if a.startswith("ARGS=")), "")
        full = " ".join([given, *(shlex.quote(x) for x in limits)]).strip()
        return ["make", *args, f"VENV={sys.prefix}", f"ARGS={full}"]
    raise AssertionError(f"README.md:{c.line}: cannot run `{c.text}`")


def _params():
    for c in COMMANDS:
        marks = [pytest.mark.xdist_group("readme")]
        if not _fast(c) and skip_reason(c) is None:  # skips cost nothing: listed in make test
            marks.append(pytest.mark.slow)
        yield pytest.param(c.index, id=f"L{c.line}:{c.text[:60]}", marks=marks)


@pytest.mark.parametrize("index", list(_params()))
def test_readme_command_runs(index, tmp_path_factory):
    c = COMMANDS[index]
    if reason := skip_reason(c):
        pytest.skip(f"README.md:{c.line} `{c.text}`: {reason}")
    weights = c.option("backbone.weights")
    if weights in ("imagenet", "instagram") and (why := _weights_missing(c)):
        pytest.skip(f"README.md:{c.line} `{c.text}`: {why}")
    out = _ok(index, tmp_path_factory)
    assert "Traceback" not in out.proc.stderr, out.proc.stderr[-3000:]
    if c.kind == "train.py -m":  # a sweep exits 0 if any job succeeded: none may fail here
        for status in out.workdir.glob("logs/*/multiruns/*/sweep_status.json"):
            assert json.loads(status.read_text())["counts"]["failed"] == 0, status.read_text()


def _weights_missing(c: Command) -> str | None:
    import segmentation_models_pytorch as smp

    from segbench.models.backbones import smp_encoder_name

    yaml = ROOT / "conf" / "backbone" / f"{c.option('backbone')}.yaml"
    backbone = OmegaConf.to_container(OmegaConf.load(yaml))
    name = smp_encoder_name(backbone)
    try:
        smp.encoders.get_encoder(name, weights=c.option("backbone.weights"))
    except Exception as err:
        return f"needs the {name} weights in the local cache ({type(err).__name__})"
    return None

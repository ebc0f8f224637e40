"""predict.py / segbench predict: folders of CamVid frames (masks equal evaluate's argmax),
a video made with OpenCV, the ONNX runtime (static graphs too), and bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import ROOT, compose_config
from tests.layouts import write_camvid

from segbench.data.datamodule import data_from_config
from segbench.data.transforms import build_transform
from segbench.deploy.export import export
from segbench.deploy.frames import Frame, open_source, output_names
from segbench.deploy.outputs import legend
from segbench.deploy.predict import batches, predict
from segbench.errors import ConfigError, DataError
from segbench.evaluation.evaluate import evaluate
from segbench.evaluation.metrics import ConfusionMatrix
from segbench.models import load_network
from segbench.runtimes import make_predictor


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A U-Net trained for one step on CamVid-layout frames: (checkpoint, data root)."""
    tmp = tmp_path_factory.mktemp("predict")
    root = write_camvid(tmp / "camvid", splits=("train", "val"), n=6)
    run(
        "train.py",
        "data=camvid",
        f"data.root={root}",
        "data.image_size=[64,96]",
        "data.batch_size=2",
        "data.num_workers=0",
        "backbone.width=0.35",
        "model.decoder_channels=[16,16,16,16,16]",
        "logger=csv",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "callbacks.rich_progress_bar=null",
        f"hydra.run.dir={tmp / 'run'}",
        f"paths.data_dir={tmp / 'data'}",
    )
    return tmp / "run" / "checkpoints" / "best.ckpt", root


def evaluate_argmax(ckpt: Path, root: Path) -> dict[str, np.ndarray]:
    """What evaluate.py's predictor gives for each val sample of a CamVid root, by file stem."""
    net, hparams = load_network(ckpt)
    datamodule = data_from_config(hparams["datamodule"], root=str(root), batch_size=1)
    split = datamodule.get_split("val")
    predictor = make_predictor("pytorch", net)
    return {
        sample.image.stem: predictor(split[i]["image"][None])[0].numpy()
        for i, sample in enumerate(split.samples)
    }


def confusion_from_pngs(masks: Path, root: Path, num_classes: int, ignore: int) -> np.ndarray:
    confmat = ConfusionMatrix(num_classes, ignore)
    for gt in sorted((root / "valannot").glob("*.png")):
        pred = np.array(Image.open(masks / gt.name))
        confmat.update(
            torch.from_numpy(pred)[None].long(),
            torch.from_numpy(np.array(Image.open(gt)))[None].long(),
        )
    return confmat.compute().numpy()


def check_folder_against_evaluate(ckpt: Path, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    proc = run(
        "predict.py",
        f"ckpt_path={ckpt}",
        f"source={root / 'val'}",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "batch_size=4",
    )
    assert "frames/s network" in proc.stdout
    expected = evaluate_argmax(ckpt, root)
    for stem, labels in expected.items():
        got = np.array(Image.open(out / "masks" / f"{stem}.png"))
        assert got.dtype == np.uint8 and np.array_equal(got, labels), stem
        overlay = Image.open(out / "overlays" / f"{stem}.png")
        assert overlay.width == labels.shape[1] and overlay.height > labels.shape[0]  # + legend
    assert len({v for labels in expected.values() for v in np.unique(labels)}) > 1
    summary = json.loads((out / "predict.json").read_text())
    assert summary["frames"] == len(expected) and summary["status"] == "ok"
    assert summary["network_fps"] > 0 and summary["class_names"][3] == "road"
    # evaluate on the same checkpoint and frames: the same confusion matrix.
    report = evaluate(
        compose_config(
            "evaluate",
            tmp_path / "eval",
            [f"ckpt_path={ckpt}", "data=camvid", f"data.root={root}", "num_overlays=0"],
        )
    )
    ours = confusion_from_pngs(out / "masks", root, 11, 11)
    assert np.array_equal(ours, np.array(report["confusion_matrix"]))


def test_folder_of_camvid_layout_frames_equals_evaluate(trained, tmp_path):
    ckpt, root = trained
    check_folder_against_evaluate(ckpt, root, tmp_path)


@pytest.mark.slow  # real 360x480 frames; the CamVid-layout test above runs in the fast suite
def test_folder_of_real_camvid_frames_equals_evaluate(trained, tmp_path, camvid_root):
    ckpt, _ = trained
    subset = tmp_path / "camvid"
    for folder in ("val", "valannot"):
        (subset / folder).mkdir(parents=True)
        for name in sorted(p.name for p in (camvid_root / "val").glob("*.png"))[:5]:
            shutil.copy(camvid_root / folder / name, subset / folder / name)
    check_folder_against_evaluate(ckpt, subset, tmp_path)
    assert Image.open(tmp_path / "pred" / "masks" / f"{name[:-4]}.png").size == (480, 360)


def test_video_made_with_opencv(trained, tmp_path):
    ckpt, _ = trained
    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 7.5, (96, 64))
    rng = np.random.default_rng(1)
    for _ in range(5):
        frame = np.zeros((64, 96, 3), np.uint8)
        frame[:32] = rng.integers(0, 255, 3)  # blocks of colour, red and blue distinct
        frame[32:, :48] = rng.integers(0, 255, 3)
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    run(
        "-m",
        "segbench.cli",
        "predict",
        f"ckpt_path={ckpt}",
        f"source={video}",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "batch_size=2",
    )
    # What the network gives for the frames as OpenCV decodes them (BGR -> RGB).
    net, hparams = load_network(ckpt)
    transform = build_transform(hparams["data"]["mean"], hparams["data"]["std"])
    capture = cv2.VideoCapture(str(video))
    for i in range(5):
        ok, bgr = capture.read()
        assert ok
        image = transform(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))["image"]
        expected = net(image[None]).argmax(1)[0].numpy()
        got = np.array(Image.open(out / "masks" / "drive" / f"{i:06d}.png"))
        assert np.array_equal(got, expected), i
    overlay = cv2.VideoCapture(str(out / "drive_overlay.mp4"))
    assert overlay.get(cv2.CAP_PROP_FPS) == pytest.approx(7.5)
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert int(overlay.get(cv2.CAP_PROP_FRAME_WIDTH)) == 96
    assert int(overlay.get(cv2.CAP_PROP_FRAME_HEIGHT)) > 64  # the legend below
    assert not list(out.glob(".*"))  # no partial file left
    summary = json.loads((out / "predict.json").read_text())
    assert summary["frames"] == 5 and summary["video_fps"] == pytest.approx(7.5)


def test_onnxruntime_static_graph_resizes_or_refuses(trained, tmp_path):
    ckpt, root = trained
    export_dir = tmp_path / "export"
    export(
        compose_config(
            "export",
            export_dir,
            [
                f"ckpt_path={ckpt}",
                "dynamic=false",
                "input_size=[64,96]",
                "evaluate=false",
                "parity_images=2",
            ],
        )
    )
    frames = tmp_path / "frames"
    frames.mkdir()
    for p in sorted((root / "val").glob("*.png"))[:3]:
        shutil.copy(p, frames / p.name)
    odd = np.array(Image.open(p).resize((80, 50)))
    Image.fromarray(odd).save(frames / "z_odd.jpg")
    model = export_dir / "model.onnx"
    args = [f"ckpt_path={ckpt}", f"source={frames}", "runtime=onnxruntime", f"model_path={model}"]
    run("predict.py", *args, f"out_dir={tmp_path / 'ort'}", f"hydra.run.dir={tmp_path / 'r1'}")
    expected = evaluate_argmax(ckpt, root)
    agree = [
        (np.array(Image.open(tmp_path / "ort" / "masks" / f"{s}.png")) == expected[s]).mean()
        for s in (p.stem for p in sorted(frames.glob("*.png")))
    ]
    assert min(agree) >= 0.999
    odd_mask = Image.open(tmp_path / "ort" / "masks" / "z_odd.png")
    assert odd_mask.size == (80, 50)  # resized to the graph's 64x96 and back
    summary = json.loads((tmp_path / "ort" / "predict.json").read_text())
    assert summary["resized_to_model"] == [64, 96] and summary["runtime"] == "onnxruntime"

    refuse = tmp_path / "refuse"
    with pytest.raises(ConfigError, match=r"takes only 64x96 \(H x W\) images; z_odd is 50x80"):
        predict(_cfg(refuse, ckpt, frames, *args[2:], "static_size=refuse", "batch_size=1"))
    # The frames done before the refusal are kept, and predict.json says it stopped.
    assert len(list((refuse / "masks").glob("*.png"))) == 3
    assert json.loads((refuse / "predict.json").read_text())["status"] == "stopped"


def _cfg(tmp_path, ckpt, source, *extra):
    return compose_config(
        "predict", tmp_path, [f"ckpt_path={ckpt}", f"source={source}", "progress=false", *extra]
    )


def test_bad_files_in_a_folder_are_skipped_and_the_rest_done(trained, tmp_path):
    ckpt, root = trained
    frames = tmp_path / "frames"
    frames.mkdir()
    names = sorted(p.name for p in (root / "val").glob("*.png"))
    for name in names[:2]:
        shutil.copy(root / "val" / name, frames / name)
    (frames / f"{names[0][:-4]}_b.png").write_bytes(b"\x89PNG broken")
    (frames / "readme.txt").write_text("not a frame")
    shutil.copy(root / "val" / names[2], frames / "z_last.png")
    summary = predict(_cfg(tmp_path, ckpt, frames, "batch_size=8"))
    assert summary["frames"] == 3 and summary["status"] == "ok"
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == {f"{names[0][:-4]}_b.png", "readme.txt"}
    assert "cannot be read" in reasons[f"{names[0][:-4]}_b.png"]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == sorted(
        [*names[:2], "z_last.png"]
    )


def test_a_failure_mid_folder_keeps_the_frames_done(trained, tmp_path, monkeypatch):
    ckpt, root = trained
    from segbench.deploy import predict as module

    calls = []
    real = module.make_predictor

    def failing(*args, **kwargs):
        predictor = real(*args, **kwargs)

        def run_batch(images):
            calls.append(len(images))
            if len(calls) > 2:  # warm-up + first batch pass, the second batch fails
                raise RuntimeError("device lost")
            return predictor(images)

        return run_batch

    monkeypatch.setattr(module, "make_predictor", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        predict(_cfg(tmp_path, ckpt, root / "val", "batch_size=2"))
    assert len(list((tmp_path / "masks").glob("*.png"))) == 2
    summary = json.loads((tmp_path / "predict.json").read_text())
    assert summary["status"] == "stopped" and summary["frames"] == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d.mkdir(), "no files in the folder"),
        (lambda d: (d.mkdir(), (d / "a.txt").write_text("x")), "no image among the 1 files"),
        (lambda d: d.with_suffix(".mp4").write_bytes(b"not a video"), "cannot be read as a video"),
        (lambda d: d.with_suffix(".csv").write_text("1,2"), "neither an image"),
    ],
)
def test_unusable_sources_fail_at_once_naming_them(tmp_path, make, message):
    target = tmp_path / "src"
    make(target)
    source = next(p for p in tmp_path.iterdir() if p.name.startswith("src"))
    with pytest.raises(DataError, match=message):
        open_source(str(source))
    with pytest.raises(DataError, match="the pattern matches no file"):
        open_source(str(tmp_path / "nothing" / "*.png"))
    with pytest.raises(DataError, match="source not found"):
        open_source(str(tmp_path / "missing.png"))


def test_unknown_static_size_policy(trained, tmp_path):
    with pytest.raises(ConfigError, match="static_size='crop'"):
        predict(_cfg(tmp_path, trained[0], tmp_path, "static_size=crop"))


def test_batches_group_consecutive_frames_of_one_size():
    sizes = [(4, 4), (4, 4), (4, 4), (2, 2), (4, 4), (4, 4)]
    frames = [Frame(str(i), np.zeros((*s, 3), np.uint8)) for i, s in enumerate(sizes)]
    assert [[f.name for f in b] for b in batches(frames, 2)] == [
        ["0", "1"],
        ["2"],
        ["3"],
        ["4", "5"],
    ]


def test_output_names_stay_unique():
    paths = [Path("a/x.png"), Path("a/x.jpg"), Path("b/x.png"), Path("b/y.png")]
    assert output_names(paths) == ["a/x_png", "a/x_jpg", "b/x", "b/y"]
    assert output_names([Path("f/1.png"), Path("f/2.png")]) == ["1", "2"]


def test_legend_wraps_and_shows_every_colour():
    colors = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    wide, narrow = legend(["a", "b", "c"], colors, 400), legend(["a", "b", "c"], colors, 40)
    assert wide.shape[1] == 400 and narrow.shape[1] == 40 and narrow.shape[0] > wide.shape[0]
    for color in colors:
        assert (wide == color).all(-1).any()

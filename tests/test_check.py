"""The dataset checker finds every kind of planted damage, naming the file."""

import numpy as np
import pytest
from PIL import Image
from tests.layouts import write_camvid

from segbench.data.check import main

PLANTED = {
    "missing_mask": "train/0001TP_000000.png",
    "orphan_mask": "trainannot/0001TP_000001.png",
    "duplicate_name": "train/0001TP_000002.png",  # beside 0001TP_000002.jpg
    "empty_file": "train/0001TP_000003.png",
    "truncated": "train/0001TP_000004.png",
    "unreadable": "trainannot/0001TP_000005.png",
    "mask_mode": "valannot/0001TP_000000.png",
    "size_mismatch": "valannot/0001TP_000001.png",
    "unknown_ids": "valannot/0001TP_000002.png",
}


def _damage(root):
    (root / "trainannot" / "0001TP_000000.png").unlink()
    (root / "train" / "0001TP_000001.png").unlink()
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(root / "train" / "0001TP_000002.jpg")
    (root / "train" / "0001TP_000003.png").write_bytes(b"")
    png = (root / "train" / "0001TP_000004.png").read_bytes()
    (root / "train" / "0001TP_000004.png").write_bytes(png[: len(png) // 2])
    (root / "trainannot" / "0001TP_000005.png").write_bytes(b"not a png at all")
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(root / "valannot" / "0001TP_000000.png")
    Image.fromarray(np.zeros((32, 96), np.uint8)).save(root / "valannot" / "0001TP_000001.png")
    Image.fromarray(np.full((64, 96), 40, np.uint8)).save(root / "valannot" / "0001TP_000002.png")


def test_checker_finds_every_planted_problem(tmp_path, capsys):
    root = write_camvid(tmp_path / "camvid", n=8)
    _damage(root)
    code = main(["data=camvid", f"data.root={root}"])
    out = capsys.readouterr().out
    assert code == 1
    for kind, path in PLANTED.items():
        assert f"{kind}: {root / path}" in out, f"{kind} not reported for {path}:\n{out}"
    assert f"{len(PLANTED)} problem(s)" in out
    # The counts and histogram still cover the good files.
    assert "[train] 6 samples" in out and "[test] 8 samples" in out
    assert "label histogram" in out and "(ignored)" in out and "RGB mean" in out


def test_checker_passes_a_clean_dataset_and_refuses_bad_options(tmp_path, capsys):
    root = write_camvid(tmp_path / "camvid", splits=("train", "val"))
    assert main(["data=camvid", f"data.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "[test] not available" in out
    assert main(["data=camvd", f"data.root={root}"]) == 2
    assert "allowed: camvid" in capsys.readouterr().err


@pytest.mark.slow
def test_training_skips_damaged_files_when_asked(train_cfg, tmp_path, caplog):
    from segbench.errors import DataError
    from segbench.training.train import train

    root = write_camvid(tmp_path / "camvid", n=8)
    _damage(root)
    args = [
        "data=camvid",
        f"data.root={root}",
        "debug=fdr",
        "data.batch_size=2",
        "backbone.width=0.35",
        "model.decoder_channels=[16,16,16,16,16]",
    ]
    with pytest.raises(DataError, match="on_bad_sample=skip"):
        train(train_cfg(*args))
    train(train_cfg(*args, "data.on_bad_sample=skip"))
    assert "skipping" in caplog.text and "0001TP_000000.png" in caplog.text

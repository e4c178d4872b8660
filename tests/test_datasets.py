"""Scanning dataset folders: layouts, bad files, near-duplicate groups, fingerprints, summaries."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.data.layouts import DatasetLayoutError
from pipeline.data.scan import scan, summarise

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _xray(seed: int, size: int = 96) -> np.ndarray:
    """A distinct smooth uint8 image per seed (blurred noise), enough to tell images apart."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random((size, size)), (0, 0), sigmaX=size / 12)
    return np.rint(255 * (field - field.min()) / (field.max() - field.min())).astype(np.uint8)


def _write(path: Path, img: np.ndarray, **save_args: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **save_args)
    return path


def _class_folders(
    root: Path, normal: str = "Normal", tb: str = "Tuberculosis", n_normal: int = 3, n_tb: int = 2
) -> Path:
    for i in range(n_normal):
        _write(root / normal / f"n{i}.png", _xray(i))
    for i in range(n_tb):
        _write(root / tb / f"t{i}.png", _xray(100 + i))
    return root


def _names(paths: list[str]) -> list[str]:
    return [Path(p).name for p in paths]


def test_tb_database_layout_ignores_masks_and_manifest(tmp_path, capsys):
    root = _class_folders(tmp_path / "data")
    # What our phantom generator writes beside the class folders: lesion masks and a manifest.
    _write(root / "masks" / "t0.png", np.zeros((96, 96), dtype=np.uint8))
    (root / "manifest.csv").write_text("file,label\n")
    index = scan(root, progress=True)
    assert index.layout == "tb_chest_xray_db"
    assert index.counts() == {"normal": 3, "tb": 2}
    assert _names(index.paths) == ["n0.png", "n1.png", "n2.png", "t0.png", "t1.png"]
    assert list(index.labels) == [0, 0, 0, 1, 1]
    assert all(Path(p).is_absolute() and "masks" not in p for p in index.paths)
    assert index.bad_files == ()
    assert "scan data" in capsys.readouterr().err  # the progress bar


def test_tb_database_layout_one_level_down(tmp_path):
    root = tmp_path / "download"
    _class_folders(root / "TB_Chest_Radiography_Database")
    (root / "README.md").write_text("TB Chest X-ray Database\n")
    index = scan(root)
    assert index.layout == "tb_chest_xray_db"
    assert index.counts() == {"normal": 3, "tb": 2}


def test_healthy_and_tb_folders_map_to_0_and_1_whatever_the_case(tmp_path):
    root = tmp_path / "external"
    _write(root / "Healthy" / "h0.jpg", _xray(1), quality=90)
    _write(root / "TB" / "tb0.jpg", _xray(2), quality=90)
    _write(root / "TB" / "tb1.jpg", _xray(3), quality=90)
    index = scan(root)
    assert index.layout == "class_folders"
    assert dict(zip(_names(index.paths), index.labels.tolist(), strict=True)) == {
        "h0.jpg": 0,
        "tb0.jpg": 1,
        "tb1.jpg": 1,
    }


def test_unknown_folder_names_need_a_label_map(tmp_path):
    root = _class_folders(tmp_path / "data", normal="clear", tb="sick")
    with pytest.raises(DatasetLayoutError) as info:
        scan(root)
    message = str(info.value)
    for expected in ("clear/", "sick/", "label_map", "Normal/ and Tuberculosis/"):
        assert expected in message
    index = scan(root, label_map={"clear": 0, "sick": 1})
    assert index.counts() == {"normal": 3, "tb": 2}
    assert index.layout == "label_map"


def test_label_map_naming_missing_folders_is_refused(tmp_path):
    root = _class_folders(tmp_path / "data", normal="clear", tb="sick")
    with pytest.raises(DatasetLayoutError, match=r"'clean'.*clear/, sick/"):
        scan(root, label_map={"clean": 0, "sick": 1})


def test_two_folders_for_one_class_is_ambiguous(tmp_path):
    root = _class_folders(tmp_path / "data", normal="normal", tb="tb")
    _write(root / "healthy" / "h.png", _xray(50))
    with pytest.raises(DatasetLayoutError, match="more than one folder per class"):
        scan(root)


def test_a_broken_link_is_listed_as_a_bad_file_and_the_folder_still_scans(tmp_path, capsys):
    from pipeline.cli import main

    root = _class_folders(tmp_path / "data")
    (root / "Normal" / "moved.png").symlink_to(tmp_path / "elsewhere" / "moved.png")
    # The whole scan stopped at the link: "[Errno 2] No such file or directory".
    assert main(["inspect", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "1 bad files (skipped)" in out
    assert "Normal/moved.png" in out
    assert "a broken link" in out
    index = scan(root)
    assert [Path(b.path).name for b in index.bad_files] == ["moved.png"]
    assert index.counts()["normal"] == len(list((root / "Normal").glob("n*.png")))


def test_a_lung_mask_set_is_named_as_such_not_read_as_labelled_x_rays(tmp_path):
    from pipeline.data.catalog import find_datasets

    # File names as in lung-masks: "_0" / "_1" endings that read as NLM labels.
    root = tmp_path / "lung-masks"
    names = ["montgomery-MCUCXR_0001_0", "montgomery-MCUCXR_0104_1", "jsrt-JPCLN001"]
    for i, name in enumerate(names):
        _write(root / "images" / f"{name}.png", _xray(i))
        _write(root / "masks" / f"{name}.png", (_xray(i) > 128).astype(np.uint8) * 255)
    (root / "manifest.csv").write_text(
        "image,mask,source\n"
        + "".join(f"images/{n}.png,masks/{n}.png,{n.split('-')[0]}\n" for n in names)
    )
    for folder in (root, root / "images", root / "masks"):
        with pytest.raises(DatasetLayoutError, match="set of X-rays with lung masks") as err:
            scan(folder)
        assert "python -m pipeline lungs train --data" in str(err.value)
    # The Dataset and Launch pages offer only folders that scan as normal / TB X-rays.
    assert find_datasets([tmp_path]) == []


def test_nlm_names_give_the_labels(tmp_path):
    # Montgomery layout: images in CXR_png/, doctors' notes beside them.
    root = tmp_path / "MontgomerySet"
    _write(root / "CXR_png" / "MCUCXR_0001_0.png", _xray(1))
    _write(root / "CXR_png" / "MCUCXR_0002_0.png", _xray(2))
    _write(root / "CXR_png" / "MCUCXR_0104_1.png", _xray(3))
    (root / "ClinicalReadings").mkdir()
    (root / "ClinicalReadings" / "MCUCXR_0001_0.txt").write_text("normal\n")
    index = scan(root)
    assert index.layout == "nlm_names"
    assert index.labels.tolist() == [0, 0, 1]


def test_bad_files_are_listed_with_reasons_and_good_ones_kept(tmp_path):
    root = _class_folders(tmp_path / "data")
    normal = root / "Normal"
    (normal / "empty.png").write_bytes(b"")
    full = (normal / "n0.png").read_bytes()
    noise = np.random.default_rng(9).integers(0, 256, (96, 96), dtype=np.uint8)
    half = _write(tmp_path / "noise.png", noise).read_bytes()
    (normal / "truncated.png").write_bytes(half[: len(half) // 2])
    (normal / "notes.png").write_text("these are not pixels\n")
    (normal / ".DS_Store").write_bytes(full)  # hidden: not even reported
    deep = _xray(20).astype(np.uint16) * 16  # 12-bit values in a 16-bit PNG
    _write(normal / "deep.png", deep)
    rgba = np.dstack([_xray(21)] * 3 + [np.full((96, 96), 255, dtype=np.uint8)])
    _write(normal / "alpha.png", rgba)
    _write(normal / "more" / "n5.png", _xray(22))  # one level too deep to be read

    index = scan(root)
    reasons = {Path(b.path).name: b.reason for b in index.bad_files}
    assert set(reasons) == {"empty.png", "notes.png", "truncated.png", "more"}
    assert "empty (0 bytes)" in reasons["empty.png"]
    assert "cannot identify image file" in reasons["notes.png"]
    assert "truncated" in reasons["truncated.png"]
    assert "folder inside a class folder" in reasons["more"]
    assert {"deep.png", "alpha.png"} <= set(_names(index.paths))
    modes = {Path(r.path).name: r.mode for r in index.records}
    assert (modes["deep.png"], modes["alpha.png"], modes["n0.png"]) == ("I;16", "RGBA", "L")
    assert index.counts() == {"normal": 5, "tb": 2}
    assert summarise(index)["n_bad_files"] == 4


def test_a_class_folder_with_nothing_usable_is_refused(tmp_path):
    root = tmp_path / "data"
    _write(root / "Normal" / "n0.png", _xray(0))
    (root / "Tuberculosis").mkdir()
    with pytest.raises(DatasetLayoutError, match="Tuberculosis is empty"):
        scan(root)
    (root / "Tuberculosis" / "t0.png").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match="no usable tb image"):
        scan(root)


def test_resized_reencoded_copy_shares_a_group_and_different_images_do_not(tmp_path):
    root = _class_folders(tmp_path / "data", n_normal=2, n_tb=2)
    original = _xray(0, size=256)
    _write(root / "Normal" / "n0.png", original)
    copy = cv2.resize(original, (200, 200), interpolation=cv2.INTER_AREA)
    _write(root / "Normal" / "n0_copy.jpg", copy, quality=80)

    index = scan(root)
    group = {Path(r.path).name: r.group for r in index.records}
    sha1 = {Path(r.path).name: r.sha1 for r in index.records}
    assert group["n0.png"] == group["n0_copy.jpg"] == sha1["n0.png"]  # id: the first record
    assert len({group["n0.png"], group["n1.png"], group["t0.png"], group["t1.png"]}) == 4
    summary = summarise(index)
    assert (summary["n_duplicate_groups"], summary["n_images_in_duplicate_groups"]) == (1, 2)
    assert summary["mixed_label_groups"] == []

    # The same radiograph filed under both classes is a label error the summary must show.
    shutil.copy(root / "Normal" / "n0.png", root / "Tuberculosis" / "t9.png")
    assert summarise(scan(root))["mixed_label_groups"] == [sha1["n0.png"]]


def test_fingerprint_follows_the_data_not_the_location(tmp_path):
    root = _class_folders(tmp_path / "here")
    first = scan(root)
    moved = scan(shutil.copytree(root, tmp_path / "elsewhere" / "copy"))
    assert moved.root != first.root
    assert moved.fingerprint == first.fingerprint

    img = _xray(0)
    img[5, 5] ^= 1  # one pixel, one grey level
    _write(root / "Normal" / "n0.png", img)
    assert scan(root).fingerprint != first.fingerprint


def test_summary_and_frame_describe_the_dataset(tmp_path):
    root = _class_folders(tmp_path / "data", n_normal=3, n_tb=2)
    _write(root / "Normal" / "wide.png", _xray(7)[:64])
    index = scan(root)
    summary = summarise(index)
    assert summary["counts"] == {"normal": 4, "tb": 2}
    assert summary["imbalance_ratio"] == pytest.approx(2.0)
    assert summary["sizes"] == [[96, 96, 5], [96, 64, 1]]
    assert summary["modes"] == {"L": 6}
    frame = index.to_frame()
    assert list(frame.columns) == [
        "path",
        "label",
        "group",
        "sha1",
        "phash",
        "width",
        "height",
        "mode",
    ]
    assert frame["label"].tolist() == index.labels.tolist()


def _real(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (see ../shared/data/README.md)")
    return path


def test_real_tb_cxr_keeps_every_manifest_group_together():
    root = _real("tb-cxr")
    index = scan(root)
    assert index.layout == "tb_chest_xray_db"
    assert index.counts() == {"normal": 522, "tb": 407}
    assert index.bad_files == ()
    ours = {Path(r.path).relative_to(root).as_posix(): r.group for r in index.records}
    manifest = pd.read_csv(root / "manifest.csv").dropna(subset=["near_dup_group"])
    for group, files in manifest.groupby("near_dup_group")["file"]:
        assert len({ours[f] for f in files}) == 1, f"manifest group {group} was split"
    assert summarise(index)["mixed_label_groups"] == []


def test_real_nlm_224_maps_healthy_to_0_and_tb_to_1():
    root = _real("nlm-224")
    index = scan(root)
    assert index.counts() == {"normal": 201, "tb": 201}
    for path, label in zip(index.paths, index.labels.tolist(), strict=True):
        assert label == (0 if Path(path).parent.name == "healthy" else 1)


def test_a_folder_holding_several_datasets_is_refused_with_the_choices(tmp_path):
    for name, classes in (("first", ("Normal", "Tuberculosis")), ("second", ("healthy", "tb"))):
        for cls in classes:
            folder = tmp_path / name / cls
            folder.mkdir(parents=True)
            cv2.imwrite(str(folder / "a.png"), np.full((16, 16), 80, np.uint8))
    with pytest.raises(DatasetLayoutError, match="several datasets") as info:
        scan(tmp_path)
    assert "first/" in str(info.value)
    assert "second/" in str(info.value)

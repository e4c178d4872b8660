"""The embedded phantom dataset: deterministic, balanced as asked, lesions where the masks say."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.data import scan, synth


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / synth.MANIFEST).open(newline="") as f:
        return list(csv.DictReader(f))


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantoms") / "set"
    synth.generate(out, 12, size=64, seed=3)
    return out


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path, small_set):
    synth.generate(tmp_path / "again", 12, size=64, seed=3)
    synth.generate(tmp_path / "other", 12, size=64, seed=4)
    again, other = _files(tmp_path / "again"), _files(tmp_path / "other")
    assert again == _files(small_set)
    assert again.keys() == other.keys()
    assert all(again[name] != other[name] for name in again if name.endswith(".png"))


@pytest.mark.parametrize(("n", "tb_ratio", "n_normal", "n_tb"), [(12, 5.0, 10, 2), (8, 1.0, 4, 4)])
def test_class_counts_follow_tb_ratio(tmp_path, n, tb_ratio, n_normal, n_tb):
    summary = synth.generate(tmp_path, n, tb_ratio=tb_ratio, size=64)
    assert (summary.n_normal, summary.n_tb) == (n_normal, n_tb)
    assert len(list((tmp_path / "Normal").glob("*.png"))) == n_normal
    assert len(list((tmp_path / "Tuberculosis").glob("*.png"))) == n_tb


def test_images_are_8bit_gray_of_the_requested_size(small_set):
    for row in _manifest(small_set):
        image = _read(small_set / row["file"])
        assert image.shape == (64, 64)
        assert image.dtype == np.uint8
        # Chest-like, not blank: dark air around a brighter body.
        assert image.min() < 60
        assert image.max() > 180


def test_each_tb_image_has_a_binary_mask_and_normal_images_have_none(small_set):
    rows = _manifest(small_set)
    for row in rows:
        if row["label"] == "normal":
            assert row["mask"] == ""
            assert row["lesions"] == ""
            continue
        mask = _read(small_set / row["mask"])
        assert mask.shape == (64, 64)
        assert set(np.unique(mask)) == {0, 255}
        assert float(row["lesion_fraction"]) == pytest.approx((mask > 0).mean(), abs=1e-6)
        assert set(row["lesions"].split(";")) <= set(synth.LESION_KINDS)
    masks = {p.name for p in (small_set / "masks").iterdir()}
    assert masks == {Path(r["file"]).name for r in rows if r["label"] == "tb"}


def test_the_dataset_scanner_reads_the_set_and_skips_the_masks(small_set):
    index = scan.scan(small_set)
    assert index.counts() == {"normal": 10, "tb": 2}
    assert not index.bad_files
    assert not any("masks" in p for p in index.paths)
    # Phantoms are different patients: none may be merged as a near-duplicate of another.
    assert len(set(index.groups)) == len(index.records)


def test_lesions_lie_in_the_lungs_and_render_is_shaped_as_documented():
    for seed in range(20):
        phantom = synth.render_phantom(np.random.default_rng(seed), 128, tb=True)
        lesion = phantom.lesion_mask > 0
        assert 1 <= len(phantom.lesions) <= 3
        assert lesion.any()
        assert (lesion & phantom.lung_mask).sum() >= 0.99 * lesion.sum()
        image, mask = synth.render(np.random.default_rng(seed), 128, tb=False)
        assert image.shape == (128, 128)
        assert image.dtype == np.uint8
        assert mask is None


def test_lesions_are_brighter_than_the_lung_around_them():
    # What a reader sees: the opacity is whiter than the lung next to it. The faintest lesions
    # are meant to be hard, so this holds on average and for most images, not for every one.
    contrasts = []
    for seed in range(30):
        phantom = synth.render_phantom(np.random.default_rng(seed), 128, tb=True)
        lesion = phantom.lesion_mask > 0
        grown = cv2.dilate(lesion.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        ring = grown & ~lesion & phantom.lung_mask
        contrasts.append(phantom.image[lesion].mean() - phantom.image[ring].mean())
    contrasts = np.array(contrasts)
    assert contrasts.mean() > 20
    assert (contrasts > 0).mean() >= 0.85
    assert contrasts.min() < 40, "some lesions should be subtle"


@pytest.mark.parametrize("size", [64, 256])
def test_a_tb_image_differs_from_its_normal_twin_only_at_the_lesions(size):
    # The same generator state renders the same patient with and without lesions. Away from the
    # mask (beyond blur and anti-aliasing) the two images may differ by rounding only, so no
    # border, text or grey-level shift tells the classes apart.
    margin = int(0.03 * size) + 2
    for seed in range(8):
        tb, mask = synth.render(np.random.default_rng(seed), size, tb=True)
        normal, _ = synth.render(np.random.default_rng(seed), size, tb=False)
        diff = np.abs(tb.astype(int) - normal)
        near = cv2.dilate(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
        assert diff[~near].max(initial=0) <= 1
        assert diff[mask > 0].max() > 20


def test_regenerating_replaces_a_previous_phantom_set(tmp_path):
    synth.generate(tmp_path, 12, size=64)
    synth.generate(tmp_path, 6, size=64)
    assert len(_manifest(tmp_path)) == 6
    pngs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert pngs == [
        "Normal/normal-0001.png",
        "Normal/normal-0002.png",
        "Normal/normal-0003.png",
        "Normal/normal-0004.png",
        "Normal/normal-0005.png",
        "Tuberculosis/tb-0001.png",
        "lungs/normal-0001.png",
        "lungs/normal-0002.png",
        "lungs/normal-0003.png",
        "lungs/normal-0004.png",
        "lungs/normal-0005.png",
        "lungs/tb-0001.png",
        "masks/tb-0001.png",
    ]


@pytest.mark.parametrize(
    "layout",
    [
        {"notes.txt": "mine"},
        {"manifest.csv": "file,label\n", "Normal/Normal-1.png": ""},
        {"manifest.csv": ",".join(synth.MANIFEST_COLUMNS) + "\n", "Normal/Normal-1.png": ""},
    ],
    ids=["unrelated-file", "real-dataset-manifest", "foreign-image-name"],
)
def test_a_foreign_non_empty_folder_is_refused_and_left_alone(tmp_path, layout):
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(FileExistsError, match="not a phantom set"):
        synth.generate(tmp_path, 6, size=64)
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()} == set(
        layout
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 1}, r"n must be at least 2"),
        ({"size": 63}, r"size must be between 64 and 2048 pixels, got 63"),
        ({"size": 2049}, r"size must be between 64 and 2048 pixels, got 2049"),
        ({"tb_ratio": 0.0}, r"tb_ratio .* must be > 0, got 0.0"),
        ({"tb_ratio": -2.0}, r"tb_ratio .* must be > 0, got -2.0"),
    ],
)
def test_bad_arguments_are_refused_by_name_and_range(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synth.generate(tmp_path / "out", **({"n": 6} | kwargs))
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_size_out_of_range():
    with pytest.raises(ValueError, match="size must be between 64 and 2048"):
        synth.render(np.random.default_rng(0), 32, tb=True)


def test_progress_shows_a_bar(tmp_path, capsys):
    synth.generate(tmp_path, 6, size=64, progress=True)
    assert "phantoms" in capsys.readouterr().err


@pytest.mark.slow
def test_the_baseline_cnn_learns_the_phantoms(tmp_path):
    """The embedded dataset is learnable: the default demo run ranks TB above normal."""
    from db import RunStore
    from pipeline.config import preset
    from pipeline.training import train

    synth.generate(tmp_path / "phantoms", 600, seed=0)
    run = train.run(preset("baseline", **{"data.path": str(tmp_path / "phantoms")}), RunStore())
    assert run.auc >= 0.75, f"test AUC {run.auc:.3f} on 600 phantoms"

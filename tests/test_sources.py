"""Several training folders: each image keeps its source, splits stratify by source × class,
near-duplicates are grouped across sources, and one folder behaves exactly as before."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import preset
from pipeline.data import index_cache, synth
from pipeline.data.splits import stratified_group_split
from pipeline.preprocessing import cache, sources


def two_sources(tmp_path: Path) -> tuple[Path, Path]:
    """Phantoms in two layouts: a/ as the TB database (60 images, 5 : 1) and b/ with
    healthy/ and tb/ folders (40 images, 1 : 1)."""
    a, b = tmp_path / "a", tmp_path / "b"
    synth.generate(a, 60, size=64, seed=1)
    synth.generate(b, 40, tb_ratio=1.0, size=64, seed=2)
    (b / "Normal").rename(b / "healthy")
    (b / "Tuberculosis").rename(b / "tb")
    return a, b


def test_a_two_source_index_keeps_each_images_source(tmp_path):
    a, b = two_sources(tmp_path)
    index = sources.load_index([str(a), str(b)])
    alone = [index_cache.load_index(a), index_cache.load_index(b)]
    assert index.roots == (str(a.resolve()), str(b.resolve()))
    assert index.layout == "tb_chest_xray_db + class_folders"
    assert len(index.records) == 100
    assert np.bincount(index.sources).tolist() == [60, 40]
    for record, source in zip(index.records, index.sources, strict=True):
        assert Path(record.path).is_relative_to(index.roots[source])
    # Saved paths are relative to the common parent, so they name the source folder.
    assert {os.path.relpath(p, index.root).split(os.sep)[0] for p in index.paths} == {"a", "b"}
    assert index.fingerprint not in {part.fingerprint for part in alone}
    assert sources.source_counts(index) == [
        {"source": str(a.resolve()), "name": "a", "normal": 50, "tb": 10},
        {"source": str(b.resolve()), "name": "b", "normal": 20, "tb": 20},
    ]


def test_a_two_source_split_holds_each_source_and_class_in_proportion(tmp_path):
    a, b = two_sources(tmp_path)
    index = sources.load_index([str(a), str(b)])
    split = stratified_group_split(
        index.labels,
        index.groups,
        val_fraction=0.2,
        test_fraction=0.3,
        seed=0,
        strata=index.sources,
    )
    src, labels = index.sources, index.labels
    for part, share in (("train", 0.5), ("val", 0.2), ("test", 0.3)):
        idx = split.part(part)
        for s, c, n in ((0, 0, 50), (0, 1, 10), (1, 0, 20), (1, 1, 20)):
            held = int(((src[idx] == s) & (labels[idx] == c)).sum())
            assert abs(held - share * n) <= 1, (part, s, c, held)


def test_a_radiograph_in_two_sources_stays_in_one_split(tmp_path):
    a, b = two_sources(tmp_path)
    original = a / "Normal" / "normal-0003.png"
    # The same radiograph re-shared by the second source: resized and re-encoded as JPEG.
    image = cv2.imread(str(original), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(b / "healthy" / "shared.jpg"), cv2.resize(image, (96, 96)))
    index = sources.load_index([str(a), str(b)])
    group = {os.path.relpath(r.path, index.root): r.group for r in index.records}
    shared = group["b/healthy/shared.jpg"]
    assert group["a/Normal/normal-0003.png"] == shared
    # Only this pair: no other image of either folder joined the group.
    assert list(group.values()).count(shared) == 2
    for seed in range(10):
        split = stratified_group_split(
            index.labels,
            index.groups,
            val_fraction=0.2,
            test_fraction=0.3,
            seed=seed,
            strata=index.sources,
        )
        parts = {
            name
            for name in ("train", "val", "test")
            for i in split.part(name)
            if index.records[i].group == shared
        }
        assert len(parts) == 1


def test_arrays_of_two_sources_are_the_folders_arrays_stacked(tmp_path):
    a, b = two_sources(tmp_path)
    data = preset("smoke", **{"data.path": [str(a), str(b)]}).data
    index = sources.load_index(data.sources)
    stacked = sources.cached_arrays(index, data)
    assert stacked.shape == (100, 64, 64)
    assert isinstance(stacked, np.memmap)
    parts = [cache.cached_arrays(index_cache.load_index(f), data) for f in (a, b)]
    assert np.array_equal(stacked, np.concatenate(parts))


def test_one_folder_gives_its_own_index_and_arrays(tmp_path):
    a, _ = two_sources(tmp_path)
    data = preset("smoke", **{"data.path": str(a)}).data
    index = sources.load_index(data.sources)
    assert index == index_cache.load_index(a)
    assert index.sources.tolist() == [0] * 60
    assert np.array_equal(sources.cached_arrays(index, data), cache.cached_arrays(index, data))


def test_the_same_folder_twice_is_refused(tmp_path):
    a, _ = two_sources(tmp_path)
    index = index_cache.load_index(a)
    with pytest.raises(ValueError, match="listed twice"):
        sources.combine([index, index])


def test_a_smoke_run_trains_on_two_sources_with_balanced_weights(tmp_path, capsys, monkeypatch):
    import csv

    from db import RunStore
    from pipeline.cli import main
    from pipeline.training import inputs, train

    a, b = two_sources(tmp_path)
    # Through the CLI's --data, as a user would give two folders.
    assert main(["train", "--preset", "smoke", "--data", str(a), str(b), "--name", "two"]) == 0
    capsys.readouterr()
    (run,) = RunStore().list_runs()
    assert run.status == "succeeded"
    assert run.config["data"]["path"] == [str(a.resolve()), str(b.resolve())]
    folder = Path(run.artifacts_dir)
    split = json.loads((folder / "split.json").read_text())
    # Paths are relative to the common parent: each names its source, and both are in test.
    assert {p.split("/")[0] for p in split["test"]} == {"a", "b"}
    assert split["data_fingerprint"] == run.data_fingerprint
    with (folder / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert all((tmp_path / r["path"]).is_file() for r in rows)

    seen = []
    make_dataset = inputs.make_dataset

    def spy(arrays, labels, indices, **kwargs):
        if kwargs.get("training"):
            seen.append((indices, kwargs.get("weights")))
        return make_dataset(arrays, labels, indices, **kwargs)

    monkeypatch.setattr(inputs, "make_dataset", spy)
    cfg = preset(
        "smoke", **{"data.path": [str(a), str(b)], "train.balance_sources": True, "seed": 1}
    )
    assert train.run(cfg, RunStore()).status == "succeeded"
    ((train_idx, weights),) = seen
    source = sources.load_index(cfg.data.sources).sources[train_idx]
    # About 42 training images of a/ and 28 of b/, and each source weighs the same in the loss.
    assert weights[train_idx][source == 0].sum() == pytest.approx(
        weights[train_idx][source == 1].sum()
    )


def test_inspect_counts_each_source_and_class_and_the_radiographs_they_share(tmp_path, capsys):
    import shutil

    from pipeline.cli import main

    a, b = two_sources(tmp_path)
    shutil.copy(a / "Tuberculosis" / "tb-0002.png", b / "tb" / "copy.png")
    assert main(["inspect", "--data", str(a), str(b), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["normal"], s["tb"]) for s in out["sources"]] == [
        ("a", 50, 10),
        ("b", 20, 21),
    ]
    assert len(out["cross_source_duplicate_groups"]) == 1


def test_a_leave_one_source_out_run_is_evaluated_on_the_folder_it_never_saw(tmp_path):
    from db import RunStore
    from pipeline.experiments.plan import expand
    from pipeline.experiments.spec import SuiteSpec
    from pipeline.training import train

    a, b = two_sources(tmp_path)
    c = tmp_path / "c"
    synth.generate(c, 30, tb_ratio=2.0, size=64, seed=3)
    spec = SuiteSpec(name="loso", question="?", mode="leave_one_source_out")
    folders = [str(a.resolve()), str(b.resolve()), str(c.resolve())]
    plan = expand(spec, data_path=folders, overrides={"data.image_size": 64, "train.epochs": 1})
    first = plan[0].config  # a/ held out: trained on b/ and c/
    assert first.data.external == (folders[0],)
    store = RunStore()
    run = train.run(first, store)
    (ev,) = store.external_evals(run.id)
    assert ev.dataset_path == folders[0]
    assert ev.n_images == 60
    split = json.loads((Path(run.artifacts_dir) / "split.json").read_text())
    assert {p.split("/")[0] for p in split["train"]} == {"b", "c"}

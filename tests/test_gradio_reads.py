"""What the public app keeps of an upload it has read (gradio_app.reads): the same file is not
decoded again, a changed file is, and nothing is kept of a file once it is deleted."""

from __future__ import annotations

import os

import numpy as np

from gradio_app.reads import PREVIEW_SIDE, Read, Reads, preview
from pipeline.serving.assess import Assessment, Decoding

LIMITS = Decoding(max_bytes=2**20)


def _read(reason: str) -> Read:
    return Read(Assessment("Cannot assess", "refused", reason), None)


def test_the_same_file_is_answered_from_its_read_and_a_changed_one_is_not(tmp_path):
    reads = Reads()
    upload = tmp_path / "chest.png"
    upload.write_bytes(b"first")
    reads.put(upload, LIMITS, _read("first"))
    assert reads.get(upload, LIMITS).assessment.reason == "first"
    assert reads.get(upload, Decoding(max_bytes=10)) is None  # other limits: read it again
    upload.write_bytes(b"second, longer")
    os.utime(upload, ns=(1, 1))
    assert reads.get(upload, LIMITS) is None


def test_nothing_is_kept_of_a_deleted_upload_and_only_the_newest_are_kept(tmp_path):
    reads = Reads(capacity=2)
    files = [tmp_path / f"{i}.png" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(b"x" * (i + 1))
        reads.put(f, LIMITS, _read(str(i)))
    assert len(reads) == 2
    assert reads.get(files[0], LIMITS) is None  # the oldest went
    files[1].unlink()
    assert reads.get(files[1], LIMITS) is None
    assert len(reads) == 1  # forgotten, not only hidden
    assert reads.get(files[2], LIMITS).assessment.reason == "2"


def test_the_preview_is_shrunk_to_its_box_and_a_small_image_kept_as_it_is():
    big = np.zeros((2000, 1000), dtype=np.uint8)
    assert preview(big).shape == (PREVIEW_SIDE, PREVIEW_SIDE // 2)
    small = np.zeros((300, 200), dtype=np.uint8)
    assert preview(small) is small

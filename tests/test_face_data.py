"""Procedural faces, tools/make_face_data.py end to end, and reading training images from .npz and folders."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from installation.training.data import TrainingError, batch_indices, describe_data, load_images
from installation.training.faces import procedural_faces

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "make_face_data.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_procedural_faces_are_deterministic_varied_and_well_formed():
    faces = procedural_faces(6, seed=3, resolution=32)
    assert faces.shape == (6, 32, 32, 3) and faces.dtype == np.uint8
    assert np.array_equal(faces, procedural_faces(6, seed=3, resolution=32))
    assert np.array_equal(faces[:4], procedural_faces(4, seed=3, resolution=32))  # face i depends on (seed, i)
    other = procedural_faces(6, seed=4, resolution=32)
    assert all(np.abs(a.astype(int) - b).mean() > 10 for a, b in zip(faces, other))
    assert len({face.tobytes() for face in faces}) == 6
    assert faces.std() > 30  # real pictures, not flat colour


def test_make_face_data_procedural_npz_and_jpeg_folder(tmp_path):
    out = tmp_path / "faces.npz"
    result = run_tool("--source", "procedural", "--count", 5, "--seed", 2, "--resolution", 32, "--out", out)
    assert result.returncode == 0, result.stderr
    with np.load(out) as archive:
        images = archive["images"]
    assert np.array_equal(images, procedural_faces(5, seed=2, resolution=32))
    notes = json.loads(out.with_suffix(".json").read_text())
    assert notes["source"] == "procedural" and notes["seed"] == 2 and notes["count"] == 5
    assert "licence" in notes

    folder = tmp_path / "faces"
    result = run_tool("--count", 5, "--seed", 2, "--resolution", 32, "--out", folder)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir())[:2] == ["000000.jpg", "000001.jpg"]
    jpegs = load_images(folder, 32)
    assert jpegs.shape == (5, 32, 32, 3)
    assert np.abs(jpegs.astype(int) - images).mean() < 4  # quality-95 JPEG of the same faces
    assert describe_data(folder, jpegs)["source"] == "procedural"

    again = run_tool("--count", 5, "--out", folder)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--count", "0"], "whole number >= 1"),
    (["--resolution", "48"], "power of two"),
    (["--source", "stylegan9"], "invalid choice"),
])
def test_make_face_data_bad_input_is_one_error_line(tmp_path, args, message):
    result = run_tool(*args, "--out", tmp_path / "x.npz")
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr


def test_load_images_area_downsamples_npz_and_crops_folders(tmp_path):
    big = procedural_faces(3, seed=0, resolution=32)
    np.savez_compressed(tmp_path / "big.npz", images=big)
    small = load_images(tmp_path / "big.npz", 16)
    expected = np.round(big.reshape(3, 16, 2, 16, 2, 3).astype(np.float32).mean(axis=(2, 4))).astype(np.uint8)
    assert np.array_equal(small, expected)

    folder = tmp_path / "photos"
    folder.mkdir()
    wide = np.zeros((16, 32, 3), np.uint8)
    wide[:, 8:24] = 200  # the centred square is bright, the cropped sides are black
    Image.fromarray(wide).save(folder / "a.png")
    Image.fromarray(big[0]).save(folder / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    images = load_images(folder, 16)
    assert images.shape == (2, 16, 16, 3) and images[0].min() == 200

    np.savez(tmp_path / "float.npz", images=np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(TrainingError, match="uint8"):
        load_images(tmp_path / "float.npz", 16)
    with pytest.raises(TrainingError, match="cannot be area-downsampled"):
        load_images(tmp_path / "big.npz", 64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no .png"):
        load_images(tmp_path / "empty", 16)


def test_data_order_is_a_pure_function_of_seed_and_position():
    first = batch_indices(10, seed=1, start=0, size=30)
    assert all(sorted(first[i:i + 10]) == list(range(10)) for i in (0, 10, 20))  # each epoch a permutation
    assert not np.array_equal(first[:10], first[10:20])
    assert np.array_equal(batch_indices(10, 1, 7, 9), first[7:16])  # resuming mid-epoch draws the same images
    assert not np.array_equal(batch_indices(10, 2, 0, 10), first[:10])

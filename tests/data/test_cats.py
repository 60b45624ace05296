"""CAT face alignment on synthetic photos with known landmarks, and the cat64 pipeline."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ganstudy.data.cats import aligned_face, crop_face, face_box, parse_landmarks
from ganstudy.data.prepare import load_split, prepare

# An upright face: eyes 60 px apart at y = 150, outer ear bases 120 px apart (the face side).
CENTER = np.array([200.0, 150.0])
UPRIGHT = np.array(
    [
        [170, 150],  # left eye
        [230, 150],  # right eye
        [200, 185],  # mouth
        [140, 120], [150, 80], [175, 110],  # left ear: outer base, tip, inner base
        [225, 110], [250, 80], [260, 120],  # right ear: inner base, tip, outer base
    ],
    dtype=float,
)  # fmt: skip
SIDE = 120.0
MARKERS = {0: (255, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255)}  # left eye, right eye, mouth


def _expected_in_crop(point: np.ndarray, size: int) -> np.ndarray:
    """Where an upright landmark lands in the size x size face: eyes' midpoint at (0.5, 0.4)."""
    rel = (point - CENTER) / SIDE + np.array([0.5, 0.4])
    return rel * size - 0.5  # pixel centres sit at index + 0.5


def _rotated(degrees: float, shift=(0.0, 0.0)) -> np.ndarray:
    phi = math.radians(degrees)
    rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    return (UPRIGHT - CENTER) @ rot.T + CENTER + np.asarray(shift)


def _photo(points: np.ndarray, size=(400, 300), radius=6) -> Image.Image:
    image = Image.new("RGB", size, (40, 40, 40))
    draw = ImageDraw.Draw(image)
    for index, colour in MARKERS.items():
        x, y = points[index]
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return image


def _marker_centre(face: np.ndarray, colour) -> np.ndarray:
    pixels = face.transpose(1, 2, 0).astype(int)
    mask = np.abs(pixels - np.array(colour)).sum(-1) < 150
    assert mask.sum() > 10, f"marker {colour} not found in the crop"
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _cat_text(points: np.ndarray) -> str:
    return "9 " + " ".join(str(int(round(v))) for v in points.flatten()) + " "


@pytest.mark.parametrize("degrees", [0.0, 25.0, -40.0, 70.0, -85.0])
def test_landmarks_land_where_the_alignment_puts_them(degrees):
    points = _rotated(degrees, shift=(5.0, -8.0))
    face = aligned_face(_photo(points), np.round(points), 64)
    assert face.shape == (3, 64, 64) and face.dtype == np.uint8
    for index, colour in MARKERS.items():
        got = _marker_centre(face, colour)
        want = _expected_in_crop(UPRIGHT[index], 64)
        np.testing.assert_allclose(got, want, atol=1.0, err_msg=f"landmark {index} at {degrees}")


def test_the_crop_is_a_square_of_the_ear_base_distance():
    points = _rotated(30.0)
    crop = crop_face(_photo(points), points)
    assert abs(crop.size[0] - SIDE) <= 1 and abs(crop.size[1] - SIDE) <= 1
    theta, *_ = face_box(points, (400, 300))
    assert math.degrees(theta) == pytest.approx(30.0, abs=1e-6)


def test_swapped_eye_labels_are_swapped_back():
    # Eye labels exchanged on a face tilted by -20 degrees: taken literally, the eye angle would be
    # about 160 degrees and the face would come out upside down. The rule (left eye right of and
    # above the right eye, mouth right of the right eye) recognises the case and swaps them back.
    points = _rotated(-20.0)
    swapped = points.copy()
    swapped[[0, 1]] = points[[1, 0]]
    theta, *_ = face_box(swapped, (400, 300))
    assert math.degrees(theta) == pytest.approx(-20.0, abs=1e-6)
    face = aligned_face(_photo(points), swapped, 64)
    for index, colour in MARKERS.items():
        want = _expected_in_crop(UPRIGHT[index], 64)
        np.testing.assert_allclose(_marker_centre(face, colour), want, atol=1.0)


def test_a_face_at_the_border_is_shortened_not_padded():
    points = UPRIGHT - np.array([150.0, 130.0])  # eyes' midpoint at (50, 20): box starts at -10/-28
    theta, x0, y0, x1, y1 = face_box(points, (400, 300))
    assert theta == 0 and (x0, y0) == (0, 0)
    assert (x1, y1) == (int(50 - 60 + 120), int(20 - 48 + 120))


def test_small_faces_are_dropped():
    points = (UPRIGHT - CENTER) * 0.4 + CENTER  # side 48 < 64
    assert aligned_face(_photo(points), points, 64) is None
    assert aligned_face(_photo(points), points, 32) is not None


@pytest.mark.parametrize(
    "text", ["", "8 1 2 3", "9 1 2 3 4", "9 a b c d e f g h i j k l m n o p q r"]
)
def test_malformed_landmark_files_are_refused(text):
    with pytest.raises(ValueError, match="x.jpg.cat"):
        parse_landmarks(text, where="x.jpg.cat")


def test_landmark_file_with_trailing_space_parses():
    points = parse_landmarks(_cat_text(UPRIGHT))
    np.testing.assert_array_equal(points, UPRIGHT)


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _synthetic_cat_mirror(root: Path) -> dict[str, np.ndarray]:
    """Two CAT-like zips plus the separately published correction file, in the mirror layout.

    Returns the landmarks each kept photo should be aligned with.
    """
    folder = root / "cat-dataset"
    folder.mkdir(parents=True)
    kept = {}
    good = {
        "00000001_000.jpg": _rotated(15.0),
        "00000001_001.jpg": _rotated(-30.0, shift=(20.0, 10.0)),
        "00000003_015.jpg": _rotated(5.0),  # its landmarks come from the correction file
    }
    small = (UPRIGHT - CENTER) * 0.4 + CENTER
    with zipfile.ZipFile(folder / "CAT_DATASET_01.zip", "w") as archive:
        for name, points in good.items():
            archive.writestr(f"CAT_00/{name}", _jpeg(_photo(points)))
            wrong = points if name != "00000003_015.jpg" else points[::-1]
            archive.writestr(f"CAT_00/{name}.cat", _cat_text(wrong))
            kept[name] = points
        archive.writestr("CAT_00/00000002_000.jpg", _jpeg(_photo(small)))  # face too small
        archive.writestr("CAT_00/00000002_000.jpg.cat", _cat_text(small))
        archive.writestr("CAT_00/Thumbs.db", b"\x00\x01")
    with zipfile.ZipFile(folder / "CAT_DATASET_02.zip", "w") as archive:
        archive.writestr("CAT_05/00000003_019.jpg", _jpeg(_photo(_rotated(0.0))))
        archive.writestr("CAT_05/00000003_019.jpg.cat", _cat_text(_rotated(0.0)))  # dropped
        archive.writestr("CAT_05/00000004_000.jpg", _jpeg(_photo(_rotated(-10.0))))  # no .cat
        points = _rotated(40.0)
        archive.writestr("CAT_05/00000005_000.jpg", _jpeg(_photo(points)))
        archive.writestr("CAT_05/00000005_000.jpg.cat", _cat_text(points))
        kept["00000005_000.jpg"] = points
    (folder / "00000003_015.jpg.cat").write_text(_cat_text(good["00000003_015.jpg"]))
    return dict(sorted(kept.items()))


def test_cat64_is_prepared_from_the_zips_with_the_corrections(tmp_path):
    expected = _synthetic_cat_mirror(tmp_path / "mirror")
    out = prepare("cat64", tmp_path / "data", tmp_path / "mirror", log=lambda m: None)
    images, labels = load_split("cat64", tmp_path / "data", "train")
    assert images.shape == (len(expected), 3, 64, 64) and images.dtype == torch.uint8
    assert labels.tolist() == [0] * len(expected)
    for face in images.numpy():  # every kept face, however it was tilted, comes out upright
        for index, colour in MARKERS.items():
            got = _marker_centre(face, colour)
            np.testing.assert_allclose(got, _expected_in_crop(UPRIGHT[index], 64), atol=1.5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preparation"]["counts"] == {
        "photos": 7,
        "no_landmarks": 2,  # 00000003_019 (its landmarks are dropped) and 00000004_000
        "smaller_than_size": 1,
        "kept": 4,
    }
    assert manifest["source"]["pinned"] is False
    assert all(len(f["sha256"]) == 64 for f in manifest["source"]["files"])

"""The CAT dataset turned into aligned square cat faces (``cat64``, ``cat128``).

Every photo ``X.jpg`` of the CAT dataset comes with ``X.jpg.cat``: the count 9, then 9 points
``x y`` in pixels: left eye, right eye, mouth, left ear 1-3, right ear 1-3 (each ear from its
left base over the tip to its right base, so left ear 1 and right ear 3 are the outer bases). The face is cut out as in the reference
preprocessing of the cat-face GAN experiments (Jolicoeur-Martineau, "Deep learning with cats"):

1. (after swapping eye labels that are evidently exchanged) rotate the photo about the eye
   midpoint ``c`` by the eye angle
   ``theta = atan2(y_re - y_le, x_re - x_le)``, so that the eyes are level (blank corners gray 128);
2. the face side is the horizontal distance between the two outer ear bases after rotation,
   ``w = |x'(right ear 3) - x'(left ear 1)|``;
3. crop the square ``[c_x - w/2, c_x + w/2) x [c_y - 0.4 w, c_y + 0.6 w)``: the eye midpoint
   lands 50% across and 40% down; a box running over the left/top border starts at 0 and is
   shortened by the overhang, one running over the right/bottom border is cut at it;
4. drop faces whose crop is smaller than the target size on either side, resize the rest to
   ``size x size`` (bilinear).

The reference later also removed a hand-picked list of outlier photos; that list is not applied.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

N_POINTS = 9
LEFT_EYE, RIGHT_EYE, MOUTH, LEFT_EAR_OUTER, RIGHT_EAR_OUTER = 0, 1, 2, 3, 8
FILL = (128, 128, 128)
EYE_DOWN = 0.4  # eye midpoint at 40% of the face height
CORRECTION_FILE = "00000003_015.jpg.cat"
# Landmark files of the zips replaced or dropped, as in the reference preprocessing.
CORRECTIONS = {"00000003_015.jpg.cat": "replace", "00000003_019.jpg.cat": "drop"}


def parse_landmarks(text: str, where: str = "landmarks") -> np.ndarray:
    """The 9 landmark points of a ``.cat`` file as a float array (9, 2); ValueError if malformed."""
    fields = text.split()
    try:
        numbers = [int(f) for f in fields]
    except ValueError as err:
        raise ValueError(f"{where}: not a list of integers ({err})") from err
    if not numbers or numbers[0] != N_POINTS or len(numbers) < 1 + 2 * N_POINTS:
        raise ValueError(
            f"{where}: expected the count {N_POINTS} followed by {N_POINTS} x y pairs, "
            f"got {len(numbers)} numbers starting with {numbers[:1]}"
        )
    return np.asarray(numbers[1 : 1 + 2 * N_POINTS], dtype=np.float64).reshape(N_POINTS, 2)


def _eyes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    left, right = points[LEFT_EYE], points[RIGHT_EYE]
    # Eye labels exchanged (the "left" eye right of and above the "right" one, the mouth right of
    # the "right" eye): swap them back, else the eye angle is off by about 180 degrees and the
    # face comes out upside down.
    if left[0] > right[0] and left[1] < right[1] and points[MOUTH][0] > right[0]:
        left, right = right, left
    return left, right


def rotate_points(points: np.ndarray, center: np.ndarray, theta: float) -> np.ndarray:
    """Points after the image is rotated by ``theta`` about ``center`` (y down):
    ``p' = c + R(-theta) (p - c)``."""
    cos, sin = math.cos(theta), math.sin(theta)
    d = points - center
    return np.stack([d[:, 0] * cos + d[:, 1] * sin, -d[:, 0] * sin + d[:, 1] * cos], 1) + center


def face_box(points: np.ndarray, image_size: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """(theta, left, top, right, bottom): the eye angle and the crop box in the rotated image."""
    left, right = _eyes(points)
    center = (left + right) / 2
    theta = math.atan2(right[1] - left[1], right[0] - left[0])
    rotated = rotate_points(points, center, theta)
    side = abs(rotated[RIGHT_EAR_OUTER, 0] - rotated[LEFT_EAR_OUTER, 0])
    x0, y0 = center[0] - side / 2, center[1] - EYE_DOWN * side
    width = height = side
    if x0 < 0:
        width, x0 = width + x0, 0.0
    if y0 < 0:
        height, y0 = height + y0, 0.0
    w_img, h_img = image_size
    return (
        theta,
        int(x0),
        int(y0),
        min(int(x0 + width), w_img),
        min(int(y0 + height), h_img),
    )


def crop_face(image: Image.Image, points: np.ndarray) -> Image.Image:
    """The straightened face crop (before resizing) of one photo."""
    theta, x0, y0, x1, y1 = face_box(points, image.size)
    left, right = _eyes(points)
    center = tuple((left + right) / 2)
    # PIL turns counter-clockwise on screen for a positive angle, which levels eyes at +theta.
    straight = image.convert("RGB").rotate(
        math.degrees(theta), resample=Image.BILINEAR, center=center, fillcolor=FILL
    )
    return straight.crop((x0, y0, max(x1, x0), max(y1, y0)))


def aligned_face(image: Image.Image, points: np.ndarray, size: int) -> np.ndarray | None:
    """The face as uint8 (3, size, size), or None when its crop is smaller than ``size``."""
    crop = crop_face(image, points)
    if min(crop.size) < size:
        return None
    resized = crop.resize((size, size), resample=Image.BILINEAR)
    return np.array(resized, dtype=np.uint8).transpose(2, 0, 1)


def iter_zip_photos(
    zips: Iterable[Path], correction: Path | None = None
) -> Iterator[tuple[str, bytes, np.ndarray | None]]:
    """(name, jpeg bytes, landmarks or None) for every photo of the CAT zips, sorted by name."""
    for path in zips:
        with zipfile.ZipFile(path) as archive:
            members = {Path(n).name: n for n in archive.namelist() if not n.endswith("/")}
            for name in sorted(m for m in members if m.lower().endswith(".jpg")):
                cat_name = name + ".cat"
                action = CORRECTIONS.get(cat_name)
                if action == "drop":
                    landmarks_text = None
                elif action == "replace" and correction is not None:
                    landmarks_text = correction.read_text()
                elif cat_name in members:
                    landmarks_text = archive.read(members[cat_name]).decode("ascii", "replace")
                else:
                    landmarks_text = None
                points = (
                    None
                    if landmarks_text is None
                    else parse_landmarks(landmarks_text, where=f"{path.name}:{cat_name}")
                )
                yield name, archive.read(members[name]), points


def build_cat_faces(
    photos: Iterable[tuple[str, bytes, np.ndarray | None]], size: int
) -> tuple[torch.Tensor, dict]:
    """Aligned faces (N, 3, size, size) uint8 of the photos whose face is at least ``size``."""
    faces, counts = [], {"photos": 0, "no_landmarks": 0, "smaller_than_size": 0}
    for _name, data, points in photos:
        counts["photos"] += 1
        if points is None:
            counts["no_landmarks"] += 1
            continue
        with Image.open(io.BytesIO(data)) as image:
            face = aligned_face(image, points, size)
        if face is None:
            counts["smaller_than_size"] += 1
            continue
        faces.append(torch.from_numpy(face))
    if not faces:
        raise ValueError(f"no cat face of at least {size}x{size} pixels was found")
    counts["kept"] = len(faces)
    return torch.stack(faces), counts

"""Offline detectors on real photos from the installed sample media; clean errors without them."""
import numpy as np
import pytest

from marionet.data.samples import sample_path
from marionet.data.video import open_video, read_image
from marionet.errors import MarionetError
from marionet.landmarks import DlibFaces, FaceBoxes, FaceMesh, PoseLandmarks, require


@pytest.fixture(scope="module")
def astronaut():
    return read_image(sample_path("astronaut"))


def test_face_detectors_agree_on_the_astronaut(astronaut):
    box, score = FaceBoxes()(astronaut)[0]
    mesh = FaceMesh()(astronaut)
    dlib68 = DlibFaces().landmarks(astronaut)
    assert score > 0.8 and mesh.shape == (468, 2) and dlib68.shape == (68, 2)
    x0, y0, x1, y1 = box
    for points in (mesh, dlib68):
        centre = points.mean(0)
        assert x0 < centre[0] < x1 and y0 < centre[1] < y1      # both land inside mediapipe's face box
    nose_dlib, nose_mesh = dlib68[30], mesh[1]                   # the nose tip in both schemes
    assert np.linalg.norm(nose_dlib - nose_mesh) < 0.1 * (x1 - x0)


def test_pose_on_the_astronaut(astronaut):
    points, visibility = PoseLandmarks()(astronaut)
    assert points.shape == (33, 2) and visibility.shape == (33,)
    assert visibility[0] > 0.9 and 150 < points[0, 0] < 300      # the nose, on her face


def test_no_face_in_a_flat_image():
    blank = np.full((128, 128, 3), 0.5, np.float32)
    assert FaceMesh()(blank) is None and FaceBoxes()(blank) == [] and DlibFaces().landmarks(blank) is None
    assert PoseLandmarks()(blank) is None


def test_descriptors_tell_people_apart(astronaut):
    faces = DlibFaces(descriptors=True)
    with open_video(sample_path("carphone")) as reader:
        other = next(reader)
    same = np.linalg.norm(faces.descriptor(astronaut) - faces.descriptor(astronaut[:, ::-1]))
    different = np.linalg.norm(faces.descriptor(astronaut) - faces.descriptor(other))
    assert same < 0.6 < different


def test_missing_optional_package_names_the_extra():
    with pytest.raises(MarionetError, match=r"pip install 'marionet\[eval\]'"):
        require("no_such_module_here", "eval")
    with pytest.raises(MarionetError, match="no sample named"):
        sample_path("lena")

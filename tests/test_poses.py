"""posewarp's data side: the original code's outputs (tests/fixtures/posewarp, README tolerances), hand-computed
limb masks, pose maps and transforms, the info and joints files, the joint mappings and the training pairs."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from marionet.data import poses
from marionet.data.pose_videos import PosePairs, load_pose_videos
from marionet.data.puppets import render_video, synthesize
from marionet.errors import MarionetError


@pytest.fixture(scope="module")
def case(fixtures):
    return dict(np.load(fixtures / "posewarp" / "case.npz")), dict(np.load(fixtures / "posewarp" / "expected.npz"))


def case_params(c):
    return poses.PoseParams(obj_scale_factor=float(c["obj_scale_factor"]), sigma_joint=float(c["sigma_joint"]),
                            posemap_downsample=int(c["posemap_downsample"]))


def case_augmentation(c):
    return dict(flip=bool(c["aug_flip"]), scale=float(c["aug_scale"]), shift=tuple(int(v) for v in c["aug_shift"]),
                rotate_deg=float(c["aug_rotate_deg"]), sat=float(c["aug_sat"]))


def chw(a):
    """The fixture's channels-last (H, W, C) / (2, 3, L) -> ours."""
    return np.moveaxis(np.asarray(a), -1, 0)


# ---------------------------------------------------------------------------------------------- the fixture

def test_the_fixture_pair_with_its_augmentation(case):
    c, e = case
    size = tuple(int(v) for v in c["img_size"])
    assert [list(limb) + [-1] * (4 - len(limb)) for limb in poses.JOINT_SETS["full"].limbs] == c["limbs"].tolist()
    out = poses.prepare_pair(c["frame_src"], c["frame_tgt"], c["joints_src"], c["joints_tgt"], c["bbox_src"],
                             c["bbox_tgt"], case_params(c), size, case_augmentation(c))
    for ours, theirs in (("joints_src", "joints_src_out"), ("joints_tgt", "joints_tgt_out")):
        np.testing.assert_allclose(out[ours], e[theirs], atol=1e-9)
    for name in ("src_image", "tgt_image"):
        error = np.abs(out[name] - chw(e[name]))
        assert error.mean() <= 0.0025 and error.max() <= 0.05, name
    np.testing.assert_allclose(out["pose_src"], chw(e["pose_src"]), atol=1e-5)
    np.testing.assert_allclose(out["pose_tgt"], chw(e["pose_tgt"]), atol=1e-5)
    np.testing.assert_allclose(out["mask_prior"][1:], chw(e["mask_prior"])[1:], atol=1e-4)
    np.testing.assert_allclose(np.exp(out["mask_prior"]), np.exp(chw(e["mask_prior"]).astype(np.float64)), atol=1e-5)
    np.testing.assert_allclose(out["trans"], chw(e["trans"]), atol=1e-8)


def test_the_fixture_step_by_step(case):
    c, e = case
    size = tuple(int(v) for v in c["img_size"])
    params = case_params(c)
    for side in ("src", "tgt"):
        assert poses.person_scale(c[f"joints_{side}"]) == pytest.approx(float(e[f"person_scale_{side}"]), abs=1e-12)
        np.testing.assert_allclose(poses.bbox_center(c[f"bbox_{side}"]), e[f"bbox_center_{side}"], atol=1e-12)
    np.testing.assert_allclose(c["joints_src"], c["joints_mat_src"] - 1)
    scale, center = poses.pair_frame(c["joints_src"], c["joints_tgt"], c["bbox_src"], c["bbox_tgt"],
                                     c["frame_src"].shape, size, params)
    assert scale == pytest.approx(float(e["scale"]), abs=1e-12)
    np.testing.assert_allclose(center, e["center"], atol=1e-12)
    aug = case_augmentation(c)
    for side in ("src", "tgt"):
        image, joints = poses.center_and_scale(c[f"frame_{side}"], c[f"joints_{side}"], center, scale, size)
        np.testing.assert_allclose(joints, e[f"centered_joints_{side}"], atol=1e-9)
        assert np.abs(image.astype(int) - e[f"centered_{side}_u8"]).max() <= 2
        steps = [("flip", dict(flip=aug["flip"])), ("scale", dict(flip=aug["flip"], scale=aug["scale"])),
                 ("shift", dict(flip=aug["flip"], scale=aug["scale"], shift=aug["shift"])), ("rotate", aug)]
        for step, partial in steps:   # each augmentation step's joints (saturation moves none)
            _, moved = poses.augment_frame(image / 127.5 - 1, joints, partial, size)
            np.testing.assert_allclose(moved, e[f"aug_joints_{side}_{step}"], atol=1e-9)


def test_the_fixture_without_augmentation(case):
    c, e = case
    size = tuple(int(v) for v in c["img_size"])
    out = poses.prepare_pair(c["frame_src"], c["frame_tgt"], c["joints_src"], c["joints_tgt"], c["bbox_src"],
                             c["bbox_tgt"], case_params(c), size, None)
    for side in ("src", "tgt"):
        error = np.abs(out[f"{side}_image"] - chw((e[f"centered_{side}_u8"] / 255.0 - 0.5) * 2))
        assert error.mean() <= 0.0025 and error.max() <= 0.05
        np.testing.assert_allclose(out[f"joints_{side}"], e[f"centered_joints_{side}"], atol=1e-9)
    np.testing.assert_allclose(out["trans"], chw(e["noaug_trans"]), atol=1e-8)


def test_the_fixture_function_by_function(case):
    c, e = case
    size = tuple(int(v) for v in c["img_size"])
    dn, sigma = int(c["posemap_downsample"]), float(c["sigma_joint"])
    np.testing.assert_allclose(poses.joint_heatmaps(e["joints_tgt_out"], size, dn, sigma), chw(e["pose_tgt"]), atol=1e-5)
    prior = poses.mask_prior(e["joints_src_out"], size)
    np.testing.assert_allclose(prior[1:], chw(e["mask_prior"])[1:], atol=1e-4)
    np.testing.assert_allclose(poses.limb_transforms(e["joints_src_out"], e["joints_tgt_out"]), chw(e["trans"]),
                               atol=1e-8)


# ---------------------------------------------------------------------------------------------- hand-computed cases

def joints_with(points: dict) -> np.ndarray:
    j = np.full((14, 2), np.nan)
    for k, p in points.items():
        j[k] = p
    return j


def test_a_limb_mask_by_hand():
    j = joints_with({0: (10.0, 20.0), 1: (30.0, 20.0)})           # head-neck, horizontal, 20 px long
    mask = poses.limb_masks(np.nan_to_num(j), (48, 64), "upper", limb_width=3)[0]
    along = 20 ** 2 / 1.5
    assert mask[20, 20] == pytest.approx(1 / (1 + 1e-6))                     # the centre is the maximum
    assert mask[23, 20] == pytest.approx(math.exp(-0.5 * 9 / 9) / (1 + 1e-6))  # one width across
    assert mask[20, 30] == pytest.approx(math.exp(-0.5 * 100 / along) / (1 + 1e-6))  # along the limb: longer axis
    vertical = poses.limb_masks(np.nan_to_num(joints_with({0: (20.0, 10.0), 1: (20.0, 30.0)})), (48, 64), "upper",
                                limb_width=3)[0]
    np.testing.assert_allclose(vertical[:40, :40], mask[:40, :40].T, atol=1e-12)   # turned with its limb
    short = poses.limb_masks(np.nan_to_num(joints_with({0: (20.0, 20.0), 1: (21.0, 20.0)})), (48, 64), "upper",
                             limb_width=3)[0]
    peak = math.exp(-0.5 * 0.5 ** 2 / 5)                                    # variance floor 5, centre off-grid
    assert short[20, 22] == pytest.approx(math.exp(-0.5 * 1.5 ** 2 / 5) / (peak + 1e-6), rel=1e-9)


def test_the_torso_mask_spans_the_shoulder_and_hip_midpoints():
    j = joints_with({0: (30, 5), 1: (30, 10), 2: (20, 12), 3: (18, 20), 4: (16, 28), 5: (40, 12), 6: (42, 20),
                     7: (44, 28), 8: (24, 40), 9: (24, 50), 10: (24, 60), 11: (36, 40), 12: (36, 50), 13: (36, 60)})
    masks = poses.limb_masks(j, (64, 64), limb_width=3, torso_width=4)
    torso = masks[9]
    assert np.unravel_index(torso.argmax(), torso.shape) == (26, 30)           # midpoint of (30, 12) and (30, 40)
    prior = poses.mask_prior(j, (64, 64), limb_width=3, torso_width=4)
    assert prior.shape == (11, 64, 64)
    np.testing.assert_allclose(np.exp(prior[0]), 1 - masks.max(0) + 1e-10, rtol=1e-9)


def test_pose_maps_by_hand():
    j = joints_with({0: (20.0, 30.0), 1: (62.0, 30.0), 2: (-1.0, 5.0)})
    maps = poses.joint_heatmaps(j, (64, 64), downsample=2, sigma=1.5)
    assert maps.shape == (14, 32, 32)
    assert maps[0, 15, 10] == 1.0 and maps[0, 15, 11] == pytest.approx(math.exp(-1 / (2 * 1.5 ** 2)))
    assert not maps[1].any()            # x / 2 = 31 is on the last column: dropped, as the original does
    assert not maps[2].any() and not maps[5].any()    # outside, and unknown
    assert poses.joint_heatmaps(j, (64, 64), joint_set="upper").shape == (8, 32, 32)


def test_a_limb_rotated_by_90_degrees_gives_the_rotation():
    src = joints_with({0: (10.0, 10.0), 1: (20.0, 10.0)})
    tgt = joints_with({0: (10.0, 10.0), 1: (10.0, 20.0)})                    # the same limb turned by 90 degrees
    trans = poses.limb_transforms(np.nan_to_num(src), np.nan_to_num(tgt), "upper")
    assert trans.shape == (6, 2, 3)
    np.testing.assert_allclose(trans[0], np.eye(2, 3))                       # the background stays
    np.testing.assert_allclose(trans[1], [[0, 1, 0], [-1, 0, 20]], atol=1e-12)  # target -> source
    for p, q in ((tgt[0], src[0]), (tgt[1], src[1])):
        np.testing.assert_allclose(trans[1] @ [*p, 1], q, atol=1e-12)
    double = poses.limb_transforms(np.nan_to_num(src), np.nan_to_num(joints_with({0: (0.0, 0.0), 1: (20.0, 0.0)})),
                                   "upper")[1]
    np.testing.assert_allclose(double, [[0.5, 0, 10], [0, 0.5, 10]], atol=1e-12)  # twice as long: half the scale


def test_the_torso_transform_is_a_least_squares_fit_of_its_four_joints():
    rng = np.random.default_rng(0)
    src = rng.uniform(10, 50, (14, 2))
    angle, scale, shift = 0.3, 1.2, np.array([3.0, -2.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    tgt = src @ np.linalg.inv(rotation).T - shift        # the whole body moved by one similarity
    tgt[2] += 0.5                                         # and one shoulder off it
    torso = poses.limb_transforms(src, tgt)[10]
    residual = lambda m: sum(np.sum((m @ [*tgt[k], 1] - src[k]) ** 2) for k in (2, 5, 8, 11))  # noqa: E731
    best = residual(torso)
    assert torso[0, 0] == torso[1, 1] and torso[0, 1] == -torso[1, 0]     # a similarity
    for d in (1e-3, -1e-3):                               # nudging a, b, tx or ty fits worse
        for nudge in ([[d, 0, 0], [0, d, 0]], [[0, -d, 0], [d, 0, 0]], [[0, 0, d], [0, 0, 0]], [[0, 0, 0], [0, 0, d]]):
            assert residual(torso + np.array(nudge)) > best


# ---------------------------------------------------------------------------------------------- augmentation

def test_flip_mirrors_the_image_and_swaps_left_and_right():
    image = np.zeros((32, 32, 3))
    image[5, 3] = 1.0                                     # a dot at x = 3, y = 5
    j = np.zeros((14, 2))
    j[2], j[5] = (3.0, 5.0), (20.0, 5.0)                  # r-shoulder on the dot
    flipped, moved = poses.augment_frame(image, j, dict(flip=True), (32, 32))
    assert flipped[5, 28].max() == 1.0                    # 31 - 3
    np.testing.assert_allclose(moved[5], (28.0, 5.0))     # the dot's joint now in the left slot
    np.testing.assert_allclose(moved[2], (11.0, 5.0))


def test_rotation_follows_opencv_sign():
    m = poses.rotation_matrix((15.5, 15.5), 90.0)
    np.testing.assert_allclose(m @ [31.0, 15.5, 1], (15.5, 0.0), atol=1e-12)  # the right edge goes up: counter-clockwise


# ---------------------------------------------------------------------------------------------- files and mappings

def test_info_files_round_trip_and_bad_ones_are_one_line_errors(tmp_path):
    joints = np.random.default_rng(1).uniform(0, 60, (5, 14, 2))
    bbox = np.random.default_rng(2).uniform(0, 60, (5, 4))
    poses.write_info(tmp_path / "v.mat", joints, bbox)
    back, box = poses.read_info(tmp_path / "v.mat")
    np.testing.assert_allclose(back, joints)
    np.testing.assert_allclose(box, bbox)
    from scipy.io import loadmat
    np.testing.assert_allclose(loadmat(tmp_path / "v.mat")["data"]["X"][0][0][:, :, 0], joints[0] + 1)   # 1-based
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    from scipy.io import savemat
    savemat(tmp_path / "shape.mat", {"data": {"X": np.zeros((13, 2, 3)), "bbox": np.zeros((3, 4))}})
    for name, text in (("bad.mat", "not a posewarp info file"), ("shape.mat", r"X must be \(14, 2, T\)"),
                       ("none.mat", "no such info file")):
        with pytest.raises(MarionetError, match=text) as e:
            poses.read_info(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("content, message", [
    ({"joints": [[1, 2]] * 13}, "14 joints"),
    ({"points": [[1, 2]] * 14}, "14 joints"),
    ({"joints": [[1, 2]] * 4 + [None] + [[1, 2]] * 9}, r"joint 4 \(r_wrist\) is missing"),
    ({"joints": [[1, 2]] * 13 + [[1, "x"]]}, r"joint 13 \(l_ankle\) must be \[x, y\]"),
    ({"joints": [[1, 2]] * 13 + [[1, 2, 3]]}, "must be"),
    ("[not json", "not a JSON joints file"),
])
def test_bad_joints_files(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(MarionetError, match=message) as e:
        poses.read_joints_file(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_joints_files_are_pixels_from_the_corner_and_upper_body_needs_no_legs(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"joints": [[10, 20]] * 8 + [None] * 6}))
    j = poses.read_joints_file(path, "upper")
    np.testing.assert_allclose(j[:8], [[9.5, 19.5]] * 8)
    assert np.isnan(j[8:]).all()
    assert poses.joints_to_json(j)["joints"][:2] == [[10.0, 20.0], [10.0, 20.0]]
    with pytest.raises(MarionetError, match=r"joint 8 \(r_hip\) is missing"):
        poses.read_joints_file(path, "full")


def test_puppet_joints_map_to_mpii_slots():
    _, gt = render_video("humanoid", 64, 2, 5)
    j = poses.puppet_joints(gt)
    names = list(gt["joint_names"])
    assert j.shape == (2, 14, 2)
    for mpii, name in enumerate(poses.MPII_JOINTS):
        np.testing.assert_allclose(j[:, mpii], gt["joints"][:, names.index(name)] - 0.5)   # r_ to the right slots
    with pytest.raises(MarionetError, match="humanoid"):
        poses.puppet_joints(render_video("face", 32, 1, 0)[1])


def test_mediapipe_landmarks_map_to_mpii_joints():
    points = np.arange(66, dtype=np.float64).reshape(33, 2)
    j = poses.mediapipe_joints(points)
    np.testing.assert_allclose(j[2], points[12] - 0.5)                      # the person's right shoulder
    np.testing.assert_allclose(j[13], points[27] - 0.5)                     # left ankle
    np.testing.assert_allclose(j[1], (points[11] + points[12]) / 2 - 0.5)   # neck: between the shoulders
    np.testing.assert_allclose(j[0], (points[7] + points[8]) / 2 - 0.5)     # head: between the ears


def test_retargeting_scales_to_the_other_person():
    rng = np.random.default_rng(3)
    a = rng.uniform(10, 50, (14, 2))
    b = (a - a.mean(0)) * 2 + 100                        # the same pose, twice as large, elsewhere
    moved = poses.retarget(np.stack([b, b + 4]), b, a)
    np.testing.assert_allclose(moved[0], a, atol=1e-9)
    np.testing.assert_allclose(moved[1] - moved[0], 2, atol=1e-9)      # B's motion, at A's size


# ---------------------------------------------------------------------------------------------- datasets

@pytest.fixture(scope="module")
def puppets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose-puppets") / "p"
    synthesize(root, videos=3, frames=6, size=64, kind="humanoid", seed=4)
    return root


def test_puppet_pairs_are_deterministic_and_shaped(puppets):
    params = poses.PoseParams(normalize=False, sigma_joint=1.0, limb_width=3, torso_width=4)
    pairs = PosePairs(puppets, params, (64, 64), seed=1, num_repeats=2)
    assert len(pairs) == 4
    item = pairs[3]
    again = PosePairs(puppets, params, (64, 64), seed=1, num_repeats=2)[3]
    for key, value in item.items():
        if torch.is_tensor(value):
            assert torch.equal(value, again[key]), key
    assert item["source"].shape == (3, 64, 64) and item["pose_source"].shape == (14, 32, 32)
    assert item["prior"].shape == (11, 64, 64) and item["trans"].shape == (11, 2, 3)
    assert not torch.equal(item["source"], pairs[2]["source"])


def test_the_original_layout_is_read(tmp_path):
    """frames/<video>/<k>.png (1-based) + info/<video>.mat, as the original's data folders."""
    frames, gt = render_video("humanoid", 64, 4, 9)
    video = tmp_path / "train" / "frames" / "clip one"
    video.mkdir(parents=True)
    for k, f in enumerate(frames, start=1):
        Image.fromarray(f).save(video / f"{k}.png")
    joints = poses.puppet_joints(gt)
    poses.write_info(tmp_path / "train" / "info" / "clip one.mat", joints, np.stack([poses.joints_bbox(j) for j in joints]))
    (found,) = load_pose_videos(tmp_path, "train")
    assert found.name == "clip one" and found.joints.shape == (4, 14, 2)
    np.testing.assert_array_equal(found.frames([2])[0], frames[2])
    item = PosePairs(tmp_path, poses.PoseParams(normalize=False), (64, 64))[0]
    assert item["target"].shape == (3, 64, 64)
    (tmp_path / "test" / "other").mkdir(parents=True)
    Image.fromarray(frames[0]).save(tmp_path / "test" / "other" / "0.png")
    with pytest.raises(MarionetError, match="other: no joints"):
        load_pose_videos(tmp_path, "test")

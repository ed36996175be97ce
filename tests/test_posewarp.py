"""posewarp, the model side: the weight-free warp and up-sampling against the original's, the warp moving a
drawn limb onto its target, the modules' shapes, the two training stages, the normalised VGG loss with its
statistics command, and the commands (pose-transfer on a real photo, joints, reconstruct), bad input included."""
import json
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import marionet
from marionet.config import load_config
from marionet.data import poses
from marionet.data.puppets import synthesize
from marionet.data.samples import sample_path
from marionet.data.video import open_video, read_image
from marionet.errors import MarionetError
from marionet.losses import Vgg19
from marionet.models import build_model
from marionet.models.posewarp import (Discriminator, PosewarpGenerator, UNet, UNetGenerator, affine_warp,
                                      upsample2x, warp_limbs)
from marionet.train import train
from test_bad_input import run_cli, snapshot


def chw(a):
    return torch.from_numpy(np.moveaxis(np.asarray(a), -1, 0).copy())


# ---------------------------------------------------------------------------------------------- weight-free layers

def test_warp_and_upsampling_match_the_original(fixtures):
    c = np.load(fixtures / "posewarp" / "case.npz")
    e = np.load(fixtures / "posewarp" / "expected.npz")
    up = upsample2x(chw(c["upsample_in"])[None])[0]
    np.testing.assert_allclose(up.numpy(), np.moveaxis(e["reimpl_upsample_out"], -1, 0), atol=1e-5)
    warped = affine_warp(chw(c["warp_prim_image"])[None], torch.from_numpy(c["warp_prim_theta"])[None])[0]
    np.testing.assert_allclose(warped.numpy(), np.moveaxis(e["reimpl_warp_prim_out"], -1, 0), atol=2e-4)
    mask = chw(e["mask_prior"])[None].softmax(1)
    stack = warp_limbs(chw(e["src_image"])[None], mask, chw(e["trans"].astype(np.float32))[None])[0]
    np.testing.assert_allclose(stack[:, ::2, ::2].numpy(), np.moveaxis(e["reimpl_warped_stack_sub2"], -1, 0), atol=2e-4)


def bar(a, b, size=64, width=1.5):
    """An image (1, 3, H, W): 1 within ``width`` of the segment a-b, else 0."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.clip(((xs - a[0]) * (b - a)[0] + (ys - a[1]) * (b - a)[1]) / np.sum((b - a) ** 2), 0, 1)
    d = np.hypot(xs - a[0] - t * (b - a)[0], ys - a[1] - t * (b - a)[1])
    return torch.from_numpy((d <= width).astype(np.float32))[None, None].repeat(1, 3, 1, 1)


def test_the_warp_moves_a_drawn_limb_onto_its_target():
    src = np.full((14, 2), 5.0)
    tgt = np.full((14, 2), 5.0)
    src[2], src[3] = (20, 15), (20, 40)                  # the right upper arm, hanging down
    tgt[2], tgt[3] = (30, 30), (52, 18)                  # raised, turned and a little shorter
    trans = torch.from_numpy(poses.limb_transforms(src, tgt, "upper")).float()[None]   # (1, 6, 2, 3)
    masks = torch.zeros(1, 6, 64, 64)
    masks[:, 2] = 1                                      # everything is that limb's layer
    layer = warp_limbs(bar(src[2], src[3]), masks, trans)[0, 6:9]        # slot 2 of the stack
    expected = bar(tgt[2], tgt[3], width=1.2)[0]
    inside = layer[0] > 0.5
    overlap = (inside & (expected[0] > 0)).sum() / (inside | (expected[0] > 0)).sum()
    assert overlap > 0.7
    ys, xs = torch.nonzero(inside, as_tuple=True)
    assert abs(xs.float().mean() - 41) < 0.5 and abs(ys.float().mean() - 24) < 0.5   # the target's midpoint
    assert torch.equal(warp_limbs(bar(src[2], src[3]), masks, trans)[0, :3], torch.zeros(3, 64, 64))  # slot 0 stays


# ---------------------------------------------------------------------------------------------- modules

@pytest.mark.parametrize("joint_set", ["full", "upper"])
def test_module_shapes(joint_set):
    js = poses.JOINT_SETS[joint_set]
    j, l = len(js.joints), len(js.limbs)
    b, size = 2, 64
    inputs = {"source": torch.rand(b, 3, size, size), "pose_source": torch.rand(b, j, 32, 32),
              "pose_target": torch.rand(b, j, 32, 32), "prior": torch.randn(b, l + 1, size, size),
              "trans": torch.eye(2, 3).expand(b, l + 1, 2, 3)}
    out = PosewarpGenerator(j, l, [4, 4, 8, 8, 8, 8, 8], [8, 8, 4], segmentation_width=4)(inputs)
    assert out["prediction"].shape == (b, 3, size, size) and out["mask"].shape == (b, l + 1, size, size)
    assert out["warped"].shape == (b, 3 * (l + 1), size, size) and out["foreground_mask"].shape == (b, 1, size, size)
    torch.testing.assert_close(out["mask"].sum(1), torch.ones(b, size, size))
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1
    assert UNetGenerator(j, l, [4, 4, 8, 8, 8], [8, 4])(inputs)["prediction"].shape == (b, 3, size, size)
    assert Discriminator(j, (size, size), [4, 8, 8, 8, 8, 8], 8)(out["prediction"], inputs["pose_source"],
                                                                   inputs["pose_target"]).shape == (b,)
    bounded = PosewarpGenerator(j, l, [4, 4, 8, 8, 8, 8, 8], [8, 8, 4], segmentation_width=4, segmentation_bound=1.0)
    with torch.no_grad():
        bounded.segmentation_out.conv.bias[1] = 50.0                    # the network insists on limb 1 everywhere
    mask = bounded(inputs)["mask"]
    shift = (mask.log() - mask.log()[:, :1]) - (inputs["prior"] - inputs["prior"][:, :1])
    assert shift.abs().max() <= 1 + 1e-4 and shift[:, 1].min() > 0.99   # it moves the prior by at most +-1
    deep = UNet(3, j, [4, 4, 8] + [8] * 8, [8, 8, 8, 8, 5])            # the original's depth: 4 pairs, 5 decoder steps
    assert deep(torch.rand(1, 3, 64, 64), torch.rand(1, j, 32, 32)).shape == (1, 5, 64, 64)


def tiny_config(architecture="posewarp", loss_weights=None, **train_params) -> dict:
    config = load_config("posewarp-puppets-64")
    config["model_params"]["generator_params"].update(architecture=architecture, encoder=[4, 4, 8, 8, 8, 8, 8, 8, 8],
                                                      decoder=[8, 8, 8, 4])
    if architecture == "unet":
        for key in ("segmentation_width", "segmentation_bound"):   # the baseline has no segmentation
            del config["model_params"]["generator_params"][key]
    config["model_params"]["discriminator_params"] = {"channels": [4, 8, 8, 8, 8, 8], "dense": 8}
    config["train_params"].update(batch_size=2, **train_params)
    config["train_params"]["loss_weights"].update(loss_weights or {})
    return config


@pytest.mark.parametrize("config, message", [
    ({"generator_params": {"architecture": "vae"}}, "architecture: 'vae'"),
    ({"generator_params": {"encoder": [4, 4, 8, 8]}}, "encoder"),
    ({"generator_params": {"encodr": [4]}}, "encodr"),
    ({"pose_params": {"joint_set": "legs"}}, "joint_set"),
    ({"pose_params": {"limb_width": -1}}, "limb_width"),
    ({"discriminator_params": {"channels": [4, 0]}}, "channels"),
])
def test_bad_model_params_are_one_line_errors(config, message):
    base = tiny_config()
    for section, values in config.items():
        base["model_params"].setdefault(section, {}).update(values)
    with pytest.raises(MarionetError, match=message) as e:
        build_model(base, "my.yaml")
    assert "my.yaml" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def puppets(tmp_path_factory):
    root = tmp_path_factory.mktemp("posewarp") / "puppets"
    synthesize(root, videos=6, frames=5, size=64, kind="humanoid", seed=11, pairs=2, test_fraction=0.34)
    return root


@pytest.fixture(scope="module")
def stage1(puppets, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "stage1"
    last = train(tiny_config(), puppets, run, steps=2, workers=0, progress=False)
    assert set(last) == {"feature"} and np.isfinite(last["feature"])
    return run


def test_stage_two_trains_the_discriminator_alone_first(stage1, puppets, tmp_path):
    config = tiny_config(loss_weights={"generator_gan": 0.1}, discriminator_warmup=2)
    run = tmp_path / "stage2"
    last = train(config, puppets, run, steps=2, workers=0, progress=False, init=stage1)
    assert set(last) == {"feature", "gen_gan", "disc_gan"} and last["feature"] == 0 and last["disc_gan"] > 0
    before = marionet.load(stage1).model.generator.state_dict()
    after = marionet.load(run).model.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)           # the generator waited
    train(config, puppets, run, steps=3, workers=0, progress=False, resume=True)
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert int(state["discriminator"]["steps"]) == 3
    moved = marionet.load(run).model.generator.state_dict()
    assert not all(torch.equal(before[k], moved[k]) for k in before)      # then it trained


def test_the_baseline_trains_and_transfers(puppets, tmp_path):
    train(tiny_config("unet"), puppets, tmp_path / "unet", steps=1, workers=0, progress=False)
    model = marionet.load(tmp_path / "unet").model
    source = np.random.default_rng(0).random((48, 80, 3)).astype(np.float32)
    joints = np.random.default_rng(1).uniform(10, 40, (14, 2))
    out = model.transfer(source, joints, np.stack([joints, joints + 2]))
    assert out.shape == (2, 48, 80, 3) and out.dtype == np.float32


def test_composite_on_source_keeps_the_source_background_and_fills_only_the_hole():
    from marionet.models.posewarp import back_to_source, composite_on_source

    source, filled, fg = (torch.full((1, 3, 4, 4), v) for v in (0.2, 0.5, 0.9))
    mask = torch.zeros(1, 3, 4, 4)
    mask[:, 0, :, :2] = 1                     # background on the left half of the source
    mask[:, 1, :, 2:] = 1                     # a limb on the right half: its hole needs filling
    fg_mask = torch.zeros(1, 1, 4, 4)
    fg_mask[..., 0, :] = 1                    # the target's person along the top row
    rest, keep = composite_on_source({"mask": mask, "background": filled, "foreground": fg,
                                      "foreground_mask": fg_mask})
    y = rest + keep * source
    assert torch.all(y[..., 0, :] == 0.9)
    assert torch.all(y[..., 1:, :2] == 0.2) and torch.all(y[..., 1:, 2:] == 0.5)
    # on a photo larger than the model's frame, the kept pixels are the photo's own, at full resolution
    photo = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    layers = torch.cat([rest, keep], 1)[0]
    full = back_to_source(layers, torch.from_numpy(photo), 0.5, (0.0, 0.0))                  # photo pixel p <- frame p / 2
    assert full.shape == (8, 8, 3)
    np.testing.assert_allclose(full[2:, :2], photo[2:, :2], atol=1e-6)      # background: the photo itself
    np.testing.assert_allclose(full[:1, :7], 0.9, atol=1e-6)   # the foreground (column 7 is past the frame)


def test_vgg_statistics_and_the_normalised_feature_loss(puppets, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "vgg19.pth"
    torch.save({k: v for k, v in Vgg19().state_dict().items() if k.startswith("features.")}, weights)
    config = tiny_config(perceptual_backbone="vgg19", vgg19_weights=str(weights))
    path = tmp_path / "posewarp.yaml"
    path.write_text(yaml.safe_dump(config))
    model = build_model(config)
    with pytest.raises(MarionetError, match=r"vgg19.pth.posewarp-stats.safetensors: no VGG activation statistics"):
        model.objective(model.train_params(config))
    code, err = run_cli(["vgg-stats", "--config", path, "--data", puppets, "--batches", "2", "--batch-size", "2"])
    assert code == 0, err
    stats = tmp_path / "vgg19.pth.posewarp-stats.safetensors"
    from safetensors.torch import load_file
    values = load_file(stats)
    assert len(values) == 24 and values["std_0"].shape == (64,) and values["std_11"].shape == (512,)
    assert (values["std_5"] >= 0).all() and values["std_5"].max() > 0
    objective = model.objective(model.train_params(config))
    assert "normalised by the activation statistics" in objective.describe()[0]
    batch = {k: (torch.stack([v, v]) if torch.is_tensor(v) else v) for k, v in
             model.training_dataset(config, puppets, model.train_params(config))[0].items()}
    losses, _ = objective(batch)
    assert set(losses) == {"feature"} and torch.isfinite(losses["feature"])


# ---------------------------------------------------------------------------------------------- commands

@pytest.fixture(scope="module")
def astronaut():
    return sample_path("astronaut")


@pytest.fixture(scope="module")
def astronaut_joints(astronaut, tmp_path_factory):
    """The astronaut's joints as mediapipe finds them, her left wrist moved up: a target joints file."""
    from marionet.landmarks import PoseLandmarks

    points, _ = PoseLandmarks()(read_image(astronaut))
    joints = poses.mediapipe_joints(points)
    joints[7] -= (0, 60)
    path = tmp_path_factory.mktemp("joints") / "target.json"
    path.write_text(json.dumps(poses.joints_to_json(joints)))
    return path


def test_pose_transfer_on_a_real_photo(stage1, astronaut, astronaut_joints, tmp_path):
    out = tmp_path / "out.png"
    code, err = run_cli(["pose-transfer", "--checkpoint", stage1, "--source", astronaut, "--target", astronaut_joints,
                         "--output", out])
    assert code == 0, err
    assert Image.open(out).size == Image.open(astronaut).size
    frames = tmp_path / "frames"                         # a video target: here a folder of two frames
    frames.mkdir()
    photo = Image.open(astronaut).convert("RGB")
    photo.save(frames / "0.png")
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(frames / "1.png")
    code, err = run_cli(["pose-transfer", "--checkpoint", stage1, "--source", astronaut, "--target", frames,
                         "--source-joints", astronaut_joints, "--output", tmp_path / "video.gif"])
    assert code == 0, err
    with open_video(tmp_path / "video.gif") as reader:
        assert len(list(reader)) == 2 and (reader.width, reader.height) == photo.size


def bad_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_pose_transfer_bad_input(stage1, astronaut, astronaut_joints, tmp_path):
    good = json.loads(astronaut_joints.read_text())["joints"]
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(blank)
    cases = {
        "missing joint": (["--target", bad_file(tmp_path, "null.json", {"joints": good[:3] + [None] + good[4:]})],
                          r"null.json: joint 3 \(r_elbow\) is missing"),
        "wrong shape": (["--target", bad_file(tmp_path, "short.json", {"joints": good[:12]})], "short.json: expected"),
        "not JSON": (["--target", bad_file(tmp_path, "bad.json", "{joints")], "bad.json: not a JSON joints file"),
        "missing target": (["--target", tmp_path / "none.json"], "none.json: no such file"),
        "no person": (["--target", blank], "blank.png: no person found"),
        "bad source joints": (["--target", astronaut_joints, "--source-joints", tmp_path / "short.json"], "short.json"),
        "not a posewarp model": (["--target", astronaut_joints, "--model", "puppets"], "needs a posewarp model"),
        "image output for a video": (["--target", tmp_path, "--output", tmp_path / "o.png"], "o.png"),
    }
    for name, (extra, message) in cases.items():
        before = snapshot(tmp_path)
        args = {"--checkpoint": stage1, "--source": astronaut, "--output": tmp_path / "out.png"}
        for k, v in zip(extra[::2], extra[1::2]):
            args[k] = v
        if "--model" in args:
            del args["--checkpoint"]
        code, err = run_cli(["pose-transfer"] + [x for kv in args.items() for x in kv])
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert re.search(message, err), (name, err)
        assert snapshot(tmp_path) == before, name


def test_reconstruct_feeds_ground_truth_joints(stage1, puppets, tmp_path):
    for extra, protocol in (([], "same-identity"), (["--pairs"], "cross-identity")):
        out = tmp_path / protocol
        code, err = run_cli(["reconstruct", "--checkpoint", stage1, "--data", puppets, "--out", out] + extra)
        assert code == 0, err
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["protocol"] == protocol and metrics["frames"] == 10 and 0 <= metrics["l1"] < 1
        assert {"akd", "mkr", "baseline_l1"} <= set(metrics)
    code, err = run_cli(["animate", "--checkpoint", stage1, "--source", puppets / "test" / "humanoid_00004" / "000000.png",
                         "--driving", puppets / "test" / "humanoid_00004", "--output", tmp_path / "a.mp4"])
    assert code == 2 and "pose-transfer" in err


def test_the_builtin_model_moves_a_held_out_puppet(tmp_path):
    """posewarp-puppets by name, on puppets of a seed never used in training: posed with the ground-truth
    joints of the frame most unlike the first, the person's pixels come closer to that frame than the
    source's are; the CLI with a joints file gives the same image."""
    from marionet.data.pose_videos import reconstruction_joints
    from marionet.data.puppets import load_ground_truth

    root = tmp_path / "heldout"
    synthesize(root, videos=4, frames=32, size=64, kind="humanoid", seed=4242, test_fraction=0.5)
    model = marionet.load("posewarp-puppets").model
    assert model.family == "posewarp"
    ratios, whole = [], []
    for video in sorted((root / "test").iterdir()):
        frames = np.stack([read_image(p) for p in sorted(video.glob("*.png"))])
        own, joints = reconstruction_joints(video, video, 64)
        k = int(np.argmax(np.abs(joints - joints[0]).sum((1, 2))))
        out = model.transfer(frames[0], own, joints[[k]])[0]
        masks = load_ground_truth(video)["masks"]
        person = (masks[k] > 0) | (masks[0] > 0)
        ratios.append(np.abs(out - frames[k])[person].mean() / np.abs(frames[0] - frames[k])[person].mean())
        whole.append([np.abs(model.transfer(frames[0], own, joints, source_background=keep) - frames).mean()
                      for keep in (True, False)])
    assert np.mean(ratios) < 0.85, ratios
    # over whole videos, the source's own background beats the filled one (blurred at 64x64)
    assert np.mean([kept / filled for kept, filled in whole]) < 0.9, whole
    Image.fromarray((frames[0] * 255).round().astype(np.uint8)).save(tmp_path / "source.png")
    (tmp_path / "source.json").write_text(json.dumps(poses.joints_to_json(own)))
    (tmp_path / "target.json").write_text(json.dumps(poses.joints_to_json(joints[k])))
    code, err = run_cli(["pose-transfer", "--model", "posewarp-puppets", "--source", tmp_path / "source.png",
                         "--source-joints", tmp_path / "source.json", "--target", tmp_path / "target.json",
                         "--output", tmp_path / "out.png"])
    assert code == 0, err
    written = np.asarray(Image.open(tmp_path / "out.png"), np.float32) / 255
    assert np.abs(written - out).max() < 0.02                           # uint8 rounding and 3-decimal joints


def test_joints_command_writes_original_info_files(astronaut, tmp_path):
    video = tmp_path / "data" / "train" / "clip"
    video.mkdir(parents=True)
    photo = Image.open(astronaut).convert("RGB").resize((256, 256))
    photo.save(video / "0.png")
    Image.new("RGB", (256, 256), (128, 128, 128)).save(video / "1.png")     # nobody in this frame
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(video / "2.png")
    code, err = run_cli(["joints", "--data", tmp_path / "data"])
    assert code == 0, err
    joints, bbox = poses.read_info(tmp_path / "data" / "train" / "info" / "clip.mat")
    assert joints.shape == (3, 14, 2) and np.isfinite(joints[[0, 2]]).all() and np.isnan(joints[1]).all()
    assert 100 < joints[0, 0, 0] < 150                    # her head, in this frame's pixels
    np.testing.assert_allclose(joints[2, 0, 0], 255 - joints[0, 0, 0], atol=6)   # mirrored
    code, err = run_cli(["joints", "--data", tmp_path / "nowhere"])
    assert code == 2 and "nowhere: dataset folder not found" in err

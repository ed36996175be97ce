"""Donkey-Net through marionet's trainer on paired puppets: logged terms of both passes, resume bit for
bit, two DDP processes equal to one, and a dataset without pairs refused in one line."""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

import marionet
from marionet.cli import main
from marionet.data.puppets import synthesize
from marionet.models.donkeynet import DonkeyNet
from marionet.train import train

from test_train import _ddp_worker, assert_training_moved, free_port

TINY = Path(__file__).parent / "fixtures" / "donkey-net" / "tiny.yaml"
OPTIONS = dict(checkpoint_every=2, batch_size=2, workers=0, progress=False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "pairs"
    synthesize(root, videos=6, frames=8, size=48, kind="humanoid", seed=4, pairs=2, test_fraction=0.34)
    return root


@pytest.fixture()
def config():
    return yaml.safe_load(TINY.read_text())


def rows(run):
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_continues_the_dual_training_exactly(pairs, config, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    train(copy.deepcopy(config), pairs, full, steps=2, **OPTIONS)
    train(copy.deepcopy(config), pairs, split, steps=2, stop_after=1, **OPTIONS)
    assert main(["train", "--config", str(TINY), "--data", str(pairs), "--out", str(split), "--resume", "--steps", "2",
                 "--checkpoint-every", "2", "--batch-size", "2", "--workers", "0"]) == 0
    a, b = rows(full), rows(split)
    assert [r["step"] for r in b] == ["1", "2"]
    assert {f"pass{p}_{k}" for p in (1, 2) for k in ("reconstruction", "feature_matching", "gen_gan", "disc_gan")} <= set(a[0])
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}
    wa, wb = load_file(full / "model.safetensors"), load_file(split / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(".attention." in k for k in wa)
    assert isinstance(marionet.load(full).model, DonkeyNet)                  # the checkpoint carries its config
    assert (full / "visuals" / "step-0000002.png").is_file()


def test_ddp_two_processes_equal_one(pairs, config, tmp_path):
    torch.set_num_threads(1)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    train(copy.deepcopy(config), pairs, single, steps=2, checkpoint_every=2, batch_size=4, workers=0, progress=False,
          dtype=torch.float64)
    mp.spawn(_ddp_worker, args=(2, free_port(), copy.deepcopy(config), str(pairs), str(ddp)), nprocs=2, join=True)
    a, b = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    diff = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert diff < 1e-7, diff
    assert_training_moved(config, tmp_path, a)                           # ...and it trained
    for ra, rb in zip(rows(single), rows(ddp)):
        for key in ra:
            if key != "seconds":
                assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-7), key


def test_unpaired_data_is_refused_in_one_line(tmp_path, capsys):
    synthesize(tmp_path / "plain", videos=2, frames=4, size=48, kind="humanoid", seed=1)
    assert main(["train", "--config", str(TINY), "--data", str(tmp_path / "plain"), "--out", str(tmp_path / "run"),
                 "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "not a paired dataset" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()

"""A model on onnxruntime with the interface the animation pipeline calls (``marionet.export`` writes it).

    model = OnnxModel("vox-onnx")                       # an exported folder
    pipeline = AnimationPipeline(model, model.config)   # streams exactly as with the PyTorch model

``detect``, ``encode_source``, ``background`` and ``generate`` run the exported graphs (torch tensors in
and out); ``transfer_keypoints`` is the family's own float32 code, run on a copy of the family built
without weights (on PyTorch's meta device).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils import _pytree as pytree

from marionet.errors import MarionetError

MANIFEST = "export.json"   # an export folder's description (marionet.export writes it)
FORMAT = 1
EXTRA = "export"           # the pip extra with onnx, onnxscript and onnxruntime


def require(module: str):
    """Import an optional dependency of the export extra, or a one-line error naming the extra."""
    from marionet.errors import require as require_extra

    return require_extra(module, EXTRA)


class OnnxModel(nn.Module):
    """onnxruntime sessions for an exported folder; an ``nn.Module`` without weights, so that the pipeline
    can move it (to the CPU) and set its memory format like any model."""

    native_resolution = False
    image_outputs = ()
    kp_detector = None
    generator = None

    def __init__(self, folder, manifest: dict | None = None, threads: int | None = None):
        super().__init__()
        ort = require("onnxruntime")
        self.folder = Path(folder)
        try:
            manifest = manifest or json.loads((self.folder / MANIFEST).read_text())
            config = self.folder / "config.yaml"  # written last: absent while the export checks itself
            self.config = yaml.safe_load(config.read_text()) if config.is_file() else None
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise MarionetError(f"{self.folder}: not a readable marionet export ({e})") from None
        if manifest.get("format") != FORMAT:
            raise MarionetError(f"{self.folder / MANIFEST}: export format {manifest.get('format')!r}, expected {FORMAT} "
                                "(export it again with this marionet)")
        self.manifest = manifest
        self.keypoint_fields = tuple(manifest["keypoint_fields"])
        self.family = manifest["family"]
        self.spec = pytree.treespec_loads(manifest["features"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.sessions = {}
        for name in manifest["graphs"]:
            path = self.folder / f"{name}.onnx"
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own types for unreadable graphs
                raise MarionetError(f"{path}: not a readable ONNX graph ({' '.join(str(e).split())[:200]})") from None
        self._family = None

    @property
    def family_model(self):
        """The family's code without weights, for ``transfer_keypoints``."""
        if self._family is None:
            from marionet.models import build_model

            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                self._family = build_model(self.config, str(self.folder / "config.yaml"), with_discriminator=False)
        return self._family

    def _run(self, graph: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        session = self.sessions[graph]
        feed = {i.name: np.ascontiguousarray(x.detach().float().cpu().numpy())
                for i, x in zip(session.get_inputs(), inputs)}
        return [torch.from_numpy(y) for y in session.run(None, feed)]

    def detect(self, frames: torch.Tensor) -> dict:
        return dict(zip(self.keypoint_fields, self._run("detector", frames)))

    def encode_source(self, source: torch.Tensor):
        leaves = self._run("encoder", source) if "encoder" in self.sessions else []
        return pytree.tree_unflatten(leaves, self.spec)

    def transfer_keypoints(self, kp_source: dict, kp_driving: dict, kp_initial: dict, relative: bool = True,
                           scale: float = 1.0) -> dict:
        return self.family_model.transfer_keypoints(kp_source, kp_driving, kp_initial, relative, scale)

    def background(self, reference: torch.Tensor, driving: torch.Tensor):
        if "background" not in self.sessions:
            return None
        return self._run("background", reference, driving)[0]

    def generate(self, source, kp_source: dict, kp_driving: dict, source_features=None, background=None) -> dict:
        features = pytree.tree_leaves(source_features) if source_features is not None else \
            pytree.tree_leaves(self.encode_source(source))
        inputs = [source, *features, *(kp_source[k] for k in self.keypoint_fields),
                  *(kp_driving[k] for k in self.keypoint_fields)]
        if "background" in self.sessions:
            if background is None:
                background = torch.eye(2, 3).expand(kp_driving["value"].shape[0], 2, 3)
            inputs.append(background)
        return {"prediction": self._run("generator", *inputs)[0]}

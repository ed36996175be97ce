"""marionet train-predictor: fit the keypoint-trajectory predictor (image-to-video) of a run."""
from __future__ import annotations

import argparse

from marionet.cli.common import positive_int

HELP = "train the keypoint-trajectory predictor of a run whose keypoints carry covariances (for `marionet predict`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="run folder (its model.safetensors) or a checkpoint file")
    p.add_argument("--config", help="config YAML, only for an official *.pth.tar checkpoint (marionet "
                                    "checkpoints carry theirs)")
    p.add_argument("--data", required=True, help="dataset folder the model was trained on (its train split is used)")
    p.add_argument("--steps", type=positive_int, default=2000,
                   help="optimisation steps, rounded up to whole epochs over the windows (default: 2000)")
    p.add_argument("--cell", choices=("gru", "lstm"), default="gru",
                   help="recurrent cell: gru (the official code, default) or lstm (the paper)")
    p.add_argument("--window", type=positive_int,
                   help="frames per training window (default: the config's prediction_params.num_frames, else 32)")
    p.add_argument("--hidden", type=positive_int,
                   help="recurrent state size (default: prediction_params.rnn_params.num_features, else 1024)")
    p.add_argument("--max-videos", type=positive_int, help="use at most this many training videos (default: all)")
    p.add_argument("--seed", type=int, default=0, help="initialisation and window-order seed (default: 0)")
    p.add_argument("--predictor", help="where to write the predictor (default: predictor.safetensors next to "
                                       "the checkpoint)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    import marionet
    from marionet.predict import (PREDICTOR_FILE, extract_keypoints, prediction_defaults, require_covariances,
                                  resolve_run, save_predictor, train_predictor)

    model_path, run_dir = resolve_run(args.checkpoint)
    out = Path(args.predictor) if args.predictor else run_dir / PREDICTOR_FILE
    pipe = marionet.load(checkpoint=model_path, config=args.config, device=args.device)
    require_covariances(pipe, model_path)
    defaults = prediction_defaults(pipe.config)
    window = args.window or defaults["num_frames"]
    sequences = extract_keypoints(pipe, args.data, max_videos=args.max_videos, progress=True)
    frames = sum(len(s["value"]) for s in sequences)
    print(f"keypoints of {len(sequences)} training videos ({frames} frames) from {model_path}")
    num_kp = sequences[0]["value"].shape[1]
    bar = tqdm(unit="epoch", desc="predictor", disable=None)

    def progress(epoch, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    try:
        predictor, summary = train_predictor(
            sequences, num_kp, args.steps, num_frames=window, cell=args.cell,
            num_features=args.hidden or defaults["num_features"], num_layers=defaults["num_layers"],
            dropout=defaults["dropout"], init_frames=defaults["init_frames"], lr=defaults["lr"],
            batch_size=defaults["batch_size"], seed=args.seed, device=pipe.device, callback=progress)
    finally:
        bar.close()
    summary.update(model=model_path.name, predict_covariance=defaults["predict_covariance"])
    save_predictor(out, predictor, summary)
    print(f"wrote {out} ({args.cell}, {predictor.rnn.hidden_size} features; {summary['windows']} windows of "
          f"{window} frames in batches of {defaults['batch_size']}: {summary['steps']} steps over "
          f"{summary['epochs']} epochs; final loss {summary['final_loss']:.4g})")
    return 0

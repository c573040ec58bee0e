"""Package a trained checkpoint as a shipped model: a slim copy plus its JSON model card.

The slim copy keeps what inference, evaluation and optimisation need (weights, configs,
grammar hash, data checksum, split, history) and drops optimizer / scheduler / RNG state.
The card records the data set and checksum, preset, epochs, wall time, machine and the
``molshape evaluate --json`` numbers of the shipped file itself.

Usage:
    python scripts/ship_model.py runs/smiles-gmm-cpu/best.pt zinc-gmm-cpu --preset cpu \
        --command "molshape train ..." [--evaluate-json eval.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from molshape.core.checkpoint import load_checkpoint, save_checkpoint
from molshape.gvae.model import ModelConfig
from molshape.pretrained import pretrained_dir

DROP = ("optimizer", "scheduler", "scaler", "rng")
MAX_BYTES = 25 * 2**20


def slim(ckpt: dict) -> dict:
    out = {k: v for k, v in ckpt.items() if k not in DROP}
    # machine-specific absolute path -> file name; data are found again by name and checksum
    out["data"] = {**ckpt["data"], "source": Path(ckpt["data"]["source"]).name}
    return out


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("name")
    ap.add_argument("--preset", required=True)
    ap.add_argument("--command", required=True, help="the molshape train command that produced it")
    ap.add_argument("--evaluate-json", type=Path, default=None, help="output of molshape evaluate --json")
    ap.add_argument("--note", default="")
    args = ap.parse_args()

    ckpt = slim(load_checkpoint(args.checkpoint))
    dest = pretrained_dir() / f"{args.name}.pt"
    save_checkpoint(ckpt, dest)
    size = dest.stat().st_size
    if size > MAX_BYTES:
        dest.unlink()
        raise SystemExit(f"{dest} is {size / 2**20:.1f} MiB, over the 25 MiB limit")
    last = args.checkpoint.with_name("last.pt")  # the whole run's history, not just up to the best epoch
    history = load_checkpoint(last)["history"] if last.is_file() else ckpt.get("history", [])
    card = {
        "name": args.name,
        "file": dest.name,
        "size_mib": round(size / 2**20, 2),
        "grammar": ckpt["grammar"],
        "grammar_hash": ckpt["grammar_hash"],
        "objective": ModelConfig.from_dict(ckpt["model_config"]).objective.name,
        "preset": args.preset,
        "data": ckpt["data"],
        "split_sizes": {k: int(v.numel()) for k, v in ckpt["split"].items()},
        "model_config": ckpt["model_config"],
        "train_config": ckpt["train_config"],
        "epochs_trained": len(history),
        "best_epoch": ckpt.get("epoch"),
        "best_valid_loss": ckpt.get("best_valid_loss"),
        "train_wall_s": round(sum(h.get("train_s", 0.0) for h in history), 1),
        "machine": machine(),
        "command": args.command,
        "note": args.note,
        "history": history,
    }
    if args.evaluate_json:
        card["evaluate"] = json.loads(args.evaluate_json.read_text())
    card_path = dest.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2, default=str))
    print(f"shipped {dest} ({size / 2**20:.1f} MiB) with card {card_path}")


if __name__ == "__main__":
    main()

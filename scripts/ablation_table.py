"""Tabulate training runs side by side from their metrics.csv: held-out NLL, reconstruction, time.

    python scripts/ablation_table.py runs/ablation-*

Prints one row per run at every epoch it finished (the rows of one budget line up by epoch),
then the headline: the best run's held-out NLL against the first run's, as a ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def read(run: Path) -> tuple[list[dict[str, str]], dict]:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    return rows, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    print(f"{'run':<22} {'epoch':>5} {'train s':>8} {'mol/s':>6} {'lr':>8} "
          f"{'train NLL':>9} {'valid NLL':>9} {'rule acc':>8} {'recon':>6}")
    finals = []
    for run in args.runs:
        if not (run / "metrics.csv").is_file():
            print(f"{run.name:<22} (no metrics yet)")
            continue
        rows, _ = read(run)
        seconds = 0.0
        for r in rows:
            seconds += float(r["train_s"])
            print(f"{run.name:<22} {r['epoch']:>5} {seconds:>8.0f} {float(r['items_per_s']):>6.1f} "
                  f"{float(r['lr']):>8.2g} {float(r['train_rec']):>9.2f} {float(r['valid_rec']):>9.2f} "
                  f"{float(r['valid_acc_rule']):>8.3f} {float(r['valid_recon_acc']) * 100:>5.1f}%")
        finals.append((run.name, float(rows[-1]["valid_rec"]), float(rows[-1]["valid_recon_acc"])))
    if len(finals) >= 2:
        ranked = sorted(finals, key=lambda f: f[1])
        best = ranked[0]
        # against the first run (the baseline), or against the runner-up when the baseline wins
        first = finals[0] if finals[0] is not best else ranked[1]
        print(f"ablation: {first[1] / best[1]:.2f}x lower held-out NLL for {best[0]} ({best[1]:.2f} nats, "
              f"recon {best[2] * 100:.1f}%) than {first[0]} ({first[1]:.2f} nats, recon {first[2] * 100:.1f}%)")


if __name__ == "__main__":
    main()

"""Does mixed_bfloat16 train as well as float32? docs/performance.md ("bfloat16: does it
train as well?"). Not part of the package; run from the repository's root:

  .venv/bin/python docs/precision_study.py runs/precision_study

Trains README's results recipe (the seen-people model: 32 base filters, 1000-d bottleneck,
batch 32, 100 epochs on the bundled faces) in float32 and in mixed_bfloat16 with seeds 0,
1 and 2 (the seed also draws the validation split, so each seed is scored on its own 31
images, the same for both precisions), evaluates each run's ``best.keras`` on its
validation split, and prints, per seed and precision, the best validation reconstruction
loss (``log.csv``) and the core PSNR (``evaluate``), then the gap between the precisions
next to the spread across seeds. A run already finished in the folder is not trained
again. About 5 minutes a run on a 2-core CPU.
"""
import csv
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACES = os.path.join(REPO, "ctxenc_tf", "assets", "faces")
RECIPE = ["--gen-filters", "32", "--disc-filters", "32", "--bottleneck", "1000", "--batch-size", "32",
          "--epochs", "100"]
PRECISIONS = ("float32", "mixed_bfloat16")
SEEDS = (0, 1, 2)


def run(out: str, precision: str, seed: int) -> dict:
    """Train (unless done) and evaluate one run; its best val_rec_loss and core PSNR."""
    folder = os.path.join(out, f"{precision}-s{seed}")
    if not os.path.exists(os.path.join(folder, "final.keras")):
        subprocess.run([sys.executable, "train.py", "--data-dir", FACES, "--output-dir", folder, *RECIPE,
                        "--seed", str(seed), "--precision", precision, "--progress", "off"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    evaluation = os.path.join(folder, "eval_val")
    subprocess.run([sys.executable, "-m", "ctxenc_tf", "evaluate", "--model", os.path.join(folder, "best.keras"),
                    "--data-dir", FACES, "--split", "val", "--out", evaluation],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(folder, "log.csv")) as f:
        rows = [row for row in csv.DictReader(f) if row["partial"] == "0"]
    with open(os.path.join(evaluation, "metrics.json")) as f:
        psnr = json.load(f)["metrics"]["model"]["core"]["psnr_db"]["mean"]
    best = min(rows, key=lambda row: float(row["val_rec_loss"]))
    return {"val_rec_loss": float(best["val_rec_loss"]), "best_epoch": int(best["epoch"]) + 1, "core_psnr": psnr}


def main(out: str) -> None:
    results = {(p, s): run(out, p, s) for s in SEEDS for p in PRECISIONS}
    print("| seed | precision | best val_rec_loss (epoch) | core PSNR (dB) |")
    print("|---:|---|---:|---:|")
    for (p, s), r in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        print(f"| {s} | {p} | {r['val_rec_loss']:.5f} ({r['best_epoch']}) | {r['core_psnr']:.2f} |")
    print()
    print("| measure | float32 mean (sd over seeds) | mixed_bfloat16 mean (sd) | gap per seed, bf16 - f32 |")
    print("|---|---:|---:|---|")
    for key, digits in (("val_rec_loss", 5), ("core_psnr", 2)):
        values = {p: [results[p, s][key] for s in SEEDS] for p in PRECISIONS}
        gaps = [b - a for a, b in zip(values["float32"], values["mixed_bfloat16"])]
        cells = [f"{statistics.mean(v):.{digits}f} ({statistics.stdev(v):.{digits}f})" for v in values.values()]
        print(f"| {key} | {cells[0]} | {cells[1]} | {', '.join(f'{g:+.{digits}f}' for g in gaps)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "runs", "precision_study"))

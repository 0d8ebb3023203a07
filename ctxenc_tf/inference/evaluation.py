"""Measuring a model against the mean-fill and Telea baselines on the same holes: per-image
scores, summaries, the Markdown table and the worst/best grid. The command and the
metric definitions are in :mod:`ctxenc_tf.cli.evaluate`."""

import csv
import io
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from ctxenc_tf import schemas
from ctxenc_tf.config import ModelConfig, training_data
from ctxenc_tf.data import hole_masks, pipeline, screening, sources
from ctxenc_tf.data.fingerprint import split_names, split_record
from ctxenc_tf.errors import ConfigError, DataError
from ctxenc_tf.faces.alignment import Frame
from ctxenc_tf.faces.detector import MIN_FACE, select_faces
from ctxenc_tf.inference import baselines
from ctxenc_tf.inference.face_jobs import face_image
from ctxenc_tf.inference.photos import PhotoError, read_photo
from ctxenc_tf.model import masks, metrics
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.pixels import signed_to_uint8

SPLITS = ("test", "val", "train", "all")

OUTPUT_FILES = ("metrics.md", "metrics.json", "per_image.csv", "worst_best.png")

# Every method is scored on the same pixels: its fill of the hidden core, with the overlap
# ring pasted back from the truth (the original code's test paste), so a method that sees the
# ring (the model) and methods that only fill the core (the baselines) compare alike.
REGIONS = ("core", "hole", "image")

REGION_CAPTION = ("core = the hidden core of the hole (what no method saw; the main score); "
                  "hole = the whole hole with the overlap ring pasted back from the truth for "
                  "every method, as the original code's test does; image = the whole image so "
                  "pasted")

METRICS = (("l1_pct", "L1 (%)", "{:.2f}"), ("l2_pct", "L2 (%)", "{:.2f}"),
           ("psnr_db", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"))

METHOD_NAMES = {"model": "context encoder", "mean": "mean-colour fill", "telea": "Telea (OpenCV)"}


def list_files(data_dir: str, split: str, config: ModelConfig, split_file: str = "") -> tuple:
    """``(files, description, note)`` to evaluate. CelebA: its official ``split``. A folder:
    ``all`` its images, or ``train`` / ``val`` as the model's training run split it (its
    seed, ``val_fraction`` and limits), checked against the split the run recorded
    (:func:`check_run_split`; ``split_file``: where the run's ``split.json`` may be).
    ``note`` is a line to show ('' when none). Raises :class:`DataError`."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: data directory does not exist")
    if sources.celeba_layout(data_dir):
        if split == "all":
            raise DataError("--split all: CelebA has train, val and test splits")
        return sources.list_celeba(data_dir, split), f"CelebA {split} split", ""
    if split == "test":
        raise DataError(f"--split test: {data_dir} is a plain folder (no CelebA partition "
                             "file); use --split all, or val/train for the training run's split")
    if split == "all":
        files = sources.list_image_folder(data_dir)
        if not files:
            raise DataError(f"{data_dir}: no image files ({', '.join(screening.IMAGE_EXTENSIONS)})")
        return files, "all images of the folder", ""
    run = training_data(config, data_dir=data_dir)
    chosen = sources.find_split(run)
    note = check_run_split(config, chosen, data_dir, split_file)
    files = chosen.val if split == "val" else chosen.train
    return files, (f"{split} split of the folder (seed {run.seed}, "
                   f"val_fraction {run.val_fraction}, as train.py splits it)"), note


def check_run_split(config: ModelConfig, chosen: sources.Split, data_dir: str, split_file: str = "") -> str:
    """Check that ``chosen``, the split of ``data_dir`` rebuilt from its files as they are
    now, is the split of the run that trained the model, as ``config.trained_on["split"]``
    records it (:func:`~ctxenc_tf.data.fingerprint.split_record`). Returns a note for a
    model that records none (trained before runs recorded their split), else ''.

    Raises :class:`DataError`, one line, when the files changed since: training images
    could now be in the held-out set. With the run's ``split.json`` at ``split_file`` the line
    says how many files were added and removed, else how many images each part had."""
    recorded = config.trained_on.get("split")
    if recorded is None:
        return ("note: the model records no split (trained on prepared records, or before runs recorded "
                "theirs); this is the folder's split rebuilt from its files as they are now")
    if split_record(chosen.train, chosen.val, data_dir) == recorded:
        return ""
    where = f"{data_dir}: not the split the model was trained with"
    names = _recorded_names(split_file, recorded)
    if names is None:
        raise DataError(f"{where} (then {recorded['train']} train / {recorded['val']} val images, now "
                        f"{len(chosen.train)} / {len(chosen.val)}, or other files): files were added, "
                        "removed or renamed since; use --split all, or restore the folder")
    then, now = set(names["train"] + names["val"]), set(split_names(chosen.train + chosen.val, data_dir))
    added, removed = len(now - then), len(then - now)
    change = (f"{added} file(s) added, {removed} removed since" if added or removed
              else "the same files, split with other settings (--seed, --val-fraction, limits)")
    raise DataError(f"{where} ({change}, per {split_file}); use --split all, or restore the folder")


def _recorded_names(split_file: str, recorded: dict):
    """The names in the run's ``split.json`` at ``split_file``; ``None`` when there is none
    there or it is another run's (its names are not the ``recorded`` split)."""
    try:
        names = schemas.read_split(split_file)
    except FileNotFoundError:
        return None
    # the names are relative to the data folder already: to the current directory they stay
    return names if split_record(names["train"], names["val"], os.curdir) == recorded else None


def eval_dataset(files, config: ModelConfig, batch_size: int, seed: int = 0, stretch: bool = False):
    """Batches of ``(paths, images, masks)``: ``paths`` ``[B]`` string, ``images``
    ``[B, S, S, 3]`` float32 in ``[0, 1]``, ``masks`` ``[B, S, S, 1]`` in ``{0, 1}``.

    The i-th file always gets the same mask (stateless seed ``(seed, i)``); files
    that fail to decode are dropped with their path, so rows never shift.
    """
    s = config.image_size

    def load(path, index):
        image = (pipeline.load_image(path, s, stretch) + 1.0) / 2.0
        pair = tf.stack([tf.constant(seed, tf.int32), tf.cast(index, tf.int32)])
        return path, image, hole_masks.make_mask(config.mask_type, s, config.hole_size, pair)

    ds = tf.data.Dataset.from_tensor_slices((pipeline.path_bytes(files), tf.range(len(files))))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def measure(filled, target, region) -> dict:
    """Per-image metrics of ``filled`` against ``target`` (``[N, S, S, 3]`` float32 in
    ``[0, 1]``) on ``region`` (``[N, S, S, 1]`` in ``{0, 1}``): ``{name: [N] float}`` with
    ``l1_pct``, ``l2_pct`` (x 100), ``psnr_db`` and ``ssim``."""
    x, y = np.asarray(filled) * 2.0 - 1.0, np.asarray(target) * 2.0 - 1.0  # metrics take [-1, 1]
    return {"l1_pct": 100.0 * np.asarray(metrics.masked_l1(x, y, region)),
            "l2_pct": 100.0 * np.asarray(metrics.masked_mse(x, y, region)),
            "psnr_db": np.asarray(metrics.masked_psnr(x, y, region)),
            "ssim": np.asarray(metrics.masked_ssim(x, y, region))}


def fill_all(runner, images, hole, hidden, methods) -> dict:
    """``{method: filled [N, S, S, 3] in [0, 1]}``: the model given ``hole``, each baseline
    in ``methods`` given the ``hidden`` part of it (both ``[N, S, S, 1]`` in ``{0, 1}``);
    every method's result keeps the truth outside ``hidden`` (overlap ring included)."""
    out = {"model": runner.inpaint(images, hole)[0]}
    for name in methods:
        out[name] = baselines.BASELINES[name](images, hidden)
    return {name: np.where(hidden > 0, filled, images) for name, filled in out.items()}


def summarise(rows, methods) -> dict:
    """``{method: {region: {metric: {"mean", "std"}}}}`` over the per-image ``rows``."""
    summary = {}
    for method in methods:
        summary[method] = {
            region: {key: {"mean": float(np.mean([r[f"{method}/{region}/{key}"] for r in rows])),
                           "std": float(np.std([r[f"{method}/{region}/{key}"] for r in rows]))}
                     for key, _, _ in METRICS}
            for region in REGIONS}
    return summary


def markdown_table(summary: dict) -> str:
    """The summary as a Markdown table: one row per method and region."""
    lines = ["| method | region | " + " | ".join(title for _, title, _ in METRICS) + " |",
             "|---|---|" + "---:|" * len(METRICS)]
    for method, regions in summary.items():
        for region, values in regions.items():
            cells = [fmt.format(values[key]["mean"]) for key, _, fmt in METRICS]
            lines.append(f"| {METHOD_NAMES[method]} | {region} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Extremes:
    """Keeps the ``count`` lowest- and highest-scoring cases seen so far with their tiles."""

    def __init__(self, count: int):
        self.count, self.cases = count, []

    def add(self, score: float, label: str, tiles: list):
        self.cases.append((score, label, tiles))
        if len(self.cases) > 2 * self.count:
            self.cases.sort(key=lambda c: c[0])
            self.cases = self.cases[:self.count] + self.cases[-self.count:]

    def worst_and_best(self):
        """``(worst, best)`` lists of ``(score, label, tiles)``, worst first / best first."""
        ordered = sorted(self.cases, key=lambda c: c[0])
        n = min(self.count, len(ordered) // 2) if len(ordered) > 1 else len(ordered)
        return ordered[:n], ordered[::-1][:n]


def grid_png(worst, best, columns) -> bytes:
    """PNG: a header of column names, then the worst rows and the best rows, each row
    labelled with its rank and core PSNR; tiles ``[S, S, 3]`` uint8."""
    from PIL import Image, ImageDraw, ImageFont

    rows = [(f"worst {i + 1}", s, t) for i, (s, _, t) in enumerate(worst)]
    rows += [(f"best {i + 1}", s, t) for i, (s, _, t) in enumerate(best)]
    s = rows[0][2][0].shape[0]
    label_w, header_h, gap = 84, 22, 6
    height = header_h + len(rows) * s + (gap if worst and best else 0)
    canvas = Image.new("RGB", (label_w + len(columns) * s, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    for j, name in enumerate(columns):
        draw.text((label_w + j * s + 4, 4), name, fill="black", font=font)
    y = header_h
    for i, (label, score, tiles) in enumerate(rows):
        if i == len(worst) and worst:
            y += gap
        draw.text((4, y + s // 2 - 14), f"{label}\n{score:.1f} dB", fill="black", font=font)
        for j, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(tile), (label_w + j * s, y))
        y += s
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def evaluation_config(config: ModelConfig, mask_type) -> ModelConfig:
    """The model's config with the holes to evaluate on; a centre model only takes centre
    holes. Raises :class:`ConfigError`."""
    if mask_type is None or mask_type == config.mask_type:
        return config
    if not config.takes_any_hole:
        raise ConfigError(f"--mask-type={mask_type}: the model was trained with centre holes "
                          "and predicts only the centre")
    if not config.predicts_full_image and mask_type == "random_region":
        raise ConfigError(f"--mask-type={mask_type}: the model fills a {config.hole_size}px square; "
                          "regions can reach past it (use center or random_square)")
    return config.replace(mask_type=mask_type)


def face_batches(files, config: ModelConfig, detector, batch_size: int, seed: int = 0,
                 max_faces: int | None = None, min_face: float = MIN_FACE, counts: dict | None = None):
    """Batches of ``(labels, images, masks)`` like :func:`eval_dataset`, one example per
    usable face of the photos in ``files``, aligned into the model's square as CelebA's crops
    (:class:`~ctxenc_tf.faces.alignment.Frame`); labels ``<path>#face<k>`` (1 = largest).

    The i-th face gets the same mask as :func:`eval_dataset` gives the i-th file. ``counts``
    (when given) gathers ``photos``, ``faces``, ``no_face`` and ``unreadable`` (lists of
    paths with the reason) and ``left_out`` (one line per face not taken)."""
    s = config.image_size
    counts = {} if counts is None else counts
    for key in ("no_face", "unreadable", "left_out"):
        counts.setdefault(key, [])
    counts.update(photos=0, faces=0)
    labels, images, holes = [], [], []
    for path in files:
        try:
            photo = read_photo(path)
        except PhotoError as e:
            counts["unreadable"].append((path, str(e)))
            continue
        counts["photos"] += 1
        faces, notes = select_faces(detector.detect(photo.rgb), max_faces, min_face)
        counts["left_out"] += [f"{path}: {note}" for note in notes]
        if not faces:
            counts["no_face"].append(path)
        for k, face in enumerate(faces, 1):
            pair = tf.constant([seed, counts["faces"]], tf.int32)
            counts["faces"] += 1
            labels.append(os.fsencode(f"{path}#face{k}"))
            images.append(face_image(photo.rgb, Frame.for_face(face.landmarks, s)))
            holes.append(hole_masks.make_mask(config.mask_type, s, config.hole_size, pair).numpy())
            if len(labels) == batch_size:
                yield _as_batch(labels, images, holes)
                labels, images, holes = [], [], []
    if labels:
        yield _as_batch(labels, images, holes)


def _as_batch(labels, images, holes) -> tuple:
    return (np.array(labels, object), np.stack(images),
            np.stack(holes).astype(np.float32))


def run_evaluation(runner, config: ModelConfig, batches, data_dir: str, baseline_names=(),
                   grid_count: int = 4, progress_bar: bool = False, total: int | None = None) -> tuple:
    """Fill and measure every example of ``batches`` (:func:`eval_dataset` or
    :func:`face_batches`; ``total`` examples expected, counted by a tqdm bar on stderr
    with ``progress_bar``). Returns ``(rows, extremes, seconds)``: one dict of numbers per example (``file`` relative to
    ``data_dir``, then ``method/region/metric``, regions :data:`REGIONS`), the
    :class:`Extremes` by the model's core PSNR, the time taken."""
    from tqdm import tqdm

    methods = ["model"] + list(baseline_names)
    fill = np.asarray(config.fill_value or (0.0, 0.0, 0.0), np.float32) / 2.0 + 0.5
    rows, extremes, started = [], Extremes(grid_count), time.monotonic()
    bar = tqdm(total=total, unit="image", disable=not progress_bar, file=sys.stderr)
    for paths, images, hole in batches:
        images, hole = np.asarray(images), np.asarray(hole)
        hidden = masks.hidden_region(hole, config.overlap).numpy()
        filled = fill_all(runner, images, hole, hidden, baseline_names)
        regions = {"core": hidden, "hole": hole, "image": np.ones_like(hole)}
        scores = {(m, region): measure(filled[m], images, regions[region])
                  for m in methods for region in REGIONS}
        masked = images * (1.0 - hidden) + fill * hidden  # what the network sees
        for i, path in enumerate(np.asarray(paths)):
            row = {"file": os.path.relpath(os.fsdecode(path), data_dir)}
            row.update({f"{m}/{r}/{k}": float(v[k][i]) for (m, r), v in scores.items() for k in v})
            rows.append(row)
            tiles = [masked[i]] + [filled[m][i] for m in methods] + [images[i]]
            extremes.add(row["model/core/psnr_db"], row["file"],
                         list(signed_to_uint8(np.stack(tiles) * 2.0 - 1.0).numpy()))
        bar.update(len(images))
    bar.close()
    return rows, extremes, time.monotonic() - started


def write_outputs(out_dir: str, report: dict, rows, extremes, columns) -> str:
    """Write ``metrics.md``, ``metrics.json`` (``report`` plus the summary and the extreme
    cases), ``per_image.csv`` and ``worst_best.png`` atomically. Returns the table."""
    summary = summarise(rows, ["model"] + report["baselines"])
    table = markdown_table(summary)
    worst, best = extremes.worst_and_best()
    c = ModelConfig.from_dict(report["config"])
    heading = (f"Evaluation of `{report['model']}` ({report['model_kind']}) on "
               f"{report['images']} images: {report['split_description']} of "
               f"`{report['data_dir']}`. {c.image_size}x{c.image_size} images, {c.mask_type} "
               f"hole {c.hole_size}x{c.hole_size} (overlap {c.overlap}). Regions: {REGION_CAPTION}. "
               "Images in [0, 1]; L1/L2 = mean absolute/squared error x 100; PSNR and SSIM "
               "averaged per image; SSIM over 11x11 Gaussian windows centred in the region.")
    atomic.write_bytes(os.path.join(out_dir, "metrics.md"), f"{heading}\n\n{table}\n".encode())
    report = {**report, "metrics": summary,
              "worst": [{"file": f, "core_psnr_db": p} for p, f, _ in worst],
              "best": [{"file": f, "core_psnr_db": p} for p, f, _ in best]}
    atomic.write_bytes(os.path.join(out_dir, "metrics.json"), json.dumps(report, indent=2).encode())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    # A file name that is not UTF-8 is written back as the bytes it has on disk.
    atomic.write_bytes(os.path.join(out_dir, "per_image.csv"), buffer.getvalue().encode("utf-8", "surrogateescape"))
    atomic.write_bytes(os.path.join(out_dir, "worst_best.png"), grid_png(worst, best, columns))
    return table

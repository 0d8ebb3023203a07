"""A local web app: open a photo, paint the hole, get the fill.

    python -m ctxenc_tf app --model runs/faces128/best.keras

serves a Gradio page on http://127.0.0.1:7860 (the address is printed). The model (a
``.keras`` checkpoint, a SavedModel or a ``.tflite`` file; with ``--serving-url`` a model
served by TensorFlow Serving) is loaded once. A photo is filled exactly as the inpaint
command fills it (the same reading, window, blend and PNG code): the download is a
lossless PNG at the photo's resolution with every pixel outside the hole unchanged, and
``<name>_hole.png`` beside it repeats the fill with ``inpaint --mask``. Models trained with
random masks take a hole painted with the brush; centre-hole models fill their centre
square, drawn on the photo. Uploads and results stay in a temporary folder (in memory
where ``/dev/shm`` exists) deleted when the app stops.
"""

import argparse
import functools
import glob
import logging
import os
import re
import shutil
import signal
import sys
import tempfile

import numpy as np
from PIL import Image, ImageFilter

from ctxenc_tf.cli.common import bounded, command_parser, printable
from ctxenc_tf.data.sources import BUNDLED_FACES
from ctxenc_tf.errors import CheckpointError, ConfigError, CtxencError, one_line
from ctxenc_tf.inference.formats import find_config
from ctxenc_tf.inference.inpaint import fill_jobs, filled_png
from ctxenc_tf.inference.photos import (
    bounds,
    centre_hole,
    centre_window,
    encode_png,
    fit_mask,
    prepare,
    read_photo,
)
from ctxenc_tf.inference.runner import load_runner
from ctxenc_tf.inference.serving_client import ServingRunner
from ctxenc_tf.training.fit import RUN_FILES

RUNS = "runs"
CHECKPOINTS = (RUN_FILES["best"], RUN_FILES["final"])  # what train writes
EXAMPLES = ("video-WolfgangLanger_Pexels__0001__0.jpg", "video-single_face__0002__0.jpg",
            "video-carphone_pristine__0002__0.jpg")
DISPLAY_MAX_SIDE = 1600  # the page shows (and the brush paints) photos at most this large
MAX_UPLOAD = "64mb"
FILL_PREFIX = "fill-"  # the folder of one fill's downloads, below the app's work folder
KEEP_FILLS = 8  # the downloads of this many newest fills stay available
OUTLINE = (255, 32, 32)
BRUSH = "rgb(255, 32, 32)"
# The editor's own "Clear canvas" also removes the photo; the page's "Clear the hole" keeps it.
CSS = '#canvas button[aria-label="Clear canvas"] { display: none; }'


def newest_checkpoint(root: str = RUNS) -> str | None:
    """The most recently written ``best.keras`` / ``final.keras`` below ``root``, or ``None``."""
    found = [os.path.join(d, n) for d, _, names in os.walk(root) for n in names if n in CHECKPOINTS]
    return max(found, key=os.path.getmtime, default=None)


def open_model(model: str | None, serving_url: str | None):
    """The runner for ``--model`` / ``--serving-url`` (the newest checkpoint under
    ``runs/`` when neither names one). Raises :class:`CheckpointError` with one line."""
    if serving_url:
        if not model:
            raise CheckpointError("--serving-url needs --model EXPORT_DIR: the export the server "
                                  "loads, whose config.json holds the hole settings it does not report")
        directory = model if os.path.isdir(model) else os.path.dirname(model)
        return ServingRunner(serving_url, find_config(directory, levels=3, what=model))
    if not model:
        model = newest_checkpoint()
        if model is None:
            raise CheckpointError(f"no --model given and no checkpoint under {RUNS}/; make one with "
                                  "python -m ctxenc_tf train (a demo on the bundled faces) or pass --model PATH")
        print(f"no --model: using the newest checkpoint under {RUNS}/, {model}")
    return load_runner(model)


def shrink(pixels: np.ndarray) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 3]`` uint8 scaled to at most :data:`DISPLAY_MAX_SIDE` (the page's copy)."""
    h, w = pixels.shape[:2]
    scale = DISPLAY_MAX_SIDE / max(h, w)
    if scale >= 1:
        return pixels
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))


def outlined(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The page's copy of ``rgb`` ``[H, W, 3]`` uint8 with a line drawn just outside
    ``hole`` ``[H, W]`` bool (drawn after shrinking, so it stays visible)."""
    shown = shrink(rgb).copy()
    small = np.asarray(Image.fromarray(hole.astype(np.uint8) * 255).resize(shown.shape[1::-1], Image.BILINEAR))
    if small.any():  # grown by 2 pixels around the hole's box only: the whole photo takes 10x longer
        y0, y1, x0, x1 = bounds(small > 0)
        box = np.s_[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3]
        grown = np.asarray(Image.fromarray(small[box]).filter(ImageFilter.MaxFilter(5))) > 0
        shown[box][grown & (small[box] == 0)] = OUTLINE
    return shown


def painted_hole(canvas) -> np.ndarray | None:
    """The brush strokes of an ImageEditor value (``layers``: ``[h, w, 4]`` RGBA uint8) as
    ``[h, w]`` bool, True where any stroke covers a pixel; ``None`` when nothing is painted."""
    layers = (canvas or {}).get("layers") or []
    hole = np.any([np.asarray(layer)[..., 3] > 0 for layer in layers], axis=0) if layers else None
    return hole if hole is not None and hole.any() else None


def error_line(text: str, path: str = "") -> str:
    """A refusal as the page shows it: the command line's one line (:func:`printable`) in
    Markdown, naming the upload as the user knows it, not by Gradio's copy at ``path``; a
    file name's Markdown characters are escaped, so a name cannot make a link or markup."""
    text = printable(text.replace(path, os.path.basename(path)) if path else text)
    return "**error:** " + re.sub(r"([\\`*_\[\]<>~|])", r"\\\1", text)


def show_photo(config, path):
    """An upload (``path`` in Gradio's upload folder, or ``None``) -> ``(canvas, status)``:
    the photo to paint on (an ImageEditor value) for models that take drawn holes, else
    the photo with the centre hole outlined (``[h, w, 3]`` uint8); or why it is refused."""
    if not path:
        return None, ""
    try:
        photo = read_photo(path)
    except (CtxencError, OSError) as e:
        return None, error_line(f"{path}: {one_line(e)}", path)
    shape = photo.rgb.shape[:2]
    if config.takes_any_hole:
        shown = shrink(photo.rgb)
        canvas = {"background": shown, "layers": [], "composite": shown}
        note = "Paint over what should go, then press **Fill**."
    else:
        canvas = outlined(photo.rgb, centre_hole(shape, centre_window(shape), config))
        note = "Press **Fill** to fill the outlined square."
    return canvas, f"{shape[1]}x{shape[0]} {photo.mode} photo. {note}"


def fill_photo(runner, work_dir: str, path, canvas=None):
    """Fill the photo at ``path`` (with the hole painted on ``canvas`` for models that take
    drawn holes) as the inpaint command does -> ``(status, original with the hole outlined,
    filled, [<name>_filled.png, <name>_hole.png])``, the images ``[h, w, 3]`` uint8 page
    copies and the PNGs full size in a new folder below ``work_dir``; on a refusal
    ``(status, None, None, None)``."""
    refused = (None, None, None)
    if not path:
        return error_line("drop a photo or pick an example first"), *refused
    try:
        photo = read_photo(path)
        hole = None
        if runner.config.takes_any_hole:
            hole = painted_hole(canvas)
            if hole is None:
                return error_line("paint over what should go first"), *refused
            hole = fit_mask(hole, photo.rgb.shape[:2], "painted on the page")
        job = prepare(photo, runner.config, hole)
        [filled] = fill_jobs(runner, [[job]])
    except (CtxencError, OSError) as e:
        return error_line(one_line(e), path), *refused
    # A long-running app must not fill memory: only the newest fills' downloads are kept.
    fills = sorted(glob.glob(os.path.join(work_dir, FILL_PREFIX + "*")), key=os.path.getmtime)
    for old in fills[:max(0, len(fills) - KEEP_FILLS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    out_dir = tempfile.mkdtemp(prefix=FILL_PREFIX, dir=work_dir)
    stem = os.path.splitext(os.path.basename(path))[0]
    files = [os.path.join(out_dir, f"{stem}_filled.png"), os.path.join(out_dir, f"{stem}_hole.png")]
    for name, data in zip(files, (filled_png([job], filled), encode_png(job.hole.astype(np.uint8) * 255))):
        with open(name, "wb") as f:
            f.write(data)
    h, w = filled.shape[:2]
    return (f"Filled a {job.hole.sum()}-pixel hole; the {w}x{h} PNG is below.",
            outlined(photo.rgb, job.hole), shrink(filled), files)


def build(runner, work_dir: str):
    """The Gradio page (``gradio.Blocks``) for ``runner``; results go below ``work_dir``."""
    import gradio as gr

    drawn = runner.config.takes_any_hole

    def upload(path):
        return *show_photo(runner.config, path), None, None, None

    # Uploads Gradio keeps (in RAM where /dev/shm is used) are deleted after an hour, checked hourly.
    with gr.Blocks(title="ctxenc-tf inpainting", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"# Context encoder inpainting\n{runner.describe()}")
        with gr.Row():
            with gr.Column():
                # Any file type: read_photo judges it and says why one is refused.
                photo = gr.File(label="Photo: drop or click to upload", type="filepath", elem_id="photo")
                gr.Examples([os.path.join(BUNDLED_FACES, name) for name in EXAMPLES], inputs=photo,
                            label="or pick an example")
            with gr.Column():
                if drawn:
                    canvas = gr.ImageEditor(label="Paint the hole", type="numpy", image_mode="RGBA",
                                            sources=(), transforms=(), layers=False, format="png",
                                            brush=gr.Brush(colors=[BRUSH], color_mode="fixed"),
                                            elem_id="canvas")
                    clear = gr.Button("Clear the hole", size="sm", elem_id="clear")
                else:
                    canvas = gr.Image(label="The hole this model fills", interactive=False,
                                      format="jpeg", buttons=["fullscreen"], elem_id="canvas")
                    gr.Markdown("This model was trained with centre holes only: it fills the square "
                                "in the middle of the photo, so there is no brush. Models trained with "
                                "`--mask-type random_region` or `random_square` take painted holes.")
        button = gr.Button("Fill", variant="primary", elem_id="fill")
        status = gr.Markdown(elem_id="status")
        with gr.Row():  # page copies as JPEG: a PNG of a large photo takes longer than its fill
            before = gr.Image(label="Original, hole outlined", interactive=False, format="jpeg",
                              buttons=["fullscreen"])
            after = gr.Image(label="Filled (the download below is full size)", interactive=False,
                             format="jpeg", buttons=["fullscreen"])
        downloads = gr.File(label="Download: lossless PNG at full resolution, and the hole for inpaint --mask",
                            file_count="multiple", interactive=False, elem_id="downloads")
        photo.change(upload, photo, [canvas, status, before, after, downloads])
        if drawn:
            def clear_hole(path):
                canvas_value, note = show_photo(runner.config, path)
                return canvas_value, f"Hole cleared. {note}" if canvas_value is not None else note

            clear.click(clear_hole, photo, [canvas, status])
        # A centre-hole model needs only the photo: the page's copy of it is not sent back.
        # While it works, Gradio shows its progress (a spinner and a timer) on the outputs.
        button.click(functools.partial(fill_photo, runner, work_dir), [photo, canvas] if drawn else [photo],
                     [status, before, after, downloads])
    return page


def serving_url(text: str) -> str:
    """``--serving-url``: a model's REST address, ``http(s)://HOST:PORT/v1/models/NAME``."""
    if not re.fullmatch(r"https?://[^/\s]+/v1/models/[^/\s:]+(/versions/\d+)?/?", text):
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT/v1/models/NAME, got {text!r}")
    return text


def parse_args(argv):
    p = command_parser("app", __doc__)
    p.add_argument("--model", help="a .keras checkpoint, a SavedModel export directory or a .tflite "
                                   "file (default: the newest checkpoint under runs/); with "
                                   "--serving-url, the export the server loads")
    p.add_argument("--serving-url", metavar="URL", type=serving_url,
                   help="fill with a model served by TensorFlow Serving, e.g. "
                        "http://localhost:8501/v1/models/ctxenc (REST, its inpaint signature)")
    p.add_argument("--port", type=bounded(int, 1, 65535), default=7860, help="port (default 7860)")
    p.add_argument("--listen", action="store_true",
                   help="accept connections from the network, not only from this machine")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    runner = open_model(args.model, args.serving_url)
    # The first model call pays one-time costs (kernel selection, buffers); pay them now.
    size = runner.config.image_size
    runner.inpaint(np.zeros((1, size, size, 3), np.float32), runner.centre_masks(1))
    shm = "/dev/shm"
    work_dir = tempfile.mkdtemp(prefix="ctxenc-app-", dir=shm if os.access(shm, os.W_OK) else None)
    # Gradio keeps uploads in GRADIO_TEMP_DIR, read when it is imported: the private folder.
    os.environ["GRADIO_TEMP_DIR"] = work_dir
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        try:
            import gradio as gr
        except ImportError as e:
            raise ConfigError("the app needs Gradio: pip install -r requirements.txt "
                              "(or pip install -e '.[app]')") from e

        host = "0.0.0.0" if args.listen else "127.0.0.1"
        if args.listen:
            print(f"warning: --listen: anyone who can reach this machine on port {args.port} can "
                  "use the app and upload photos to it, without a password", file=sys.stderr)
        # A browser that drops an upload midway (tab closed, file replaced) is no server
        # error: keep uvicorn from printing a traceback for it.
        logging.getLogger("uvicorn.error").addFilter(
            lambda record: not (record.exc_info and type(record.exc_info[1]).__name__ == "ClientDisconnect"))
        page = build(runner, work_dir)
        # System fonts: the default theme would fetch Google Fonts, which a closed network blocks.
        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                  font_mono=["ui-monospace", "monospace"])
        try:  # one fill at a time: a TFLite interpreter must not run on two threads at once
            _, url, _ = page.queue(default_concurrency_limit=1).launch(
                server_name=host, server_port=args.port, share=False, quiet=True, prevent_thread_lock=True,
                max_file_size=MAX_UPLOAD, allowed_paths=[BUNDLED_FACES], theme=theme, css=CSS,
                ssr_mode=False, footer_links=[])
        except OSError as e:  # Gradio's words name its own API ("server_port"), not our flag
            raise ConfigError(f"--port {args.port}: cannot listen on {host}:{args.port} "
                              f"({str(e).split('. ')[0]}); pick another port") from e
        print(f"ctxenc-tf app on {url} ({runner.describe()}); Ctrl+C stops it", flush=True)
        # SIGTERM (kill, a service manager) stops it as Ctrl+C does, so the folder is removed.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        page.block_thread()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0

"""A local web app: open a photo, paint the hole, get the fill.

    python -m ctxenc_tf app --model runs/faces128/best.keras

serves a Gradio page on http://127.0.0.1:7860 (the address is printed). The model (a
``.keras`` checkpoint, a SavedModel or a ``.tflite`` file; with ``--serving-url`` a model
served by TensorFlow Serving) is loaded once. A photo is filled exactly as the inpaint
command fills it (the same reading, window, blend and PNG code): the download is a
lossless PNG at the photo's resolution with every pixel outside the hole unchanged, and
``<name>_hole.png`` beside it is the hole as a mask. Models trained with random masks take
a hole painted with the brush; centre-hole models fill their centre square, drawn on the
photo. In face mode (on by default, for models trained on faces) the faces are found on
upload and filled as ``inpaint --faces`` fills them: each face's own centre hole, or the
part of the painted hole its aligned frame holds; single faces can be switched off.
Uploads and results stay in a temporary folder (in memory where ``/dev/shm`` exists)
deleted when the app stops.
"""

import argparse
import glob
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ctxenc_tf.cli.common import add_face_arguments, bounded, command_parser, printable
from ctxenc_tf.data.sources import BUNDLED_FACES
from ctxenc_tf.errors import CheckpointError, ConfigError, CtxencError, one_line
from ctxenc_tf.faces.detector import MIN_FACE, FaceDetector
from ctxenc_tf.inference.face_jobs import plan_faces
from ctxenc_tf.inference.formats import find_config
from ctxenc_tf.inference.inpaint import fill_jobs, filled_png, joint_hole
from ctxenc_tf.inference.photos import (
    OUTLINE,
    PhotoError,
    bounds,
    centre_hole,
    centre_window,
    draw_outline,
    encode_png,
    fit_mask,
    photo_job,
    read_photo,
    scaled_hole,
)
from ctxenc_tf.inference.runner import load_runner
from ctxenc_tf.inference.serving_client import ServingRunner
from ctxenc_tf.run_files import CHECKPOINTS

RUNS = "runs"
EXAMPLES = ("video-WolfgangLanger_Pexels__0001__0.jpg", "video-single_face__0002__0.jpg",
            "video-carphone_pristine__0002__0.jpg")
DISPLAY_MAX_SIDE = 1600  # the page shows (and the brush paints) photos at most this large
MAX_UPLOAD = "64mb"
FILL_PREFIX = "fill-"  # the folder of one fill's downloads, below the app's work folder
KEEP_FILLS = 8  # the downloads of this many newest fills stay available
SWITCHED_OFF = (160, 160, 160)  # the outline of a face that is not to be filled
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
        return ServingRunner(serving_url, find_config(directory, levels=3, what=model)[0])
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


def outlined(rgb: np.ndarray, marks) -> np.ndarray:
    """The page's copy of ``rgb`` ``[H, W, 3]`` uint8 with each of ``marks``, ``(hole [H, W]
    bool, label, colour)``, outlined just outside the hole, its label (a face's number, or
    "" for none) written centred above it. Drawn after shrinking, so that lines and labels stay
    visible on a large photo."""
    shown = shrink(rgb).copy()
    labels = []
    for hole, label, colour in marks:
        small = scaled_hole(hole, shown.shape[:2])
        draw_outline(shown, small, colour)
        if label and small.any():
            labels.append((bounds(small), label, colour))
    if not labels:
        return shown
    image = Image.fromarray(shown)
    draw = ImageDraw.Draw(image)
    size = max(16, max(shown.shape[:2]) // 30)
    font = ImageFont.load_default(size)
    for (y0, y1, x0, x1), label, colour in labels:
        # Below the hole where the photo's top edge leaves no room above it.
        at, anchor = (((x0 + x1) / 2, y0 - 4), "md") if y0 - 4 >= size else (((x0 + x1) / 2, y1 + 4), "mt")
        draw.text(at, label, fill=colour, font=font, anchor=anchor, stroke_width=max(1, size // 8),
                  stroke_fill=(0, 0, 0))
    return np.asarray(image)


@dataclass(frozen=True)
class FaceMode:
    """Face mode's settings for the app's life: its one ``detector`` (loading MTCNN takes
    seconds, a detection about 0.2 s) and which detected faces are filled, as ``inpaint
    --faces`` takes them (``--max-faces``, ``--min-face``)."""

    detector: FaceDetector
    max_faces: int | None = None
    min_face: float = MIN_FACE

    def plan(self, photo, faces, config, hole=None) -> tuple:
        """:func:`plan_faces` with the app's face flags -> ``(jobs, notes)``; raises
        :class:`PhotoError` in the page's words when ``faces`` is empty (plan_faces'
        own words name the command's flag)."""
        if not faces:
            raise PhotoError("no face found")
        return plan_faces(photo, faces, config, hole, self.max_faces, self.min_face)


def face_numbers(faces, jobs) -> list:
    """Each of ``jobs``' face's number: its place among the photo's detected ``faces``
    (largest first), counted from 1."""
    return [next(n for n, face in enumerate(faces, 1) if face is job.face) for job in jobs]


def frame_region(job, shape) -> np.ndarray:
    """``[H, W]`` bool: the pixels of a photo of ``shape`` ``(H, W)`` that a face job's
    frame (the square the model sees of that face) covers."""
    region = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(region, np.rint(job.frame.corners()).astype(np.int32), 1)
    return region > 0


def face_refusal(config, reason: str) -> str:
    """The page's line for a photo face mode cannot fill (``reason``: no face, none usable,
    or a painted hole no face's frame can take), at upload and at Fill alike, with the way
    out for photos without faces."""
    what = "the painted hole" if config.takes_any_hole else "the centre square"
    return error_line(f'{reason}; switch off "Find faces" to fill {what} without looking for faces')


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


def show_photo(config, path, face_mode: FaceMode | None = None, faces=None, ticked=None):
    """An upload (``path`` in Gradio's upload folder, or ``None``) as the page shows it ->
    ``(canvas, status, faces, numbers)``. ``canvas``: the photo to paint on (an
    ImageEditor value) for models that take drawn holes, else ``[h, w, 3]`` uint8 with the
    hole outlined. In face mode (``face_mode`` given) the photo's ``faces`` (detected here
    when ``None``, returned for the next call) are outlined and numbered, 1 the largest:
    each face's hole, or, for drawn holes, the square its frame covers (paint there is
    filled from that face), in grey where the number is not in ``ticked`` (default: all).
    ``numbers`` are the faces that can be filled; the status says why a photo is refused."""
    if not path:
        return None, "", None, []
    try:
        photo = read_photo(path)
    except (CtxencError, OSError) as e:
        return None, error_line(f"{path}: {one_line(e)}", path), None, []
    shape = photo.rgb.shape[:2]
    drawn = config.takes_any_hole
    about = f"{shape[1]}x{shape[0]} {photo.mode} photo."
    if face_mode is None:
        if drawn:
            return editor(shrink(photo.rgb)), f"{about} Paint over what should go, then press **Fill**.", faces, []
        return (outlined(photo.rgb, [(centre_hole(shape, centre_window(shape), config), "", OUTLINE)]),
                f"{about} Press **Fill** to fill the outlined square.", faces, [])
    faces = face_mode.detector.detect(photo.rgb) if faces is None else faces
    try:
        jobs, notes = face_mode.plan(photo, faces, config)
    except PhotoError as e:
        shown = shrink(photo.rgb)
        return editor(shown) if drawn else shown, face_refusal(config, one_line(e)), faces, []
    numbers = face_numbers(faces, jobs)
    ticked = numbers if ticked is None else ticked
    shown = outlined(photo.rgb, [(frame_region(job, shape) if drawn else job.hole, str(n),
                                  OUTLINE if n in ticked else SWITCHED_OFF) for job, n in zip(jobs, numbers)])
    off = [str(n) for n in numbers if n not in ticked]
    found = (f"{about} {len(jobs)} face{'s' * (len(jobs) > 1)} to fill, numbered from the largest"
             + (f" (switched off: {', '.join(off)})" if off else "") + ". "
             + "".join(f"Left out: {note}. " for note in notes))
    if drawn:
        return (editor(shown), found + "Paint over what should go inside a numbered square (what the model "
                "sees of that face), then press **Fill**.", faces, numbers)
    return shown, found + "Press **Fill** to fill the outlined holes.", faces, numbers


def editor(shown: np.ndarray) -> dict:
    """An ImageEditor value with ``shown`` ``[h, w, 3]`` uint8 to paint on, nothing painted yet."""
    return {"background": shown, "layers": [], "composite": shown}


def fill_photo(runner, work_dir: str, path, canvas=None, face_mode: FaceMode | None = None, faces=None,
               ticked=None):
    """Fill the photo at ``path`` (with the hole painted on ``canvas`` for models that take
    drawn holes) as the inpaint command does, in face mode (``face_mode`` given) as
    ``inpaint --faces`` does, but for the faces whose numbers (see :func:`show_photo`;
    ``faces`` detected now when ``None``) are not in ``ticked`` (default: all) -> ``(status,
    original with the holes outlined, filled, [<name>_filled.png, <name>_hole.png])``, the
    images ``[h, w, 3]`` uint8 page copies and the PNGs full size in a new folder below
    ``work_dir``; on a refusal ``(status, None, None, None)``."""
    refused = (None, None, None)
    if not path:
        return error_line("drop a photo or pick an example first"), *refused
    config = runner.config
    try:
        photo = read_photo(path)
        hole = None
        if config.takes_any_hole:
            hole = painted_hole(canvas)
            if hole is None:
                return error_line("paint over what should go first"), *refused
            hole = fit_mask(hole, photo.rgb.shape[:2], "painted on the page")
        if face_mode is None:
            jobs, labels, faces_filled, notes = [photo_job(photo, config, hole)], [""], "", []
        else:
            faces = face_mode.detector.detect(photo.rgb) if faces is None else faces
            # A switched-off face must not claim drawn hole pixels that a ticked face's frame
            # also holds: only the ticked faces share a drawn hole out.
            dropped = [] if hole is None or ticked is None else [n for n in range(1, len(faces) + 1)
                                                                  if n not in ticked]
            candidates = [face for n, face in enumerate(faces, 1) if n not in dropped]
            try:
                planned, notes = (face_mode.plan(photo, candidates, config, hole) if candidates or not faces
                                  else ([], []))
            except PhotoError as e:
                return face_refusal(config, one_line(e)), *refused
            numbers = face_numbers(faces, planned)
            ticked = numbers if ticked is None else ticked
            jobs = [job for job, n in zip(planned, numbers) if n in ticked]
            labels = [str(n) for n in numbers if n in ticked]
            off = [str(n) for n in sorted(set(dropped) | {n for n in numbers if n not in ticked})]
            if not jobs:
                return error_line(f"nothing to fill: every face with a hole ({', '.join(off)}) is "
                                  "switched off under Faces to fill"), *refused
            faces_filled = (f"{len(jobs)} face{'s' * (len(jobs) > 1)} ({', '.join(labels)}"
                            + (f"; switched off: {', '.join(off)}" if off else "") + "), ")
        [filled] = fill_jobs(runner, [jobs])
    except (CtxencError, OSError) as e:
        return error_line(one_line(e), path), *refused
    # A long-running app must not fill memory: only the newest fills' downloads are kept.
    fills = sorted(glob.glob(os.path.join(work_dir, FILL_PREFIX + "*")), key=os.path.getmtime)
    for old in fills[:max(0, len(fills) - KEEP_FILLS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    out_dir = tempfile.mkdtemp(prefix=FILL_PREFIX, dir=work_dir)
    stem = os.path.splitext(os.path.basename(path))[0]
    files = [os.path.join(out_dir, f"{stem}_filled.png"), os.path.join(out_dir, f"{stem}_hole.png")]
    hole = joint_hole(jobs)
    for name, data in zip(files, (filled_png(jobs, filled), encode_png(hole.astype(np.uint8) * 255))):
        with open(name, "wb") as f:
            f.write(data)
    h, w = filled.shape[:2]
    return (f"Filled {faces_filled}a {hole.sum()}-pixel hole; the {w}x{h} PNG is below."
            + "".join(f" Note: {note}." for note in notes),
            outlined(photo.rgb, [(job.hole, label, OUTLINE) for job, label in zip(jobs, labels)]),
            shrink(filled), files)


def build(runner, work_dir: str, face_mode: FaceMode | None = None):
    """The Gradio page (``gradio.Blocks``) for ``runner``, with face mode's switches when
    ``face_mode`` is given; results go below ``work_dir``."""
    import gradio as gr

    config = runner.config
    drawn = config.takes_any_hole

    def shown(path, finding, faces=None, ticked=None, canvas=None):
        """:func:`show_photo` for the page: the strokes on ``canvas`` kept, the face
        numbers as the face list's update (all ticked unless ``ticked`` says)."""
        value, note, faces, numbers = show_photo(config, path, face_mode if finding else None, faces, ticked)
        if drawn and value is not None and canvas:
            value = {**value, "layers": canvas.get("layers") or []}
        face_list = gr.update(choices=[(str(n), n) for n in numbers], visible=bool(numbers),
                              value=numbers if ticked is None else ticked)
        return value, note, faces, face_list

    def upload(path, finding):
        return *shown(path, finding), None, None, None

    def switch(path, finding, faces, canvas=None):
        return shown(path, finding, faces, None, canvas)

    def tick(path, finding, faces, ticked):
        value, note = shown(path, finding, faces, ticked)[:2]
        # The editor's strokes would be sent back to it, and until it has drawn them again
        # a Fill would find nothing painted: there the status alone says what is off.
        return note if drawn else (value, note)

    def fill(path, finding, faces, ticked, canvas=None):
        return fill_photo(runner, work_dir, path, canvas, face_mode if finding else None, faces, ticked)

    # Uploads Gradio keeps (in RAM where /dev/shm is used) are deleted after an hour, checked hourly.
    with gr.Blocks(title="ctxenc-tf inpainting", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"# Context encoder inpainting\n{runner.describe()}")
        with gr.Row():
            with gr.Column():
                # Any file type: read_photo judges it and says why one is refused.
                photo = gr.File(label="Photo: drop or click to upload", type="filepath", elem_id="photo")
                gr.Examples([os.path.join(BUNDLED_FACES, name) for name in EXAMPLES], inputs=photo,
                            label="or pick an example")
                # Without a detector (mtcnn missing) the page is the one without face mode.
                finding = gr.Checkbox(face_mode is not None, label="Find faces (for models trained on faces)",
                                      info="Each face is aligned as CelebA's crops are and filled in its own "
                                           "frame. Off: " + ("the painted hole is filled as painted."
                                                             if drawn else "the photo's centre square is filled."),
                                      visible=face_mode is not None, elem_id="face-mode")
                ticks = gr.CheckboxGroup([], label="Faces to fill", info="1 is the largest; untick a face "
                                         "to keep it as it is", visible=False, elem_id="faces")
                faces = gr.State()  # the upload's detected faces: found once, used by every later step
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
                                "in the middle of the photo, or with **Find faces** the middle of each "
                                "face's aligned square (over nose and mouth), so there is no brush. "
                                "Models trained with `--mask-type random_region` or `random_square` "
                                "take painted holes.")
        button = gr.Button("Fill", variant="primary", elem_id="fill")
        status = gr.Markdown(elem_id="status")
        with gr.Row():  # page copies as JPEG: a PNG of a large photo takes longer than its fill
            before = gr.Image(label="Original, hole outlined", interactive=False, format="jpeg",
                              buttons=["fullscreen"])
            after = gr.Image(label="Filled (the download below is full size)", interactive=False,
                             format="jpeg", buttons=["fullscreen"])
        downloads = gr.File(label="Download: lossless PNG at full resolution, and the hole as a mask",
                            file_count="multiple", interactive=False, elem_id="downloads")
        # A centre-hole model needs only the photo: the page's copy of it is not sent back.
        strokes = [canvas] if drawn else []
        # The detector runs one photo at a time, as the model does.
        photo.change(upload, [photo, finding], [canvas, status, faces, ticks, before, after, downloads],
                     concurrency_id="faces")
        finding.input(switch, [photo, finding, faces, *strokes], [canvas, status, faces, ticks],
                      concurrency_id="faces")
        ticks.input(tick, [photo, finding, faces, ticks], status if drawn else [canvas, status])
        if drawn:
            def clear_hole(path, finding, faces, ticked):
                value, note = shown(path, finding, faces, ticked)[:2]
                return value, f"Hole cleared. {note}" if value is not None else note

            clear.click(clear_hole, [photo, finding, faces, ticks], [canvas, status])
        # While it works, Gradio shows its progress (a spinner and a timer) on the outputs.
        button.click(fill, [photo, finding, faces, ticks, *strokes], [status, before, after, downloads])
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
    add_face_arguments(p, "in face mode: fill")
    return p.parse_args(argv)


def open_face_mode(args) -> FaceMode | None:
    """Face mode with the face flags, its detector loaded and run once; ``None`` (and a
    warning) when the detector cannot be loaded: the page then has no face mode, as for
    a model not trained on faces, rather than no page."""
    try:
        face_mode = FaceMode(FaceDetector(args.face_confidence), args.max_faces, args.min_face)
    except ConfigError as e:
        print(f"warning: no face mode: {e}", file=sys.stderr)
        return None
    # The first detection pays one-time costs (graph tracing, buffers) in every stage of the
    # detector, which only a photo with a face reaches; pay them now.
    face_mode.detector.detect(read_photo(os.path.join(BUNDLED_FACES, EXAMPLES[0])).rgb)
    return face_mode


def main(argv=None) -> int:
    args = parse_args(argv)
    runner = open_model(args.model, args.serving_url)
    # The first model call pays one-time costs (kernel selection, buffers); pay them now.
    size = runner.config.image_size
    runner.inpaint(np.zeros((1, size, size, 3), np.float32), runner.centre_masks(1))
    face_mode = open_face_mode(args)
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
        page = build(runner, work_dir, face_mode)
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

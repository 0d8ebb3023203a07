"""Photos in and out of the model: decoding any mode with EXIF rotation, the square window
and hole the model sees, and blending its prediction back at the photo's own resolution
so that every pixel outside the hole keeps its exact value."""

import io
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.data import hole_masks, pipeline
from ctxenc_tf.errors import DataError
from ctxenc_tf.model import masks

GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as PIL's "L"

SIDE_BY_SIDE_MAX_HEIGHT = 1024

OUTLINE = (255, 32, 32)  # the colour a hole is outlined in

_AS_RGB = {"1": "L", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
           "PA": "RGBA", "RGBa": "RGBA", "La": "LA", "RGBX": "RGB"}


class PhotoError(DataError):
    """A photo or mask cannot be used; the message says why (and names ``--mask`` for the
    mask). For one photo among many the run goes on; for ``--mask`` it stops."""


@dataclass
class Photo:
    """A decoded photo: ``rgb`` ``[H, W, 3]`` uint8 (gray replicated for grayscale),
    ``alpha`` ``[H, W]`` uint8 or ``None``, and the PNG ``mode`` to write back."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    mode: str
    icc_profile: bytes | None = None


@dataclass
class Job:
    """One photo prepared for the model: the square ``window`` (top, left, side) the model
    sees, the photo-space ``hole`` ``[H, W]`` bool, and the model inputs ``image``
    ``[S, S, 3]`` float32 in ``[0, 1]`` and ``mask`` ``[S, S, 1]`` float32 in ``{0, 1}``."""

    photo: Photo
    hole: np.ndarray
    window: tuple
    image: np.ndarray
    mask: np.ndarray

    def blend(self, out: np.ndarray, completed: np.ndarray, prediction: np.ndarray, config: ModelConfig) -> None:
        """Blend this job's model output into ``out`` (:func:`finish`)."""
        finish(self, completed, prediction, config, out)


def _open(path: str) -> Image.Image:
    """Open and fully decode an image file with EXIF orientation applied."""
    if os.path.exists(path) and not os.path.isfile(path):  # a pipe or device: reading could block
        raise PhotoError("not a regular file")
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PhotoError(f"cannot read image ({str(e) or type(e).__name__})") from e


def read_photo(path: str) -> Photo:
    """Decode ``path`` (JPEG/PNG/GIF/BMP/WebP/TIFF..., EXIF-rotated upright).

    RGB/RGBA/L/LA are kept as they are; palette, 1-bit, CMYK and similar modes are
    converted to the nearest of those four. 16-bit and float images raise
    :class:`PhotoError` (writing them back as 8 bit would change pixels outside the hole).
    """
    img = _open(path)
    with open(path, "rb") as f:  # Pillow reads 16-bit RGB(A) PNGs as 8-bit without a word
        head = f.read(25)
    if head.startswith(b"\x89PNG") and len(head) == 25 and head[24] == 16:
        raise PhotoError("16-bit PNG images are not supported; convert to 8-bit first")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in _AS_RGB:
        img = img.convert(_AS_RGB[img.mode])
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        raise PhotoError(f"{img.mode} images (16-bit or float) are not supported; "
                         "convert to 8-bit first")
    pixels = np.asarray(img)
    if img.mode in ("L", "LA"):
        gray = pixels if img.mode == "L" else pixels[..., 0]
        rgb = np.repeat(gray[..., None], 3, axis=-1)
        alpha = pixels[..., 1] if img.mode == "LA" else None
    else:
        rgb, alpha = pixels[..., :3], (pixels[..., 3] if img.mode == "RGBA" else None)
    return Photo(np.ascontiguousarray(rgb), alpha, img.mode, img.info.get("icc_profile"))


def read_mask(path: str) -> np.ndarray:
    """A user-drawn mask file -> ``[H, W]`` bool, True = hole: white (>= 128) on black,
    or, for images with transparency, the opaque strokes. EXIF rotation is applied.
    Raises :class:`PhotoError` naming ``--mask`` and ``path``."""
    try:
        img = _open(path)
    except PhotoError as e:
        raise PhotoError(f"--mask {path}: {e}") from e
    hole = np.asarray(img.convert("L")) >= 128
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        alpha = np.asarray(img.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            hole = alpha >= 128
    if not hole.any():
        raise PhotoError(f"--mask {path}: mask has no hole (no white or opaque pixel)")
    return hole


def fit_mask(hole: np.ndarray, shape, mask_path: str) -> np.ndarray:
    """``hole`` scaled (nearest neighbour) to a photo of ``shape`` ``(H, W)`` when the
    aspect ratios agree within 1%; :class:`PhotoError` otherwise."""
    if hole.shape == tuple(shape):
        return hole
    (mh, mw), (h, w) = hole.shape, shape
    if abs(mw / mh - w / h) > 0.01 * (w / h):
        raise PhotoError(f"the mask {mask_path} is {mw}x{mh} but the photo is {w}x{h} "
                         "(different aspect ratio)")
    scaled = Image.fromarray(hole.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
    return np.asarray(scaled) >= 128


def centre_window(shape) -> tuple:
    """The photo's central square ``(top, left, side)`` for a photo of ``shape`` ``(H, W)``."""
    h, w = shape
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def bounds(hole: np.ndarray) -> tuple:
    """Bounding box ``(top, bottom, left, right)`` (ends exclusive) of a non-empty
    ``[H, W]`` bool hole."""
    rows, cols = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def window_around(hole: np.ndarray, image_size: int, share: float = 0.5) -> tuple:
    """A square ``(top, left, side)`` inside the photo holding the whole ``hole``, which
    spans at most ``share`` of its side (0.5: about as much context again around it, the
    proportions the models train on), at least ``image_size`` pixels when the photo
    allows. Raises :class:`PhotoError` when the hole does not fit in any square of the photo."""
    h, w = hole.shape
    y0, y1, x0, x1 = bounds(hole)
    extent = max(y1 - y0, x1 - x0)
    if y1 - y0 > min(h, w) or x1 - x0 > min(h, w):
        raise PhotoError(f"the hole ({x1 - x0}x{y1 - y0}) does not fit in a square of the "
                         f"{w}x{h} photo")
    side = int(min(min(h, w), max(math.ceil(extent / share), image_size)))
    top = int(np.clip((y0 + y1) // 2 - side // 2, 0, h - side))
    left = int(np.clip((x0 + x1) // 2 - side // 2, 0, w - side))
    return top, left, side


def centre_hole(shape, window, config: ModelConfig) -> np.ndarray:
    """The model's centre hole mapped into the photo's ``window``: ``[H, W]`` bool."""
    top, left, side = window
    scale = side / config.image_size
    a = int(round(config.hole_offset * scale))
    b = int(round((config.hole_offset + config.hole_size) * scale))
    hole = np.zeros(shape, bool)
    hole[top + a:top + b, left + a:left + b] = True
    if not hole.any():
        raise PhotoError(f"{shape[1]}x{shape[0]} pixels is too small to hold a hole")
    return hole


def _resize_channels(values: np.ndarray, size, box=None) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of ``[h, w, C]`` float32 to ``size``
    ``(width, height)``, optionally of the source ``box`` ``(x0, y0, x1, y1)`` only."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(values[..., c], np.float32))
                                .resize(size, Image.BILINEAR, box=box))
                     for c in range(values.shape[-1])], axis=-1)


def photo_job(photo: Photo, config: ModelConfig, hole: np.ndarray | None = None) -> Job:
    """Cut the model's input out of ``photo``: the central square and centre hole by
    default, or a square around the user's ``hole`` (``[H, W]`` bool)."""
    s = config.image_size
    shape = photo.rgb.shape[:2]
    if hole is None:
        window = centre_window(shape)
        hole = centre_hole(shape, window, config)
        mask = hole_masks.center_mask(s, config.hole_size).numpy()
    else:
        # A model that fills one square gets the hole inside it, with a pixel to spare for
        # the resize's antialiasing on each side.
        share = 0.5 if config.predicts_full_image else min(0.5, (config.hole_size - 2) / s)
        window = window_around(hole, s, share)
        top, left, side = window
        cover = _resize_channels(hole[top:top + side, left:left + side, None].astype(np.float32),
                                 (s, s))
        mask = (cover > 0).astype(np.float32)  # every model pixel touching the hole
        if not config.predicts_full_image:  # the model fills one hole_size square
            y0, y1, x0, x1 = bounds(mask > 0)
            if max(y1 - y0, x1 - x0) > config.hole_size:
                raise PhotoError(f"the hole is {x1 - x0}x{y1 - y0} pixels at the model's scale, more "
                                 f"than the {config.hole_size}x{config.hole_size} square it fills; "
                                 "draw a smaller or rounder hole")
    top, left, side = window
    crop = photo.rgb[top:top + side, left:left + side]
    image = (pipeline.square_resize(crop, s).numpy() + 1.0) / 2.0
    return Job(photo, hole, window, image.astype(np.float32), mask.astype(np.float32))


def model_output(mask: np.ndarray, completed: np.ndarray, prediction: np.ndarray,
                 config: ModelConfig) -> tuple:
    """The model's fill of one ``[S, S, 1]`` ``mask`` as ``(full [S, S, 3] in [0, 1], alpha
    [S, S, 1])``: the prediction placed on the model-resolution ``completed`` image, and its
    blend weights (1 on the hidden core, a linear ramp over the overlap ring, 0 outside the
    hole, see :func:`masks.blend_alpha`)."""
    if config.predicts_full_image:
        full = prediction
    else:  # the predicted square, padded with the model-resolution context
        h = config.hole_size
        top, left = masks.box_offsets(mask[None], h).numpy()[0]
        full = completed.copy()
        full[top:top + h, left:left + h] = prediction
    return full, masks.blend_alpha(mask[None], config.overlap).numpy()[0]


def blend_into(out: np.ndarray, box, inside: np.ndarray, fill: np.ndarray, weight: np.ndarray) -> None:
    """Blend ``fill`` (``[h, w, 3]`` in ``[0, 255]``) with ``weight`` (``[h, w, 1]`` in
    ``[0, 1]``) over ``out`` (``[H, W, 3]`` uint8, changed in place) at ``box`` ``(y0, y1,
    x0, x1)``, on the ``inside`` (``[h, w]`` bool) pixels only."""
    y0, y1, x0, x1 = box
    patch = out[y0:y1, x0:x1].astype(np.float32)
    blended = np.clip(np.rint(patch * (1.0 - weight) + fill * weight), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1][inside] = blended[inside]


def finish(job: Job, completed: np.ndarray, prediction: np.ndarray, config: ModelConfig,
           out: np.ndarray | None = None) -> np.ndarray:
    """Blend the model output into the photo at its own resolution.

    ``completed`` ``[S, S, 3]`` and ``prediction`` ``[O, O, 3]`` in ``[0, 1]`` (one
    :meth:`~ctxenc_tf.inference.runner.Runner.inpaint` result). The fill and its weights (:func:`model_output`) are
    scaled to the photo and applied inside ``job.hole`` only, over ``out`` (changed in
    place; default a copy of the photo). Returns ``out``, ``[H, W, 3]`` uint8, unchanged
    everywhere outside the hole.
    """
    s = config.image_size
    full, alpha = model_output(job.mask, completed, prediction, config)
    top, left, side = job.window
    y0, y1, x0, x1 = bounds(job.hole)
    scale = s / side
    box = ((x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale)
    size = (int(x1 - x0), int(y1 - y0))
    out = job.photo.rgb.copy() if out is None else out
    blend_into(out, (y0, y1, x0, x1), job.hole[y0:y1, x0:x1],
               _resize_channels(full, size, box) * 255.0, _resize_channels(alpha, size, box))
    return out


def to_pixels(photo: Photo, rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The array to save in ``photo.mode``: ``rgb`` ``[H, W, 3]`` uint8 as gray for L/LA
    (hole pixels converted, every other pixel copied from the original), with the
    original alpha channel appended for RGBA/LA."""
    if photo.mode in ("L", "LA"):
        gray = photo.rgb[..., 0].copy()
        gray[hole] = np.clip(np.rint(rgb[hole].astype(np.float32) @ GRAY_WEIGHTS), 0, 255)
        channels = [gray]
    else:
        channels = [rgb[..., c] for c in range(3)]
    if photo.alpha is not None:
        channels.append(photo.alpha)
    return np.stack(channels, axis=-1) if len(channels) > 1 else channels[0]


def encode_png(pixels: np.ndarray, icc_profile=None) -> bytes:
    """``[H, W]`` or ``[H, W, C]`` uint8 -> PNG bytes (mode L, LA, RGB or RGBA)."""
    buffer = io.BytesIO()
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    Image.fromarray(pixels).save(buffer, format="PNG", **extra)
    return buffer.getvalue()


def draw_outline(rgb: np.ndarray, hole: np.ndarray, colour) -> None:
    """Draw a 2-pixel line just outside ``hole`` (``[H, W]`` bool) on ``rgb`` (``[H, W, 3]``
    uint8, changed in place). Only the hole's box is searched: the whole photo takes 10x longer."""
    if not hole.any():
        return
    h, w = hole.shape
    y0, y1, x0, x1 = bounds(hole)
    box = np.s_[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3]
    grown = np.asarray(Image.fromarray(hole[box].astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))) > 0
    rgb[box][grown & ~hole[box]] = colour


def scaled_hole(hole: np.ndarray, shape) -> np.ndarray:
    """``hole`` ``[H, W]`` bool scaled to ``shape`` ``(h, w)``: True where any of it shows."""
    if hole.shape == tuple(shape):
        return hole
    return np.asarray(Image.fromarray(hole.astype(np.uint8) * 255).resize(shape[::-1], Image.BILINEAR)) > 0


def side_by_side(photo: Photo, filled: np.ndarray, hole: np.ndarray, config: ModelConfig,
                 outlines=()) -> np.ndarray:
    """``[original | hole | filled]`` as one RGB uint8 array, the middle panel the whole
    ``hole`` painted in the model's fill colour (overlap ring included: the region the fill
    replaces, not the smaller core the model sees filled),
    each panel at most :data:`SIDE_BY_SIDE_MAX_HEIGHT` pixels high, with each of
    ``outlines`` (``[H, W]`` bool holes, e.g. one per face) outlined on the outer panels."""
    fill = np.rint((np.asarray(config.fill_value or (0.0, 0.0, 0.0)) + 1.0) * 127.5).astype(np.uint8)
    if photo.mode in ("L", "LA"):  # show what is written: the gray conversion
        gray = to_pixels(Photo(photo.rgb, None, "L"), filled, hole)
        filled = np.repeat(gray[..., None], 3, axis=-1)
        fill = np.full(3, np.rint(fill @ GRAY_WEIGHTS), np.uint8)
    masked = photo.rgb.copy()
    masked[hole] = fill
    panels = np.concatenate([photo.rgb, masked, filled], axis=1)
    h, w = panels.shape[:2]
    if h > SIDE_BY_SIDE_MAX_HEIGHT:
        size = (max(1, round(w * SIDE_BY_SIDE_MAX_HEIGHT / h)), SIDE_BY_SIDE_MAX_HEIGHT)
        panels = np.asarray(Image.fromarray(panels).resize(size, Image.LANCZOS)).copy()
    width = panels.shape[1] // 3
    for outline in outlines:  # drawn at the panels' size, so that a line stays visible
        small = scaled_hole(outline, (panels.shape[0], width))
        for k in (0, 2):
            draw_outline(panels[:, k * width:(k + 1) * width], small, OUTLINE)
    return panels

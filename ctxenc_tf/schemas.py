"""The declared schema of every file this project writes and later reads back, checked here,
in one place, before anything uses the file.

==========================================  =======================================  ==========================
file                                        reader                                   a file that fails
==========================================  =======================================  ==========================
``OUTPUT_DIR/backup/state.json`` (and       :func:`read_training_state`              :class:`ConfigError`; the
``state.prev.json``)                                                                 caller falls back to the
                                                                                     previous state
``prepared.json`` of ``--prepare``          :func:`read_prepared`                    :class:`DataError`
``aligned.json`` of ``--align-faces``       :func:`read_aligned`                     :class:`DataError`
a run's ``split.json``                      :func:`read_split`                       :class:`DataError`
an export's ``config.json`` (at its root,   :func:`read_model_config`                :class:`CheckpointError`
and in ``saved_model/N/assets.extra/``)
CelebA's ``list_eval_partition.txt``        :func:`read_partition`                   :class:`DataError`
==========================================  =======================================  ==========================

A run's own ``config.json`` is the :class:`~ctxenc_tf.config.RunConfig` that ``state.json``
carries as its ``config`` field (:data:`RunConfigFile`); no command reads it back by
itself. ``faces.csv`` of ``--align-faces`` and ``log.csv`` of a run are written for people
and other tools; no command parses them (Keras' CSV logger only looks whether ``log.csv``
is empty before it appends).

Every failure is one line naming the file and the field, e.g.
``runs/x/backup/state.json: field 'epoch': expected an integer >= 0, got "three"``; a
file is used whole or not at all.

Why pydantic (v2): it declares a file's fields as types with ranges in one class, checks
them in strict mode (the string ``"32"`` is no integer, ``1e6`` is no step count, ``true``
is no number), reports every failure with its location inside the file, and takes a
validation context for relations with the run (a step below the steps of an epoch). It
is a well-kept library that the web app's gradio already brings. JSON is parsed by the
standard library first, which reports duplicated keys (pydantic's parser keeps the last
one silently) and reads the ``Infinity`` that ``json.dump`` writes for an unset best value.
The value ranges of :class:`~ctxenc_tf.config.ModelConfig` and
:class:`~ctxenc_tf.config.RunConfig` stay in their ``validate()``: the schemas here check
those files' types and keys, then build the dataclasses, whose errors name the field.
"""


import contextlib
import dataclasses
import json
import math
import os
import re
import typing
from typing import Annotated, Literal

import pydantic
import typing_extensions  # pydantic takes a TypedDict from here before Python 3.12
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WrapValidator, field_validator
from pydantic_core import PydanticCustomError

from ctxenc_tf.config import LEGACY_MODEL_KEYS, MODEL_FIELDS, ModelConfig, RunConfig
from ctxenc_tf.errors import CheckpointError, ConfigError, DataError

# ---- field types: each says what it expects in words, used in the one error line ----------


def _expect(phrase: str) -> WrapValidator:
    """Replace a field's own failure (wrong type, out of range) by ``expected <phrase>``;
    failures inside it (an item of a list) keep their own location and words."""
    def check(value, handler):
        try:
            return handler(value)
        except pydantic.ValidationError as e:
            if any(not err["loc"] for err in e.errors()):
                raise PydanticCustomError("expected", phrase) from None
            raise
    return WrapValidator(check)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


Count = Annotated[int, Field(ge=0), _expect("an integer >= 0")]
Positive = Annotated[int, Field(ge=1), _expect("an integer >= 1")]
Number = Annotated[float, pydantic.AfterValidator(_finite), _expect("a finite number")]
Text = Annotated[str, _expect("a string")]
Fraction = Annotated[float, Field(ge=0, le=1), _expect("a number from 0 to 1")]
Signed = Annotated[float, Field(ge=-1, le=1), _expect("a number from -1 to 1")]
# A file inside the folder that lists it: no folders, no way out of it.
FileName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^(?!\.\.?$)[^/\\\x00]+$"),
                     _expect("a file name (no folder)")]

# A file below the folder that lists it: a relative path that does not climb out of it.
RelativePath = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^(?!/)(?!(.*/)?\.\.(/|$))[^\\\x00]+$"),
                         _expect("a path relative to the data folder")]


def _list(item, phrase: str, length: int | None = None):
    """A JSON list of ``item``; exactly ``length`` long when given."""
    bounds = Field(min_length=length, max_length=length) if length is not None else Field()
    return Annotated[list[item], bounds, _expect(phrase)]


class Schema(BaseModel):
    """A JSON object of exactly these keys, each of exactly its type (no conversion)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, regex_engine="python-re")


PREPARED_FORMAT = "ctxenc-tfrecord-v1"  # the "format" of prepared.json

ALIGNED_FORMAT = "ctxenc-aligned-faces-v1"  # the "format" of aligned.json

# ---- ModelConfig / RunConfig: keys and types from the dataclasses, ranges from validate() --


@pydantic.with_config(ConfigDict(strict=True, extra="forbid"))
class SplitRecord(typing_extensions.TypedDict):
    """``trained_on["split"]``: :func:`~ctxenc_tf.data.fingerprint.split_record`."""

    train: Count
    val: Count
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$"), _expect("24 hex digits")]


@pydantic.with_config(ConfigDict(strict=True, extra="forbid"))
class TrainedOn(typing_extensions.TypedDict, total=False):
    """``ModelConfig.trained_on``: the data settings of the run that trained the model (none
    for a model that train.py did not train; the limits and ``split`` only from runs that
    recorded their split)."""

    data_dir: Text
    seed: Count
    val_fraction: Number
    resize: Text
    exclude: Text
    train_limit: Count
    val_limit: Count
    split: SplitRecord


_BY_TYPE = {
    int: Annotated[int, _expect("an integer")],
    float: Annotated[float, _expect("a number")],
    str: Text,
    bool: Annotated[bool, _expect("true or false")],
    bool | None: Annotated[bool | None, _expect("true, false or null")],
}


def _config_schema(cls, special: dict, ignored=()) -> type[Schema]:
    """A schema with one required key per field of the dataclass ``cls`` (types from its
    annotations, ``special`` for the fields of other types); keys in ``ignored`` are
    accepted and dropped."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: (special.get(f.name) or _BY_TYPE[hints[f.name]], ...) for f in dataclasses.fields(cls)}

    def drop_ignored(data):
        return {k: v for k, v in data.items() if k not in ignored} if isinstance(data, dict) else data

    validators = {"drop_ignored": pydantic.model_validator(mode="before")(drop_ignored)} if ignored else {}
    return pydantic.create_model(f"{cls.__name__}File", __base__=Schema, __validators__=validators, **fields)


ModelConfigFile = _config_schema(ModelConfig, {
    "fill_value": _list(Annotated[float, _expect("a number")], "a list of numbers"),
    "trained_on": TrainedOn,
}, ignored=LEGACY_MODEL_KEYS)

RunConfigFile = _config_schema(RunConfig, {"model": ModelConfigFile})


def _build(cls, data: dict, where: str = ""):
    """``cls`` (ModelConfig or RunConfig) from a dict that passed its schema; a value out of
    range raises :class:`_FieldError` naming the field."""
    try:
        return cls.from_dict(data)
    except ConfigError as e:
        prefix = "model." if cls is RunConfig and e.field in MODEL_FIELDS else ""
        value = data.get("model", {}).get(e.field) if prefix else data.get(e.field)
        raise _FieldError(f"{where}{prefix}{e.field}", f"{e.why}, got {_shown(value)}") from None


# ---- the resume state --------------------------------------------------------------------

WEIGHTS_NAME = "state-e{epoch:04d}-s{step:06d}.weights.h5"  # of the weights of a resume state


class TrainingStateFile(Schema):
    """``backup/state.json``: see :class:`ctxenc_tf.training.resume.TrainingState`.

    Context ``steps_per_epoch``: the steps of an epoch of the rerun; a mid-epoch ``step``
    lies below it."""

    epoch: Count
    step: Count
    weights: FileName
    best: Annotated[float, Field(ge=0), _expect("a number >= 0 or Infinity (no best yet)")]
    # name -> the variables of a keras.metrics.Mean: running total and count.
    trackers: Annotated[dict[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$"), _expect("a metric name")],
                             _list(Number, "[total, count], two finite numbers", 2)],
                        _expect("an object of metric name -> [total, count]")]
    config: RunConfigFile
    data: Annotated[str, Field(pattern=r"^[0-9a-f]{24}$"),
                    _expect("the data's fingerprint (24 hex digits)")]
    sha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$"), _expect("64 hex digits")] = ""

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        # The run that wrote the state stops at its --epochs; a rerun may ask for more.
        epochs = self.config.epochs
        if self.epoch > epochs or (self.epoch == epochs and self.step):
            raise PydanticCustomError("expected", "an integer from 0 to {epochs} (the run's epochs), "
                                      "below it when step is not 0",
                                      {"field": "epoch", "got": self.epoch, "epochs": epochs})
        expected = WEIGHTS_NAME.format(epoch=self.epoch, step=self.step)
        if self.weights != expected:
            raise PydanticCustomError("expected", "{name} (the name for this epoch and step)",
                                      {"field": "weights", "got": self.weights, "name": json.dumps(expected)})
        return self

    @field_validator("step")
    @classmethod
    def _within_epoch(cls, step, info: ValidationInfo):
        steps = (info.context or {}).get("steps_per_epoch")
        if steps is not None and step >= steps:
            raise PydanticCustomError("expected", "an integer from 0 to {last} (an epoch has {steps} steps)",
                                      {"last": steps - 1, "steps": steps})
        return step


def read_training_state(path: str, steps_per_epoch: int) -> dict:
    """The fields of the resume state at ``path``, checked (see :class:`TrainingStateFile`;
    ``config`` as a whole :class:`~ctxenc_tf.config.RunConfig`), as the plain dict
    ``state.json`` holds. Raises :class:`ConfigError` (one line naming ``path`` and the
    field) for anything else, ``FileNotFoundError`` when it is missing."""
    data = _load_json(path, ConfigError, missing_ok=True)
    with _one_line(path, ConfigError):
        _validate(TrainingStateFile, data, {"steps_per_epoch": steps_per_epoch})
        _build(RunConfig, data["config"], where="config.")
    return data


# ---- prepared TFRecords ------------------------------------------------------------------


class PreparedSplit(Schema):
    """One split of ``prepared.json``: its shards (file names in the prepared folder), how
    many images each holds, the source file name of every image and each shard's size."""

    count: Count
    shards: _list(FileName, "a list of file names")
    counts: _list(Positive, "a list of integers >= 1")
    names: _list(Text, "a list of file names")
    bytes: _list(Count, "a list of integers >= 0") = None  # older preparations: none

    @field_validator("counts")
    @classmethod
    def _one_per_shard(cls, counts, info: ValidationInfo):
        if "shards" in info.data and len(counts) != len(info.data["shards"]):
            raise PydanticCustomError("expected", "one count per shard ({n})", {"n": len(info.data["shards"])})
        return counts

    @field_validator("names")
    @classmethod
    def _one_per_image(cls, names, info: ValidationInfo):
        if "counts" in info.data and len(names) != sum(info.data["counts"]):
            raise PydanticCustomError("expected", "one name per image ({n}, the sum of counts)",
                                      {"n": sum(info.data["counts"])})
        if "count" in info.data and len(names) != info.data["count"]:
            raise PydanticCustomError("expected", "one name per image ({n}, the count)", {"n": info.data["count"]})
        return names

    @field_validator("bytes")
    @classmethod
    def _one_size_per_shard(cls, sizes, info: ValidationInfo):
        if sizes is not None and "shards" in info.data and len(sizes) != len(info.data["shards"]):
            raise PydanticCustomError("expected", "one size per shard ({n})", {"n": len(info.data["shards"])})
        return sizes


class TrainingSplit(PreparedSplit):
    count: Positive  # prepare refuses data without a training image


class SplitSettings(Schema):
    seed: Count
    val_fraction: Fraction
    train_limit: Count
    val_limit: Count
    # absent from older preparations, which were always cropped and excluded nothing
    resize: Annotated[Literal["crop", "stretch"], _expect('"crop" or "stretch"')] = "crop"
    exclude: Text = ""


class PreparedSplits(Schema):
    train: TrainingSplit
    val: PreparedSplit


class PreparedFile(Schema):
    """``prepared.json`` of ``train.py --prepare DIR`` (:mod:`ctxenc_tf.data.prepare`)."""

    format: Literal[PREPARED_FORMAT]
    image_size: Annotated[int, Field(ge=16, le=512), pydantic.AfterValidator(lambda s: _power_of_two(s)),
                          _expect("a power of two from 16 to 512")]
    source: Text
    source_kind: Annotated[Literal["celeba", "folder"], _expect('"celeba" or "folder"')]
    seed: Count
    split_settings: SplitSettings
    splits: PreparedSplits
    # Per-channel mean colour of the training images, in the pipeline's [-1, 1].
    mean: _list(Signed, "3 numbers from -1 to 1 (the mean colour)", 3)
    skipped: _list(_list(Text, "[file, reason]", 2), "a list of [file, reason]")


def _power_of_two(n: int) -> int:
    if n & (n - 1):
        raise ValueError("not a power of two")
    return n


def read_prepared(path: str) -> dict:
    """The ``prepared.json`` at ``path``, checked (:class:`PreparedFile`), as a plain dict
    with every field, the defaults of older preparations filled in. Raises
    :class:`DataError` (one line naming ``path`` and the field)."""
    data = _load_json(path, DataError)
    with _one_line(path, DataError):
        return _validate(PreparedFile, data).model_dump()


# ---- aligned faces -----------------------------------------------------------------------


class AlignSettings(Schema):
    max_faces: Annotated[int | None, Field(ge=1), _expect("an integer >= 1 or null")]
    min_face: Annotated[float, Field(ge=0), _expect("a number >= 0")]
    face_confidence: Fraction
    exclude: Text


class Detector(Schema):
    name: Text
    package: Text
    detection_side: Positive


class AlignedFrame(Schema):
    size: _list(Positive, "[width, height]", 2)
    landmarks: _list(_list(Number, "[x, y]", 2), "five [x, y] points", 5)


class AlignedFile(Schema):
    """``aligned.json`` of ``train.py --prepare DIR --align-faces`` (:mod:`ctxenc_tf.data.aligned_faces`)."""

    format: Literal[ALIGNED_FORMAT]
    source: Text
    settings: AlignSettings
    detector: Detector
    frame: AlignedFrame
    photos_read: Count
    faces: Positive  # an alignment that finds no face writes nothing
    faces_too_small: Count
    faces_beyond_max: Count
    without_face: _list(Text, "a list of file names")
    unreadable: _list(_list(Text, "[file, reason]", 2), "a list of [file, reason]")


def read_aligned(path: str) -> dict:
    """The ``aligned.json`` at ``path``, checked (:class:`AlignedFile`), as the plain dict it
    holds. Raises :class:`DataError` (one line naming ``path`` and the field)."""
    data = _load_json(path, DataError)
    with _one_line(path, DataError):
        _validate(AlignedFile, data)
    return data


# ---- an export's config.json -------------------------------------------------------------


def read_model_config(path: str) -> ModelConfig:
    """The :class:`~ctxenc_tf.config.ModelConfig` in an export's ``config.json`` at
    ``path``: every field present, of its type and in range. Raises
    :class:`CheckpointError` (one line naming ``path`` and the field)."""
    data = _load_json(path, CheckpointError)
    with _one_line(path, CheckpointError):
        _validate(ModelConfigFile, data)
        return _build(ModelConfig, data)


# ---- a run's split.json -----------------------------------------------------------------


class SplitFile(Schema):
    """A run's ``split.json``: the files of its training and validation images, in order,
    relative to their folder (:func:`~ctxenc_tf.data.fingerprint.split_names`)."""

    train: _list(RelativePath, "a list of relative paths")
    val: _list(RelativePath, "a list of relative paths")


def read_split(path: str) -> dict:
    """``{"train": [name, ...], "val": [...]}`` from the run's ``split.json`` at ``path``,
    checked (:class:`SplitFile`). Raises :class:`DataError` (one line naming ``path`` and
    the field), ``FileNotFoundError`` when there is none."""
    data = _load_json(path, DataError, missing_ok=True)
    with _one_line(path, DataError):
        _validate(SplitFile, data)
    return data


# ---- CelebA's partition ------------------------------------------------------------------

PARTITION_LINE = re.compile(r"^\s*(\S+)\s+([012])\s*$")


def read_partition(path: str) -> list:
    """``(file name, split)`` for each line of CelebA's ``list_eval_partition.txt`` at
    ``path``: ``<file> <0|1|2>`` (0 train, 1 val, 2 test), each file once and inside
    ``img_align_celeba/``; blank lines are skipped. Raises :class:`DataError` naming
    ``path:line``."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file (byte {e.start} is not UTF-8)") from None
    entries, seen = [], {}
    for n, line in enumerate(lines, 1):
        if not line.split():
            continue
        match = PARTITION_LINE.match(line)
        if not match:
            raise DataError(f"{path}:{n}: expected '<file> <0|1|2>', got {line.strip()[:80]!r}")
        name, split = match.group(1), int(match.group(2))
        if os.path.isabs(name) or os.path.normpath(name).startswith(".."):
            raise DataError(f"{path}:{n}: {name!r} is not a file inside img_align_celeba/")
        if name in seen:  # in two splits, a validation image would be trained on
            raise DataError(f"{path}:{n}: {name!r} is listed again (first on line {seen[name]})")
        seen[name] = n
        entries.append((name, split))
    return entries


# ---- reading and the one error line ------------------------------------------------------


class _FieldError(Exception):
    """A field out of range in a dataclass built from a checked file."""

    def __init__(self, field: str, message: str):
        super().__init__(f"field '{field}': {message}")


def _shown(value, limit: int = 60) -> str:
    """``value`` as it reads in JSON, cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _RepeatedKey(Exception):
    """A key that appears twice in one JSON object: which value was meant is unknown."""


def _unique_keys(pairs):
    d = dict(pairs)
    if len(d) < len(pairs):
        seen = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return d


def _load_json(path: str, error, missing_ok: bool = False):
    """The JSON value in ``path``; ``error`` (one line naming ``path``) when it cannot be
    read, is not JSON or repeats a key in an object."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except FileNotFoundError:
        if missing_ok:
            raise
        raise error(f"{path}: missing") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a text file (byte {e.start} is not UTF-8)") from None
    except _RepeatedKey as e:
        raise error(f"{path}: field '{e}' appears twice") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply to be one of this project's files") from None
    except ValueError as e:  # json.JSONDecodeError says where
        raise error(f"{path}: not JSON ({e})") from None


def _validate(schema, data, context=None):
    return schema.model_validate(data, strict=True, context=context)


def _where(loc) -> str:
    """``('splits', 'train', 'names', 3)`` -> ``splits.train.names[3]`` (a dict key that
    fails is named as the key itself: pydantic adds ``[key]`` after it)."""
    text = ""
    for part in (p for p in loc if p != "[key]"):
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@contextlib.contextmanager
def _one_line(path: str, error):
    """Turn a failed check inside the ``with`` block into ``error("path: field ...")``."""
    try:
        yield
    except _FieldError as e:
        raise error(f"{path}: {e}") from None
    except pydantic.ValidationError as e:
        raise error(f"{path}: {describe(e.errors()[0])}") from None


def describe(err: dict) -> str:
    """One of pydantic's errors (``ValidationError.errors()``) as ``field 'x': ...``."""
    ctx = err.get("ctx") or {}
    field = _where(err["loc"]) or ctx.get("field", "")
    got = _shown(ctx["got"] if "got" in ctx else err["input"])
    if err["type"] == "missing":
        return f"field '{field}' is missing"
    if err["type"] == "extra_forbidden":
        return f"field '{field}' is not one of this file's fields"
    prefix = f"field '{field}': " if field else ""
    expected = {"literal_error": ctx.get("expected"), "expected": err["msg"], "model_type": "an object",
                "dict_type": "an object", "model_attributes_type": "an object"}.get(err["type"])
    if expected:
        return f"{prefix}expected {expected}, got {got}"
    return f"{prefix}{err['msg'][0].lower()}{err['msg'][1:]}, got {got}"

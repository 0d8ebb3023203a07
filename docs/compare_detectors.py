"""The face-detector comparison of docs/faces.md: mtcnn (the project's FaceDetector), dlib's
HOG detector with its 68-point predictor, mediapipe; 60 photos made from the bundled faces
with known similarity transforms (tests/face_photos.py). Not part of the package: dlib and
mediapipe go in virtual environments of their own (docs/faces.md has the commands). Run once
per detector with that detector's Python, from the repository's root:

  .venv/bin/python          docs/compare_detectors.py mtcnn     OUT_DIR
  /tmp/det-dlib/bin/python  docs/compare_detectors.py dlib      OUT_DIR
  /tmp/det-mp/bin/python    docs/compare_detectors.py mediapipe OUT_DIR

Writes OUT_DIR/det-results-<name>.json and prints its summary.
"""
import os
import sys

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS"):
    os.environ[var] = "2"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The thread counts above must be set before these import their libraries.
import json  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)
import face_photos  # noqa: E402
from ctxenc_tf.faces import alignment  # noqa: E402

cv2.setNumThreads(2)
DETECTION_SIDE = 1024


def reduce(rgb):
    """Copy reduced to DETECTION_SIDE on the longer side (as FaceDetector does) and the
    factors (sx, sy) from reduced pixels back to photo pixels."""
    h, w = rgb.shape[:2]
    factor = min(1.0, DETECTION_SIDE / max(h, w))
    if factor == 1.0:
        return rgb, 1.0, 1.0
    small = cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return small, w / small.shape[1], h / small.shape[0]


def make_mtcnn():
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    from ctxenc_tf.faces.detector import FaceDetector
    det = FaceDetector()

    def detect(rgb):
        faces = det.detect(rgb)
        return [np.asarray(f.landmarks, np.float64) for f in faces]  # largest first
    import mtcnn
    versions = {"mtcnn": getattr(mtcnn, "__version__", "1.0.0"), "tensorflow": tf.__version__}
    return detect, versions


def make_dlib():
    import dlib
    import face_recognition_models
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def detect(rgb):
        small, sx, sy = reduce(rgb)
        small = np.ascontiguousarray(small)
        rects = detector(small, 1)  # upsample once
        rects = sorted(rects, key=lambda r: -(r.width() * r.height()))
        out = []
        for r in rects:
            shape = predictor(small, r)
            p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)
            # iBUG 68: 36-41 = the eye on the image's left, 42-47 the other; 48 = image-left mouth corner
            five = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
            out.append((five + 0.5) * (sx, sy) - 0.5)
        return out
    versions = {"dlib": dlib.__version__, "face_recognition_models": face_recognition_models.__version__}
    return detect, versions


def make_mediapipe():
    import mediapipe as mp
    root = os.path.dirname(mp.__file__)
    models = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
              if f.endswith((".tflite", ".task", ".binarypb"))]
    has_solutions = True
    try:
        import mediapipe.solutions  # noqa: F401  (legacy face_mesh / face_detection)
    except ImportError as e:
        has_solutions = False
        reason = f"import mediapipe.solutions: {e}"
    if not has_solutions or not models:
        raise SystemExit(json.dumps({
            "name": "mediapipe", "versions": {"mediapipe": mp.__version__},
            "disqualified": "weights not in the wheel",
            "detail": (reason if not has_solutions else "") + f"; model files (.tflite/.task/.binarypb) in the "
                      f"wheel: {len(models)}; mediapipe.tasks FaceLandmarker/FaceDetector need a "
                      f"model_asset_path to a .task/.tflite file downloaded separately"}))
    raise SystemExit("unexpected: legacy solutions with models present; not implemented")


def main(name, out_dir):
    detect, versions = {"mtcnn": make_mtcnn, "dlib": make_dlib, "mediapipe": make_mediapipe}[name]()

    rng = np.random.default_rng(0)
    photos = []
    for i in range(60):
        angle = rng.uniform(-30, 30)
        scale = float(np.exp(rng.uniform(np.log(0.3), np.log(3))))
        idx = int(rng.integers(len(face_photos.face_files())))
        photo, m = face_photos.unaligned_photo(idx, angle, scale, seed=i)
        photos.append((photo, m, angle, scale, idx))

    detect(photos[0][0])  # warm-up
    rows, times = [], []
    for i, (photo, m, angle, scale, idx) in enumerate(photos):
        t0 = time.perf_counter()
        found = detect(photo)
        times.append(time.perf_counter() - t0)
        row = {"i": i, "angle": angle, "scale": scale, "idx": idx, "found": bool(found), "n": len(found)}
        if found:
            residual = face_photos.template_residual(alignment.celeba_alignment(found[0]), m)
            row["residual"] = residual.tolist()
        rows.append(row)

    big, big_m = face_photos.unaligned_photo(0, 10, 8.0, canvas=(3000, 4000), seed=1)
    detect(big)  # warm-up at this size
    big_times, big_found = [], None
    for _ in range(3):
        t0 = time.perf_counter()
        big_found = detect(big)
        big_times.append(time.perf_counter() - t0)
    big_res = (face_photos.template_residual(alignment.celeba_alignment(big_found[0]), big_m).tolist()
               if big_found else None)

    empty = face_photos.background((720, 960), 7)
    false_faces = len(detect(empty))

    found_rows = [r for r in rows if r["found"]]
    res = np.array([r["residual"] for r in found_rows]) if found_rows else np.zeros((0, 5))
    maxes = res.max(axis=1) if len(res) else np.zeros(0)
    summary = {
        "name": name, "versions": versions,
        "found": len(found_rows), "of": len(rows),
        "residual_mean": float(res.mean()) if len(res) else None,
        "max_median": float(np.median(maxes)) if len(maxes) else None,
        "max_p95": float(np.percentile(maxes, 95)) if len(maxes) else None,
        "max_worst": float(maxes.max()) if len(maxes) else None,
        "time_median_s": float(np.median(times)),
        "time_12mp_s_runs": big_times, "time_12mp_median_s": float(np.median(big_times)),
        "found_12mp": bool(big_found), "residual_12mp": big_res,
        "false_faces_no_face_photo": false_faces,
        "missed": [(r["i"], round(r["scale"], 3), round(r["angle"], 1)) for r in rows if not r["found"]],
        "multi": [(r["i"], r["n"]) for r in rows if r["n"] > 1],
        "rows": rows,
    }
    with open(os.path.join(out_dir, f"det-results-{name}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

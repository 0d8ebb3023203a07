"""Client for the exported model running in TensorFlow Serving (REST or gRPC).

``python -m ctxenc_tf serve-client photo.jpg --out completed.png`` sends a photo to
``http://localhost:8501`` (REST, the image as ``{"b64": ...}`` JSON) or, with
``--protocol grpc``, to ``localhost:8500`` (``tensorflow-serving-api`` PredictRequest) and
saves the completed image.

Requests are built from the signature the server reports (model metadata), not from
constants: the input name, dtype and image size come from the ``SignatureDef``, so the
same client works for any export and for ``serving_bytes`` (encoded photos, the default),
``serving_uint8`` and ``serving_default`` (pixels decoded and resized here).

With ``--load SECONDS`` it is a load test instead: ``--clients`` threads send one-photo
requests (the photos given, in turn) for that long and the throughput, p50/p95/p99
latency and errors are printed and written as JSON to ``--out`` (default ``load.json``).
"""

import argparse
import json
import time

from ctxenc_tf.cli.common import bounded, command_parser, fail
from ctxenc_tf.errors import ServingError
from ctxenc_tf.inference.load_test import run_load, summary
from ctxenc_tf.inference.serving_client import (
    DEFAULT_PORTS,
    connect,
    output_paths,
    read_photo_bytes,
)
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.output_dir import check_output_path, claim_targets


def _host(text):
    if not text or any(c.isspace() or c in "/?#@" for c in text):
        raise argparse.ArgumentTypeError(f"expected a host name or address, got {text!r}")
    return text


def parse_args(argv):
    parser = command_parser("serve-client", __doc__)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG/PNG photo(s) of any size")
    parser.add_argument("--out", metavar="PATH",
                        help="output .png for one image, else a directory (default: completed/); "
                             "with --load the JSON report (default: load.json)")
    parser.add_argument("--protocol", choices=sorted(DEFAULT_PORTS), default="rest",
                        help="REST (JSON, port 8501) or gRPC (port 8500); default rest")
    parser.add_argument("--host", default="localhost", type=_host, help="TF Serving host (default: localhost)")
    parser.add_argument("--port", type=bounded(int, 1, 65535), help="server port (default: 8501 REST, 8500 gRPC)")
    parser.add_argument("--model", default="ctxenc", help="model name on the server (default: ctxenc)")
    parser.add_argument("--version", type=bounded(int, 1, 2**63 - 1),
                        help="model version (default: the newest served)")
    parser.add_argument("--signature", default="serving_bytes",
                        help="serving_bytes (default: photo bytes in, PNG out), serving_uint8 "
                             "or serving_default (pixels resized by the client)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (never the input photos)")
    parser.add_argument("--timeout", type=bounded(float, 0.001, 86400.0), default=60.0,
                        help="seconds per request (default: 60)")
    load = parser.add_argument_group("load test")
    load.add_argument("--load", type=bounded(float, 0.1, 86400.0), metavar="SECONDS",
                      help="send requests for this long and report throughput and latency")
    load.add_argument("--clients", type=bounded(int, 1, 1024),
                      help="concurrent clients, each one request at a time (default: 4)")
    load.add_argument("--max-requests", type=bounded(int, 1, 10**9), metavar="N",
                      help="stop after this many requests (default: no limit)")
    args = parser.parse_args(argv)
    if args.load is None and (args.max_requests is not None or args.clients is not None):
        parser.error("--clients and --max-requests need --load")
    args.clients = args.clients or 4
    if args.out is None:
        args.out = "load.json" if args.load is not None else "completed"
    elif args.load is not None and not args.out.lower().endswith(".json"):
        parser.error(f"argument --out: with --load the report is JSON; expected a .json path, got {args.out!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    targets = [args.out] if args.load is not None else output_paths(args.images, args.out)
    check_output_path(args.out, "--out", "file" if targets == [args.out] else "folder")
    claim_targets(targets, args.images, args.overwrite)
    photos = [read_photo_bytes(p) for p in args.images]
    port = args.port or DEFAULT_PORTS[args.protocol]
    start = time.perf_counter()
    try:
        with connect(args.protocol, args.host, port, args.model, args.signature, args.version,
                     args.timeout) as served:
            if args.load is not None:
                requests = [served.request([photo]) for photo in photos]
                report = run_load(served, requests, args.clients, args.load, args.max_requests)
            else:
                pngs = served.complete(photos)
    except ServingError as e:
        fail(str(e))
    if args.load is not None:
        report.update(protocol=args.protocol, server=f"{args.host}:{port}", model=args.model,
                      version=args.version, signature=args.signature, photos=args.images)
        atomic.write_bytes(args.out, (json.dumps(report, indent=2) + "\n").encode())
        print(summary(report))
        print(f"report: {args.out}")
        return 0
    seconds = time.perf_counter() - start
    for source, target, png in zip(args.images, targets, pngs):
        atomic.write_bytes(target, png)
        print(f"{source} -> {target} ({len(png) / 1024:.1f} KiB)")
    print(f"{len(pngs)} image(s) completed by '{args.model}' over {args.protocol} in {seconds:.2f} s")
    return 0

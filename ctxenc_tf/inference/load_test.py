"""The load test: N concurrent clients send predict requests to TF Serving for T seconds
and the throughput, latency percentiles and errors are reported. The command is
``python -m ctxenc_tf serve-client PHOTO ... --load T`` (:mod:`ctxenc_tf.cli.serve_client`)."""

import threading
import time
from collections import Counter

import numpy as np

from ctxenc_tf.errors import ServingError, one_line

PERCENTILES = (50, 95, 99)


def _percentiles(latencies: list) -> dict:
    """Nearest-rank percentiles (the ``q``-th is a latency that was measured) in ms."""
    if not latencies:
        return {}
    ms = np.asarray(latencies) * 1000.0
    values = {f"p{q}": float(np.percentile(ms, q, method="inverted_cdf")) for q in PERCENTILES}
    return {**values, "mean": float(ms.mean()), "max": float(ms.max())}


def run_load(served, requests: list, clients: int, seconds: float, max_requests: int | None = None) -> dict:
    """Send ``requests`` (prepared by ``served.request``, used in turn) from ``clients``
    threads, each one request at a time, until ``seconds`` have passed or ``max_requests``
    were sent; wait for the last replies (each bounded by ``served.timeout``).

    A request that fails (server error, over capacity, no reply within the timeout) is
    counted under its one-line reason; nothing is retried. Returns the report: counts,
    ``elapsed_s``, ``requests_per_s`` and ``images_per_s`` (successful ones), latency
    percentiles in ms of the successful requests (``latency_ms``: p50/p95/p99, nearest
    rank, mean, max), ``first_request_ms`` (the first request sent, as a cold server
    shows it; ``None`` unless it succeeded) and ``errors`` ``{reason: count}``. Clients
    still waiting ``served.timeout + 5`` s after the time is up are left behind and
    counted in ``unfinished``.
    """
    lock = threading.Lock()
    latencies, errors, sent = [], Counter(), [0]
    first = {}
    started = time.monotonic()
    deadline = started + seconds

    def client():
        while True:
            with lock:
                if time.monotonic() >= deadline or (max_requests is not None and sent[0] >= max_requests):
                    return
                index = sent[0]
                sent[0] += 1
            count, _ = request = requests[index % len(requests)]
            t0 = time.monotonic()
            try:
                served.send(request)
                outcome = None
            except ServingError as e:
                outcome = str(e)
            except Exception as e:  # noqa: BLE001 - a load test counts every failure, it never dies of one
                outcome = f"{type(e).__name__}: {one_line(e)}"
            latency = time.monotonic() - t0
            with lock:
                if outcome is None:
                    latencies.append((latency, count))
                    if index == 0:
                        first["ms"] = latency * 1000.0
                else:
                    errors[outcome[:200]] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    # Every request ends within the client's timeout, so this join is bounded; a thread
    # still running after it is reported instead of waited for.
    for thread in threads:
        thread.join(max(0.0, deadline + served.timeout + 5.0 - time.monotonic()))
    elapsed = time.monotonic() - started
    with lock:
        ok = [latency for latency, _ in latencies]
        images = sum(count for _, count in latencies)
        return {
            "clients": clients, "seconds": seconds, "elapsed_s": elapsed,
            "requests": sent[0], "ok": len(ok), "failed": sum(errors.values()),
            "unfinished": sum(thread.is_alive() for thread in threads),
            "requests_per_s": len(ok) / elapsed, "images_per_s": images / elapsed,
            "latency_ms": _percentiles(ok), "first_request_ms": first.get("ms"),
            "errors": dict(errors.most_common()),
        }


def summary(report: dict) -> str:
    """The report as a few lines for the terminal."""
    latency = report["latency_ms"]
    lines = [(f"{report['ok']} of {report['requests']} requests succeeded in {report['elapsed_s']:.1f} s "
              f"from {report['clients']} clients: {report['requests_per_s']:.1f} requests/s, "
              f"{report['images_per_s']:.1f} images/s")]
    if latency:
        first = report["first_request_ms"]
        lines.append("latency ms: " + ", ".join(f"{k} {latency[k]:.1f}" for k in ("p50", "p95", "p99", "max"))
                     + ("" if first is None else f"; first request {first:.1f}"))
    lines += [f"failed x{n}: {reason}" for reason, n in report["errors"].items()]
    if report["unfinished"]:
        lines.append(f"{report['unfinished']} client(s) still waiting for a reply were left behind")
    return "\n".join(lines)


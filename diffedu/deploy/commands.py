"""The command line of chapter 11: `serve`, `loadtest` and `web` (python -m diffedu COMMAND --help)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parsers(commands) -> None:
    """Add serve, loadtest and web to the subcommands of `python -m diffedu`."""
    from diffedu.deploy.web import add_web_parser

    serve = commands.add_parser("serve", help="serve digits over HTTP: FastAPI + uvicorn, dynamic batching (chapter 11)",
                                description="Serve mnist-fast (and mini-sd for prompts) at http://HOST:PORT: POST /generate "
                                            "returns PNGs, GET /health the counters, GET / a page to try it.")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1, this machine "
                       "only; 0.0.0.0 in a container)")
    serve.add_argument("--port", type=positive_int, default=8000, help="default: 8000")
    add_service_options(serve)
    serve.add_argument("--workers", type=positive_int, default=1, help="uvicorn worker processes, each with its own "
                       "model (default: 1)")
    serve.add_argument("--threads", type=positive_int, help="CPU threads for each worker's PyTorch (default: PyTorch's choice)")

    load = commands.add_parser("loadtest", help="measure the service with many simulated clients (loopback only)",
                               description="Closed-loop load test: CLIENTS users each send a request, wait, send the next, "
                                           "for SECONDS. Without --url it starts a server of its own on 127.0.0.1.")
    load.add_argument("--url", help="a running service on this machine (default: start one)")
    load.add_argument("--clients", type=positive_int, default=10, help="simultaneous users (default: 10)")
    load.add_argument("--seconds", type=float, default=10.0, help="how long to measure (default: 10)")
    load.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring, unmeasured (default: 2)")
    load.add_argument("--max-requests", type=positive_int, default=100_000, help="stop after this many (default: 100000)")
    load.add_argument("--n", type=positive_int, default=1, help="digits per request (default: 1)")
    add_service_options(load)
    load.add_argument("--out", type=Path, help="also write the results to this JSON file")
    add_web_parser(commands)


def add_service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="run mnist-fast with PyTorch or "
                        "with ONNX Runtime (exported on first use into build/deploy; default: torch)")
    parser.add_argument("--no-batching", action="store_true", help="run every request alone (the baseline)")
    parser.add_argument("--max-batch", type=positive_int, default=64, help="most digits in one batch (default: 64)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests (default: 5)")
    parser.add_argument("--worker-thread", action="store_true", help="run each batch in a worker thread (default: on the "
                        "event loop's thread, faster with PyTorch here)")


def service_flags(args: argparse.Namespace) -> list[str]:
    """The serve options of `args`, as command-line flags for a server of loadtest's own."""
    flags = ["--backend", args.backend, "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    return flags + (["--no-batching"] if args.no_batching else []) + (["--worker-thread"] if args.worker_thread else [])


def run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from diffedu.deploy.server import serve

        serve(args.host, args.port, args.workers, threads=args.threads, backend=args.backend, batching=not args.no_batching,
              max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, worker_thread=args.worker_thread)
        return 0
    if args.command == "loadtest":
        from diffedu.deploy.loadtest import check_loopback, closed_loop, running_server

        if args.url:
            check_loopback(args.url)
            results = closed_loop(args.url, args.clients, args.seconds, args.max_requests, args.n, args.warmup)
        else:
            with running_server(*service_flags(args)) as url:
                results = closed_loop(url, args.clients, args.seconds, args.max_requests, args.n, args.warmup)
        print(json.dumps(results, indent=2))
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        return 1 if results["errors"] else 0
    from diffedu.deploy.web import run_web

    return run_web(args)

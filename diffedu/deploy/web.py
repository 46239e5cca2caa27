"""Chapter 11's "in the browser, no server" path: a static web page that draws MNIST digits on the
reader's own machine, with onnxruntime-web (ONNX Runtime compiled to WebAssembly).

`build_web(out_dir)` writes a folder of plain files and nothing else is needed to use it:

    mnist-fast.onnx                  the whole 4-step sampler of mnist-fast, weights inside (export_sampler)
    index.html, app.js, style.css    the page (diffedu/deploy/assets/): seed in, 10 x 10 digits out
    ort.wasm.min.js                  onnxruntime-web's WebAssembly-only build (a script: the global `ort`)
    ort-wasm-simd-threaded.mjs/.wasm the runtime itself, which ort.wasm.min.js loads from the same folder

Any static file host serves it (a course website, a USB stick opened through `python -m http.server`);
the digits are computed by the browser, so the host does no work and sees no data. onnxruntime-web
comes from npm (web/package.json pins it): `npm ci --prefix web` or `./course.sh setup` fetches it.

    python -m diffedu web --out build/web            build the folder
    python -m diffedu web --out build/web --serve    ... and serve it on http://127.0.0.1:8001/ (this machine only)

The server sends the two headers that make a page "cross-origin isolated" (COOP and COEP), which
lets onnxruntime-web use several threads; on a host without them the page runs on one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import logging
import shutil
import sys
import threading
import warnings
from pathlib import Path

MODEL_FILE = "mnist-fast.onnx"
# What ort.wasm.min.js loads at run time, and nothing more: the script imports
# ort-wasm-simd-threaded.mjs from `ort.env.wasm.wasmPaths`, which fetches ort-wasm-simd-threaded.wasm
# beside it. (The other files in dist/ are other builds: WebGPU, WebGL, the bundles, source maps.)
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "app.js", "style.css")
ASSETS = Path(__file__).resolve().parent / "assets"
REPO_ROOT = Path(__file__).resolve().parents[2]  # the course's folder (diffedu/deploy/web.py -> ../../..)
DEFAULT_NODE_MODULES = REPO_ROOT / "web" / "node_modules"
DEFAULT_PORT = 8001


class WebBuildError(RuntimeError):
    """The page cannot be built (onnxruntime-web missing); the message is one line saying what to run."""


def ort_dist(node_modules: str | Path | None = None) -> Path:
    """The onnxruntime-web dist/ folder holding ORT_FILES, or WebBuildError saying how to get it."""
    node_modules = Path(node_modules) if node_modules is not None else DEFAULT_NODE_MODULES
    dist = node_modules / "onnxruntime-web" / "dist"
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    if missing:
        where = "no onnxruntime-web" if len(missing) == len(ORT_FILES) else f"onnxruntime-web without {', '.join(missing)}"
        raise WebBuildError(f"{where} in {node_modules}: run `npm ci --prefix web` in {REPO_ROOT} "
                            "(or `./course.sh setup`, which does it)")
    return dist


def build_web(out_dir: str | Path, steps: int = 4, node_modules: str | Path | None = None,
              model_file: str | Path | None = None) -> Path:
    """Write the static page into `out_dir` (made if missing; files of the same names replaced): the
    `steps`-step sampler of mnist-fast as out_dir/mnist-fast.onnx, onnxruntime-web's WebAssembly files
    from `node_modules` (default: the course's web/node_modules) and the page. Returns out_dir.
    Takes some seconds (the ONNX export; none with `model_file`, a sampler exported before, which is
    copied); checks for onnxruntime-web first."""
    dist = ort_dist(node_modules)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ORT_FILES:
        shutil.copyfile(dist / name, out_dir / name)
    for name in PAGE_FILES:
        shutil.copyfile(ASSETS / name, out_dir / name)

    if model_file is not None:
        shutil.copyfile(model_file, out_dir / MODEL_FILE)
        return out_dir
    from diffedu.deploy.onnx_export import export_sampler  # imports torch: only once there is work to do
    from diffedu.zoo import mnist_fast

    unet = mnist_fast.load()
    with quiet_exporter():
        export_sampler(unet, out_dir / MODEL_FILE, steps=steps)
    return out_dir


@contextlib.contextmanager
def quiet_exporter():
    """Silence the exporter's warnings and log lines (about torch.export's internals, not about this
    model): the command's output stays the few lines that matter. Errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class PageRequestHandler(http.server.SimpleHTTPRequestHandler):
    """http.server's file handler with the right types for .mjs and .wasm (a browser refuses a module
    script served as anything but JavaScript, and compiles .wasm as it downloads only if it is
    application/wasm) and the cross-origin isolation headers that allow WebAssembly threads."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                      ".onnx": "application/octet-stream"}
    quiet = False

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")  # a rebuilt page is seen at once
        super().end_headers()

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def make_server(directory: str | Path, port: int = DEFAULT_PORT, quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the files in `directory` on 127.0.0.1 (this machine only) at `port` (0: any
    free port; the one taken is server.server_address[1]). Call serve_forever() on it."""
    handler = type("Handler", (PageRequestHandler,), {"quiet": quiet})
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(Path(directory).resolve())))


def port_int(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535 (0: any free port), got {value}")
    return value


def add_web_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `web` command to the command line's subparsers (what `parser.add_subparsers()` returned)."""
    web = subparsers.add_parser("web", help="build the in-browser digit page (chapter 11): static files, onnxruntime-web",
                                description="Build a static web page that draws MNIST digits in the browser with "
                                            "mnist-fast and onnxruntime-web (WebAssembly): no server beyond static "
                                            "files. Needs `npm ci --prefix web` once (./course.sh setup does it).")
    web.add_argument("--out", type=Path, default=Path("build/web"), help="the folder to write (default: build/web)")
    web.add_argument("--serve", action="store_true", help="then serve the folder on http://127.0.0.1:PORT/ "
                     "(this machine only) until Ctrl-C")
    web.add_argument("--port", type=port_int, default=DEFAULT_PORT, help=f"the port for --serve (default: {DEFAULT_PORT})")
    web.add_argument("--node-modules", type=Path, help="where onnxruntime-web was installed (default: the course's "
                     "web/node_modules)")
    return web


def run_web(args: argparse.Namespace) -> int:
    """The `web` command: build into args.out, then serve it if args.serve. Returns the exit code;
    every failure is one line on stderr (exit 1)."""
    from diffedu.models.checkpoints import CheckpointError

    def fail(message: str) -> int:
        print(f"python -m diffedu web: {message}", file=sys.stderr)
        return 1

    server = None
    try:
        if args.serve:  # take the port first: a busy one fails at once, not after the build
            server = make_server(args.out, args.port)
        out = build_web(args.out, node_modules=args.node_modules)
    except (WebBuildError, CheckpointError, OSError) as error:
        if server is not None:
            server.server_close()
        if isinstance(error, WebBuildError):
            return fail(str(error))
        if isinstance(error, CheckpointError):
            return fail(str(error).splitlines()[0])
        what = f"port {args.port} on 127.0.0.1" if args.serve and server is None else str(error.filename or args.out)
        return fail(f"{what}: {error.strerror or error}")
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir() if p.name in (MODEL_FILE, *ORT_FILES, *PAGE_FILES)))}")
    if server is None:
        print(f"serve it with: python -m diffedu web --out {out} --serve (or any static file server)")
        return 0
    print(f"serving {out} on http://127.0.0.1:{server.server_address[1]}/ (this machine only); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


def draw_in_chromium(folder: str | Path, seeds: tuple[int, ...] = (0,), screenshot: str | Path | None = None) -> list[dict]:
    """Open the built page in headless Chromium (the OS package, driven by Playwright), served from 127.0.0.1,
    with every other address refused; draw the grid once per seed. Returns, per seed, the page's
    {"seconds", "pixels", "threads"} and the addresses it tried to reach outside (none expected)."""
    from diffedu.deploy import outside_event_loop

    return outside_event_loop(_draw_in_chromium, folder, seeds, screenshot)


def _draw_in_chromium(folder, seeds, screenshot) -> list[dict]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise WebBuildError("no Chromium here: install the OS package (apt-get install chromium)")
    server = make_server(folder, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    results = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                context = browser.new_context(viewport={"width": 760, "height": 1000})
                context.route("**/*", only_local)
                page = context.new_page()
                page.goto(base + "index.html")
                for seed in seeds:
                    if results or seed != 0:  # the page draws seed 0 by itself on load
                        page.evaluate("window.diffeduResult = undefined")
                        page.fill("#seed", str(seed))
                        page.click("#generate")
                    page.wait_for_function("window.diffeduResult || window.diffeduError", timeout=120_000)
                    if page.evaluate("window.diffeduError"):
                        raise WebBuildError(f"the page failed: {page.evaluate('window.diffeduError')}")
                    results.append(dict(page.evaluate("window.diffeduResult"), seed=seed, outside=list(outside)))
                if screenshot is not None:
                    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshot), full_page=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return results

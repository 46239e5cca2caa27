"""Chapter 11's in-browser page (diffedu/deploy/web.py): built once into a temporary folder, served on
127.0.0.1 by the course's own server, opened in headless Chromium (Playwright driving the OS's
Chromium). The page draws its 10 x 10 grid of digits with onnxruntime-web on its own: it asks nothing
of any other address, takes at most 5 s for the 100 digits, draws the digit of each row (the course's
classifier agrees on >= 95 of them), draws exactly what ONNX Runtime in Python draws from the same
noise, and draws the same grid again for the same seed. Its noise is standard normal. A screenshot
goes to build/web-test/page.png.

Needs `npm ci --prefix web` (onnxruntime-web), Playwright and the OS package chromium; without one
of them the browser test is skipped and says which is missing.
"""

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from diffedu.deploy import web

pytestmark = pytest.mark.slow  # chapter 11 draws the page's grid in Chromium in the suite; this checks it in full

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "build" / "web-test" / "page.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECONDS_MAX = 5.0  # for the 100 digits, as the page measures it
ACCURACY_MIN = 0.95

CANVAS_STATS = """() => {
  const canvas = document.getElementById("grid");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let bright = 0, dark = 0;
  for (let i = 0; i < data.length; i += 4) { if (data[i] > 200) bright++; else if (data[i] < 40) dark++; }
  const pixels = data.length / 4;
  return {width: canvas.width, height: canvas.height, bright: bright / pixels, dark: dark / pixels};
}"""

NOISE_STATS = """() => {
  const x = gaussianNoise(12345, 200000);
  let mean = 0; for (const v of x) mean += v; mean /= x.length;
  let variance = 0; for (const v of x) variance += (v - mean) ** 2; variance /= x.length;
  return {mean: mean, std: Math.sqrt(variance), same: gaussianNoise(7, 10).join() === gaussianNoise(7, 10).join()};
}"""


def test_missing_onnxruntime_web_is_one_clear_line(tmp_path):
    with pytest.raises(web.WebBuildError) as error:
        web.build_web(tmp_path / "out", node_modules=tmp_path / "node_modules")
    message = str(error.value)
    assert "\n" not in message and "npm ci --prefix web" in message and "course.sh setup" in message, message
    assert not (tmp_path / "out").exists()  # nothing half-built


@pytest.fixture(scope="module")
def page_run(tmp_path_factory, mnist_fast_onnx):
    """Build, serve, open the page once; everything the tests look at."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    if CHROMIUM is None:
        pytest.skip("no Chromium here: install the OS package (apt-get install chromium); Playwright's own browser "
                    "download is not used")
    try:
        web.ort_dist()
    except web.WebBuildError as error:
        pytest.skip(str(error))

    folder = web.build_web(tmp_path_factory.mktemp("web"), model_file=mnist_fast_onnx)
    server = web.make_server(folder, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    outside, problems = [], []

    def only_local(route):  # every request goes through here: anything not to our server is refused
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                context = browser.new_context(viewport={"width": 760, "height": 1000})
                context.route("**/*", only_local)
                page = context.new_page()
                page.on("console", lambda message: message.type == "error" and problems.append(message.text))
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.goto(base + "index.html")
                page.wait_for_function("window.diffeduResult || window.diffeduError", timeout=120_000)
                error = page.evaluate("window.diffeduError")
                assert not error, f"the page failed: {error}"
                first = page.evaluate("window.diffeduResult")
                status = page.inner_text("#status")
                title = page.title()
                canvas = page.evaluate(CANVAS_STATS)
                noise = page.evaluate("Array.from(gaussianNoise(0, 100 * 784))")
                noise_stats = page.evaluate(NOISE_STATS)
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)

                page.evaluate("window.diffeduResult = undefined")  # the same seed again, by the button
                page.fill("#seed", "0")
                page.click("#generate")
                page.wait_for_function("window.diffeduResult || window.diffeduError", timeout=60_000)
                again = page.evaluate("window.diffeduResult")
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return dict(folder=folder, first=first, again=again, status=status, title=title, canvas=canvas, noise=noise,
                noise_stats=noise_stats, outside=outside, problems=problems)


def grid_images(result) -> torch.Tensor:
    """The page's 100 digits as (100, 1, 28, 28) in [-1, 1]; image d * 10 + k is row d, column k."""
    pixels = np.asarray(result["pixels"], dtype=np.float32)
    assert pixels.shape == (100 * 28 * 28,) and pixels.min() >= 0 and pixels.max() <= 255
    return torch.from_numpy(pixels / 127.5 - 1).reshape(100, 1, 28, 28)


def test_the_page_asks_nothing_of_other_addresses(page_run):
    assert page_run["outside"] == []
    assert page_run["problems"] == []
    built = sorted(p.name for p in page_run["folder"].iterdir())
    assert built == sorted([web.MODEL_FILE, *web.ORT_FILES, *web.PAGE_FILES])
    for name in web.PAGE_FILES:
        text = (page_run["folder"] / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def test_100_digits_within_5_seconds(page_run):
    seconds = page_run["first"]["seconds"]
    assert 0 < seconds <= SECONDS_MAX, f"the page took {seconds:.2f} s for 100 digits"
    assert page_run["title"] == "diffedu: digits drawn in your browser"
    assert page_run["status"].startswith(f"100 digits in {seconds:.2f} s (onnxruntime-web, WebAssembly, "), page_run["status"]


def test_each_row_draws_its_digit(page_run):
    from diffedu.metrics import accuracy, load_classifier

    labels = torch.arange(10).repeat_interleave(10)  # row d: ten times the digit d
    score = accuracy(load_classifier(), grid_images(page_run["first"]), labels)
    assert score >= ACCURACY_MIN, f"the classifier recognises {score:.0%} of the grid's digits"


def test_the_page_draws_what_onnx_runtime_in_python_draws(page_run):
    from diffedu.deploy.onnx_export import OnnxSampler

    noise = torch.tensor(page_run["noise"], dtype=torch.float32).reshape(100, 1, 28, 28)
    images = OnnxSampler(page_run["folder"] / web.MODEL_FILE, threads=1)(noise, torch.arange(10).repeat_interleave(10))
    expected = ((images + 1) * 127.5).round().clamp(0, 255)
    difference = (expected - (grid_images(page_run["first"]) + 1) * 127.5).abs()
    assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())


def test_same_seed_same_grid_and_normal_noise(page_run):
    assert page_run["again"]["pixels"] == page_run["first"]["pixels"]
    stats = page_run["noise_stats"]
    assert abs(stats["mean"]) < 0.01 and abs(stats["std"] - 1) < 0.01 and stats["same"], stats


def test_the_grid_is_drawn(page_run):
    canvas = page_run["canvas"]
    assert canvas["width"] >= 560 and canvas["height"] >= 560
    assert 0.03 < canvas["bright"] < 0.5 and canvas["dark"] > 0.4, canvas  # white strokes on black, not blank
    assert SCREENSHOT.stat().st_size > 20_000

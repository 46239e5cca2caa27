// diffedu, chapter 11: MNIST digits drawn in the browser.
//
// What happens when you press "Generate":
//   1. a seeded random number generator makes the starting noise x_1 ~ N(0, I): 100 images of 28 x 28;
//   2. the labels say which digit each image should become: 0 for the first ten, 1 for the next ten, ...;
//   3. onnxruntime-web runs mnist-fast.onnx - the whole 4-step Euler sampler of chapter 08, exported
//      by diffedu.deploy.export_sampler - on all 100 at once, in WebAssembly, on this computer;
//   4. the result, pixels in [-1, 1], becomes gray levels 0..255 and is drawn as a 10 x 10 grid.
// No server computes anything: it only sent this folder's files.
"use strict";

const MODEL_URL = "mnist-fast.onnx";
const DIGITS = 10;          // rows: the digits 0..9, top to bottom
const PER_DIGIT = 10;       // columns: ten samples of each digit
const BATCH = DIGITS * PER_DIGIT;
const SIZE = 28;            // MNIST images are 28 x 28 pixels, one channel
const PIXELS = SIZE * SIZE;

// How the grid is drawn on the canvas (in canvas pixels).
const SCALE = 2;            // each image pixel becomes a 2 x 2 block
const CELL = SIZE * SCALE;  // 56
const GAP = 6;              // between two images
const PAD = 12;             // around the grid
const LABEL = 30;           // the column on the left with the digit of each row

// ---------------------------------------------------------------------------------------------
// 1. Random numbers from a seed.
//
// Math.random() cannot be seeded, so we use mulberry32, a tiny generator: a 32-bit state is
// advanced and scrambled on each call, giving numbers uniform in [0, 1). The same seed gives the
// same sequence on every browser, so the same seed gives the same digits.
function mulberry32(seed) {
  let state = seed >>> 0;  // as an unsigned 32-bit integer
  return function next() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;  // divide by 2^32: a number in [0, 1)
  };
}

// n numbers from the standard normal distribution N(0, 1), by the Box-Muller transform: two
// uniform numbers u1, u2 give two independent normal ones, r cos(2 pi u2) and r sin(2 pi u2),
// with r = sqrt(-2 ln u1). A Float32Array, as the model's input wants.
function gaussianNoise(seed, n) {
  const uniform = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - uniform();  // in (0, 1]: ln(u1) is finite
    const u2 = uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// 2. The labels: image number i = d * 10 + k (row d, column k) should become the digit d.
// The model takes int64 labels, which JavaScript holds as BigInt (hence the `n` suffix).
function gridLabels() {
  const labels = new BigInt64Array(BATCH);
  for (let i = 0; i < BATCH; i++) labels[i] = BigInt(Math.floor(i / PER_DIGIT));
  return labels;
}

// ---------------------------------------------------------------------------------------------
// 3. onnxruntime-web's settings, made before the first model is loaded.
//
// Its WebAssembly files (ort-wasm-simd-threaded.mjs and .wasm) are in this page's own folder.
// Several threads need SharedArrayBuffer, which browsers allow only on "cross-origin isolated"
// pages (served with the COOP and COEP headers, as `python -m diffedu web --serve` does);
// anywhere else we ask for one thread.
function configureRuntime() {
  ort.env.wasm.wasmPaths = "./";
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  return ort.env.wasm.numThreads;
}

// The inference session (the model, parsed and ready to run) is made once, on first use.
let sessionPromise = null;
function getSession() {
  if (sessionPromise === null) {
    sessionPromise = ort.InferenceSession.create(MODEL_URL, {
      executionProviders: ["wasm"],  // the CPU, through WebAssembly
      graphOptimizationLevel: "all",
    });
    sessionPromise.catch(() => { sessionPromise = null; });  // a failed load may be tried again
  }
  return sessionPromise;
}

// ---------------------------------------------------------------------------------------------
// 4. Generate: noise and labels in, 100 digits out, as gray levels 0..255.
// Returns {seconds, gray}: the time the model took and a Uint8Array of 100 * 784 gray levels,
// image after image (row d, column k is image d * 10 + k), each 28 rows of 28 pixels.
async function generate(seed, session) {
  const noise = new ort.Tensor("float32", gaussianNoise(seed, BATCH * PIXELS), [BATCH, 1, SIZE, SIZE]);
  const labels = new ort.Tensor("int64", gridLabels(), [BATCH]);

  const start = performance.now();
  const outputs = await session.run({ noise: noise, labels: labels });  // all 100 in one batch
  const seconds = (performance.now() - start) / 1000;

  const images = outputs.images.data;  // Float32Array, values in [-1, 1]: -1 black, +1 white
  const gray = new Uint8Array(images.length);
  for (let i = 0; i < images.length; i++) {
    const level = Math.round((images[i] + 1) * 127.5);  // [-1, 1] -> [0, 255]
    gray[i] = Math.min(255, Math.max(0, level));
  }
  return { seconds: seconds, gray: gray };
}

// ---------------------------------------------------------------------------------------------
// 5. Drawing: each image goes into a small 28 x 28 canvas, which is copied, enlarged, into its
// cell of the grid; the digit of each row is written on the left.
const canvas = document.getElementById("grid");
canvas.width = PAD + LABEL + PER_DIGIT * CELL + (PER_DIGIT - 1) * GAP + PAD;
canvas.height = PAD + DIGITS * CELL + (DIGITS - 1) * GAP + PAD;

function drawGrid(gray) {
  const context = canvas.getContext("2d");
  context.fillStyle = "#0b0d12";
  context.fillRect(0, 0, canvas.width, canvas.height);

  const tile = document.createElement("canvas");
  tile.width = SIZE;
  tile.height = SIZE;
  const tileContext = tile.getContext("2d");
  const rgba = tileContext.createImageData(SIZE, SIZE);  // 4 bytes per pixel: red, green, blue, alpha

  context.imageSmoothingEnabled = false;  // enlarge by repeating pixels, not by blurring them
  context.font = "600 20px system-ui, sans-serif";
  context.textAlign = "center";
  context.textBaseline = "middle";
  for (let d = 0; d < DIGITS; d++) {
    const y = PAD + d * (CELL + GAP);
    context.fillStyle = "#8b93a7";
    context.fillText(String(d), PAD + LABEL / 2 - 3, y + CELL / 2);
    for (let k = 0; k < PER_DIGIT; k++) {
      const first = (d * PER_DIGIT + k) * PIXELS;  // where image (d, k) starts in `gray`
      for (let p = 0; p < PIXELS; p++) {
        const level = gray[first + p];
        rgba.data[4 * p] = level;
        rgba.data[4 * p + 1] = level;
        rgba.data[4 * p + 2] = level;
        rgba.data[4 * p + 3] = 255;  // opaque
      }
      tileContext.putImageData(rgba, 0, 0);
      context.drawImage(tile, PAD + LABEL + k * (CELL + GAP), y, CELL, CELL);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 6. The page: the form, the status line, errors.
const form = document.getElementById("controls");
const seedInput = document.getElementById("seed");
const button = document.getElementById("generate");
const statusLine = document.getElementById("status");
const details = document.getElementById("details");
const errorBox = document.getElementById("error");

// Let the browser repaint (the status line, the disabled button) before the model keeps it busy.
function nextPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

function showError(error) {
  const message = (error && error.message) || String(error);
  window.diffeduError = message;  // for the course's test
  errorBox.textContent = "Something went wrong: " + message;
  errorBox.hidden = false;
  statusLine.textContent = "No digits this time.";
}

// The seed typed in: a whole number from 0 to 2^32 - 1 (what mulberry32 takes).
function readSeed() {
  const text = seedInput.value.trim();
  if (!/^\d+$/.test(text) || Number(text) > 4294967295) {
    throw new Error(`the seed must be a whole number from 0 to 4294967295, not "${seedInput.value}"`);
  }
  return Number(text);
}

let threads = null;

async function run() {
  button.disabled = true;
  errorBox.hidden = true;
  window.diffeduError = undefined;
  try {
    const seed = readSeed();
    if (threads === null) threads = configureRuntime();
    statusLine.textContent = "Loading the model\u2026";
    await nextPaint();
    const loadStart = performance.now();
    const session = await getSession();
    const loadSeconds = (performance.now() - loadStart) / 1000;

    statusLine.textContent = `Drawing 100 digits (seed ${seed})\u2026`;
    await nextPaint();
    const result = await generate(seed, session);
    drawGrid(result.gray);

    const threadWord = threads === 1 ? "thread" : "threads";
    statusLine.textContent =
      `100 digits in ${result.seconds.toFixed(2)} s (onnxruntime-web, WebAssembly, ${threads} ${threadWord})`;
    if (loadSeconds > 0.01) details.textContent = `Seed ${seed}. The model, ${MODEL_URL}, loaded in ${loadSeconds.toFixed(2)} s.`;
    else details.textContent = `Seed ${seed}.`;
    // For the course's test: the time and every gray level, image (row d, column k) = d * 10 + k.
    window.diffeduResult = { seconds: result.seconds, pixels: Array.from(result.gray), seed: seed, threads: threads };
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();  // stay on the page: no form submission
  run();
});

// An error outside run() (ort.wasm.min.js missing, say) is shown too.
window.addEventListener("error", (event) => showError(event.error || event.message));
window.addEventListener("unhandledrejection", (event) => showError(event.reason));

// On load: one grid with seed 0.
if (typeof ort === "undefined") {
  showError(new Error("onnxruntime-web (ort.wasm.min.js) did not load: rebuild the page with `python -m diffedu web`"));
} else {
  run();
}

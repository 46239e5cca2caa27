"""From notebook to product (chapter 11): the sampler as one ONNX graph (onnx_export), dynamic batching
(batching), a FastAPI service (server), a load test (loadtest), a page that draws digits in the browser
with onnxruntime-web (web), the command line (commands) and where the time goes (profiling)."""

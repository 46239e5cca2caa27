"""From notebook to product (chapter 11): the sampler as one ONNX graph (onnx_export), dynamic batching
(batching), a FastAPI service (server), a load test (loadtest), a page that draws digits in the browser
with onnxruntime-web (web), the command line (commands) and where the time goes (profiling)."""

from __future__ import annotations

from collections.abc import Callable


def outside_event_loop(fn: Callable, *args):
    """fn(*args), in a thread of its own when this thread already runs an asyncio event loop (as Jupyter's
    kernel does): asyncio.run and Playwright's synchronous API both refuse to run inside one."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()

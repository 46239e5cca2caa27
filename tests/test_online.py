"""The online check answers quickly and never raises."""

import time

import pytest

from diffedu.course.online import can_reach


def test_forced_offline_makes_no_request(monkeypatch):
    monkeypatch.setenv("DIFFEDU_OFFLINE", "1")
    start = time.perf_counter()
    assert can_reach("https://huggingface.co") is False
    assert time.perf_counter() - start < 0.1


def test_unreachable_addresses_are_false_not_errors(monkeypatch):
    monkeypatch.delenv("DIFFEDU_OFFLINE", raising=False)
    start = time.perf_counter()
    assert can_reach("http://127.0.0.1:9", timeout=2.0) is False  # nothing listens on the discard port
    assert can_reach("not a url", timeout=2.0) is False
    assert time.perf_counter() - start < 5.0


def test_a_local_server_is_reachable_whatever_its_status(monkeypatch):
    import http.server
    import threading

    monkeypatch.delenv("DIFFEDU_OFFLINE", raising=False)

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert can_reach(f"http://127.0.0.1:{server.server_port}/missing", timeout=2.0) is True
    finally:
        server.shutdown()


def test_bad_timeout_is_explained():
    with pytest.raises(ValueError, match="timeout must be > 0"):
        can_reach(timeout=0)

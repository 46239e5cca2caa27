"""Is the internet there? One quick, bounded check before any optional online path.

Every notebook runs offline; some cells add an online path (real Stable Diffusion weights,
Inception features). They call `can_reach` first, which answers within `timeout` seconds
and never raises, so a classroom on bad Wi-Fi gets one line of explanation, not a hang.

    DIFFEDU_OFFLINE=1   forces every check to say "offline" (no network traffic at all).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

OFFLINE_ENV_VAR = "DIFFEDU_OFFLINE"
HUB_URL = "https://huggingface.co"


def forced_offline() -> bool:
    """True when DIFFEDU_OFFLINE is set to 1 (or true/yes/on)."""
    return os.environ.get(OFFLINE_ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def can_reach(url: str = HUB_URL, timeout: float = 3.0) -> bool:
    """True if `url` answers an HTTP HEAD request (any status) within `timeout` seconds.

    False, without raising, when offline, when DNS or the connection fails, on a timeout,
    or when DIFFEDU_OFFLINE=1.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if forced_offline():
        return False
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:  # the server answered (404, 401, ...): the network is there
        return True
    except (urllib.error.URLError, OSError, ValueError):  # no route, refused, timed out, bad URL
        return False

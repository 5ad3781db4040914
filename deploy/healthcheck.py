"""The container's health check: GET /readyz on the port warnd's configuration names.

It reads the same configuration `warnd serve` does (WARND_CONFIG, then the WARND_*
environment variables), so changing `port` there moves the check with it; nothing here
hard-codes 8080. Exit 0 when warnd answers 200, 1 otherwise (Docker's contract).
"""
from __future__ import annotations

import os
import sys
import urllib.request

from warnd.config import load_config

TIMEOUT_SECONDS = 2.0
ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}


def main() -> int:
    config = load_config(os.environ.get("WARND_CONFIG") or None)
    host = os.environ.get("WARND_HEALTH_HOST") or ("127.0.0.1" if config.host in ANY_ADDRESS else config.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{config.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as resp:  # noqa: S310 - a local address
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Screenshot one group of a model's review in the FiftyOne App (docs/review-group.png).

Usage, after `make demo` (needs Debian's `chromium`: `apt-get install -y chromium`):

    COLORIZATION_HOME=.demo .venv/bin/python tools/screenshot_review.py [MODEL] [--out PNG]

Serves `colorize review MODEL` on a free loopback port, opens the worst group's modal
(grayscale | colorized | original) in headless Chromium, saves the picture and stops the App.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="model id (default: the champion)")
    parser.add_argument("--out", default=str(REPO / "docs" / "review-group.png"),
                        help="PNG to write")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from colorization import review, versions

    model_id = versions.read_card(args.model)["model_id"]
    name = review.model_dataset_name(model_id)
    worst = review.load(name).sort_by(review.SORT_FIELD, reverse=True).first()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = subprocess.Popen([sys.executable, "-m", "colorization.cli", "review", model_id,
                            "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            except OSError:
                time.sleep(1)
        url = f"{review.app_url(name, port=port)}?groupId={worst.group.id}&id={worst.id}"
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=1400,800",
                        "--virtual-time-budget=30000", f"--screenshot={args.out}", url],
                       check=True, timeout=180, capture_output=True)
    finally:
        app.send_signal(signal.SIGINT)
        app.wait(60)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

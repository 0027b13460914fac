"""`python -m tests.fake_resend [--rate-limit N]`: prints `READY <url>` once listening."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from tests.fake_resend.app import create_app
from tests.fake_resend.server import _bound_socket
from tests.fake_resend.state import FakeResend, email_validator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate-limit", type=float, default=None)
    parser.add_argument("--api-key", default="re_test_key")
    parser.add_argument("--boost", action="store_true", help="Raise CPU priority if allowed (exact arrival times).")
    args = parser.parse_args()
    if args.boost:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -10)
        except OSError:
            pass  # not allowed here: the fake still works, its timestamps are just noisier on a busy machine
    email_validator()  # load the OpenAPI schema before saying READY
    fake = FakeResend(api_keys={args.api_key}, rate_limit=args.rate_limit)
    sock = _bound_socket()
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    server = uvicorn.Server(uvicorn.Config(create_app(fake), log_level="critical", access_log=False))
    print(f"READY http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # nobody reads the pipe after READY
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

"""Shared state of one CLI invocation: the config path and the lazily opened runtime."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from digest.cli.output import json_safe, make_console
from digest.runtime import Runtime, open_runtime

out = make_console()


@dataclass
class _State:
    config_path: str | None = None
    runtime: Runtime | None = None


state = _State()


def runtime() -> Runtime:
    if state.runtime is None:
        state.runtime = open_runtime(state.config_path)
    return state.runtime


def print_json(data: Any) -> None:
    sys.stdout.write(json_safe(json.dumps(data, indent=2, ensure_ascii=False, default=str)) + "\n")

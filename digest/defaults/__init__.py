"""Where the files the digest ships with live: default config, templates and sample comparisons.

They are package data, so an installed wheel has them as well as a checkout. In the
repository, `config.toml`, `templates/` and `samples/` stay at the top (where operators
and DESIGN.md expect them); the entries here are symbolic links to them, which setuptools
follows when it builds a wheel or an sdist, copying the files in. Paths are resolved, so
messages name the real file (`templates/email/digest.mjml.j2` in a checkout).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = (HERE / "config.toml").resolve()
TEMPLATES = (HERE / "templates").resolve()
EMAIL_TEMPLATES = TEMPLATES / "email"
WEB_TEMPLATES = TEMPLATES / "web"
PREVIEW_PAGES = TEMPLATES / "preview"
SAMPLES = (HERE / "samples" / "comparisons").resolve()
# What `digest init` copies for an operator to edit (the preview's own pages are not theirs to change).
EDITABLE_TEMPLATES = ("email", "web")


def version() -> str:
    """The installed distribution's version (`digest --version`)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("weekly-ai-tool-verdicts")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown (not installed)"

"""The template environment and MJML compilation, with errors that name the operator's file and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import mjml

from digest.errors import TemplateError


def make_env(templates_dir: Path) -> jinja2.Environment:
    """Autoescape everything except the plain-text twins (`*.txt.j2`)."""
    if not templates_dir.is_dir():
        raise TemplateError(f"{templates_dir}: templates folder not found (templates.dir in config.toml)")

    def autoescape(name: str | None) -> bool:
        return not (name or "").endswith(".txt.j2")

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _template_location(exc: BaseException, templates_dir: Path) -> str:
    """Find the innermost template frame of a runtime error for `file:line`."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        frame = tb.tb_frame
        fname = frame.f_code.co_filename
        if fname.endswith(".j2") or "templates" in fname and not fname.endswith(".py"):
            lineno = tb.tb_lineno
            where = f"{fname}:{lineno}"
        tb = tb.tb_next
    return where


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    base = Path(env.loader.searchpath[0])  # type: ignore[union-attr]
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        fname = exc.filename or str(base / (exc.name or name))
        raise TemplateError(f"{fname}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"{base / exc.name}: template not found") from None
    except jinja2.UndefinedError as exc:
        where = _template_location(exc, base) or str(base / name)
        raise TemplateError(f"{where}: template error: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - any error an operator's template raises
        where = _template_location(exc, base) or str(base / name)
        raise TemplateError(f"{where}: template error: {exc}") from None


def compile_mjml(source: str, template_path: Path) -> str:
    """Compile MJML to HTML; a malformed document names the template and the line of the rendered MJML."""
    try:
        return mjml.mjml2html(source, disable_comments=True)
    except (ValueError, RuntimeError) as exc:
        message = str(exc)
        m = re.search(r"(?:position|offset|at) (\d+)", message)
        line = source[: int(m.group(1))].count("\n") + 1 if m else None
        where = f"{template_path}:{line}" if line else str(template_path)
        raise TemplateError(f"{where}: MJML error: {message}") from None

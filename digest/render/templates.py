"""The template environment and MJML compilation, with errors that name the operator's file and line.

Operators edit these templates, so a mistake must come back as `file:line: what is wrong`
and stop the send. Jinja reports its own lines; MRML (mjml-python) reports no position at
all, so the rendered MJML is checked here first and a problem is traced back to the
template line that produced it.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import mjml
from markupsafe import Markup

from digest import plaintext
from digest.errors import TemplateError
from digest.render.note import note_html, note_text

TEXT_WIDTH = 72


def wrap(text: Any, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """Plain-text paragraphs wrapped at `width`; long words (URLs) are never broken."""
    paragraphs = re.split(r"\n\s*\n", str(text).strip())
    out = []
    for i, para in enumerate(paragraphs):
        out.append(
            textwrap.fill(
                " ".join(para.split()),
                width=width,
                break_long_words=False,
                break_on_hyphens=False,
                initial_indent=(first if first is not None and i == 0 else indent),
                subsequent_indent=indent,
            )
        )
    return "\n\n".join(out)


_BETWEEN_TAGS = re.compile(r">\s*\n\s*<")
_LINE_BREAKS = re.compile(r"\s*\n\s*")


def squeeze(html: str) -> str:
    """Drop the template's line breaks and indentation: nothing between two tags on separate lines
    (so inline blocks sit flush, with no whitespace gap), one space elsewhere. Spaces on a line stay."""
    return _LINE_BREAKS.sub(" ", _BETWEEN_TAGS.sub("><", html)).strip()


def text_bar(percent: Any, width: int = 20) -> str:
    """`[##########----------]` for the plain-text twin of the panel-ship gauge."""
    pct = max(0, min(100, int(percent or 0)))
    filled = round(pct * width / 100)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _printable(value: Any) -> Any:
    """Every `{{ value }}` loses control characters and noncharacters: data stored before ingest refused
    them (or from anywhere else) must never break MJML, XML or a header. Escaped markup stays escaped."""
    if isinstance(value, Markup):
        return Markup(plaintext.strip(str(value)))
    if isinstance(value, str):
        return plaintext.strip(value)
    return value


def make_env(templates_dir: Path) -> jinja2.Environment:
    """Autoescape everything except the plain-text twins (`*.txt.j2`)."""
    if not templates_dir.is_dir():
        raise TemplateError(f"{templates_dir}: templates folder not found (templates.dir in config.toml)")

    def autoescape(name: str | None) -> bool:
        return not (name or "").endswith(".txt.j2")

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_printable,
    )
    env.filters.update(wrap=wrap, text_bar=text_bar, note_html=note_html, note_text=note_text)
    return env


_ENVS: dict[Path, jinja2.Environment] = {}


def cached_env(templates_dir: Path) -> jinja2.Environment:
    """One environment per folder: parsed templates are reused, and an edited file is reloaded (mtime)."""
    env = _ENVS.get(templates_dir)
    if env is None:
        env = _ENVS[templates_dir] = make_env(templates_dir)
    elif not templates_dir.is_dir():
        raise TemplateError(f"{templates_dir}: templates folder not found (templates.dir in config.toml)")
    return env


def _template_location(exc: BaseException) -> str:
    """The innermost template frame of a runtime error, as `file:line` (Jinja names frames by file)."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname.endswith(".j2"):
            where = f"{fname}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _loader(env: jinja2.Environment) -> jinja2.FileSystemLoader:
    """The template folder's loader (make_env always builds the environment with one)."""
    assert isinstance(env.loader, jinja2.FileSystemLoader)
    return env.loader


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    base = Path(_loader(env).searchpath[0])
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        fname = exc.filename or str(base / (exc.name or name))
        raise TemplateError(f"{fname}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        where = _template_location(exc) or str(base / name)
        raise TemplateError(f"{where}: template not found: {exc.name}") from None
    except jinja2.UndefinedError as exc:
        where = _template_location(exc) or str(base / name)
        raise TemplateError(f"{where}: template error: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - any error an operator's template raises
        where = _template_location(exc) or str(base / name)
        raise TemplateError(f"{where}: template error: {exc}") from None


# --- MJML checks -------------------------------------------------------------------------

MJML_ELEMENTS = frozenset(
    """
mjml mj-head mj-body mj-attributes mj-all mj-class mj-breakpoint mj-font mj-html-attributes
mj-html-attribute mj-selector mj-preview mj-style mj-title mj-include mj-raw mj-accordion
mj-accordion-element mj-accordion-title mj-accordion-text mj-button mj-carousel mj-carousel-image
mj-column mj-divider mj-group mj-hero mj-image mj-navbar mj-navbar-link mj-section mj-social
mj-social-element mj-spacer mj-table mj-text mj-wrapper
""".split()
)
HEAD_CONTAINERS = frozenset(("mj-head", "mj-attributes", "mj-html-attributes"))
VOID_HTML = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_TAG = re.compile(r"<(/?)([A-Za-z][\w:.-]*)((?:\s+[^\s=/>\"'<]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'))?)*)\s*(/?)>")
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


@dataclass(frozen=True)
class MjmlProblem:
    line: int  # 1-based line of the rendered MJML
    message: str
    snippet: str  # literal text of the offending tag, used to find the template line


def check_mjml(source: str) -> MjmlProblem | None:
    """The first structural problem MRML would choke on (or silently drop), with its line.

    Long because it is one pass of a small tag scanner: its cases read in the order a tag is met."""
    stack: list[tuple[str, int, str]] = []
    pos, n = 0, len(source)

    def line_at(i: int) -> int:
        return source.count("\n", 0, i) + 1

    while True:
        i = source.find("<", pos)
        if i < 0:
            break
        if stack and stack[-1][0] in HEAD_CONTAINERS:
            between = source[pos:i]
            if between.strip():
                return MjmlProblem(
                    line_at(pos), f"text {between.strip()[:30]!r} inside <{stack[-1][0]}>", between.strip()[:30]
                )
            if between and not between.startswith(("\n", "\r\n")):
                # mjml-python rejects whitespace there unless it starts with a line break.
                return MjmlProblem(
                    line_at(pos),
                    f"spaces before a tag inside <{stack[-1][0]}>: start each tag of the head on a line of its own",
                    source[i : i + 40].split(">")[0].split()[0],
                )
        if source.startswith("<!--", i):
            end = source.find("-->", i + 4)
            if end < 0:
                return MjmlProblem(line_at(i), "comment <!-- is never closed with -->", "<!--")
            pos = end + 3
            continue
        if source.startswith("<!", i) or source.startswith("<?", i):
            end = source.find(">", i)
            pos = n if end < 0 else end + 1
            continue
        nxt = source[i + 1 : i + 2]
        if not (nxt.isalpha() or nxt == "/"):
            return MjmlProblem(line_at(i), "a bare '<' in text (write &lt;)", source[i : i + 12].split("\n")[0])
        m = _TAG.match(source, i)
        if not m:
            snippet = source[i : i + 40].split("\n")[0]
            return MjmlProblem(
                line_at(i),
                f"malformed tag {snippet!r} (unclosed quote, unquoted attribute value or missing '>')",
                snippet,
            )
        closing, name, _attrs, selfclosing = m.groups()
        lname = name.lower()
        if (lname == "mjml" or lname.startswith("mj-")) and name not in MJML_ELEMENTS:
            return MjmlProblem(line_at(i), f"unknown MJML element <{name}>", f"<{closing}{name}")
        if closing:
            if stack and stack[-1][0] == name:
                stack.pop()
            elif any(t == name for t, _, _ in stack):
                # Something opened inside is not closed: point at where it was opened.
                top, top_line, top_snippet = stack[-1]
                return MjmlProblem(
                    top_line, f"<{top}> is not closed before </{name}> (rendered line {line_at(i)})", top_snippet
                )
            else:
                return MjmlProblem(line_at(i), f"</{name}> has no matching <{name}>", f"</{name}")
        elif not selfclosing and lname not in VOID_HTML:
            stack.append((name, line_at(i), f"<{name}"))
            if name in ("mj-style", "mj-raw", "style"):
                # CSS and raw HTML are not nested MJML: jump to the closing tag.
                end = source.find(f"</{name}>", m.end())
                if end < 0:
                    return MjmlProblem(line_at(i), f"<{name}> is never closed", f"<{name}")
                pos = end
                continue
        pos = m.end()
    if stack:
        name, line, snippet = stack[-1]
        return MjmlProblem(line, f"<{name}> is never closed", snippet)
    return None


def _used_templates(env: jinja2.Environment, name: str) -> list[str]:
    """`name` and every template it extends, includes or imports, in first-use order."""
    seen: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop(0)
        if current in seen:
            continue
        seen.append(current)
        try:
            source = _loader(env).get_source(env, current)[0]
            refs = jinja2.meta.find_referenced_templates(env.parse(source))
        except (jinja2.TemplateError, OSError):
            continue
        todo.extend(r for r in refs if r)
    return seen


def _line_pattern(template_line: str) -> re.Pattern[str] | None:
    """A regex matching what a template line renders to: literal text, `.*?` for expressions."""
    stripped = template_line.strip()
    literal = _JINJA.sub("", stripped)
    if len(literal.strip()) < 3:
        return None
    parts = []
    last = 0
    for m in _JINJA.finditer(stripped):
        parts.append(re.escape(stripped[last : m.start()]))
        parts.append(".*?" if m.group(0).startswith("{{") else "")
        last = m.end()
    parts.append(re.escape(stripped[last:]))
    return re.compile("".join(parts), re.S)


def locate(env: jinja2.Environment, name: str, rendered: str, problem: MjmlProblem) -> str:
    """The template `file:line` that produced the rendered line of `problem`.

    Each template line becomes a regex (its literal text, `.*?` for `{{ }}`); among the lines that match
    the offending rendered line, the one whose neighbours also match wins. `{% %}`-only lines render
    to nothing, so the rendered MJML has no line map of its own.
    """
    base = Path(_loader(env).searchpath[0])
    lines = [ln.strip() for ln in rendered.splitlines()]
    at = problem.line - 1
    target = lines[at] if 0 <= at < len(lines) else ""
    exact: list[tuple[int, str]] = []
    partial: list[tuple[int, int, str]] = []
    loose: list[str] = []
    for tname in _used_templates(env, name):
        try:
            source = _loader(env).get_source(env, tname)[0]
        except (jinja2.TemplateError, OSError):
            continue
        patterns = [_line_pattern(tl) for tl in source.splitlines()]
        for j, (tline, pattern) in enumerate(zip(source.splitlines(), patterns)):
            where = f"{base / tname}:{j + 1}"
            if pattern is None or not target:
                continue
            if pattern.fullmatch(target):
                exact.append((_context_score(lines, at, patterns, j), where))
            elif pattern.search(target):  # several template lines rendered onto one line
                literal = len(_JINJA.sub("", tline.strip()))
                partial.append((problem.snippet in tline if problem.snippet else 0, literal, where))
            elif problem.snippet and problem.snippet in tline:
                loose.append(where)
    if exact:
        best = max(score for score, _ in exact)
        return next(where for score, where in exact if score == best)
    if partial:
        return max(partial, key=lambda p: (p[0], p[1]))[2]
    return loose[0] if loose else f"{base / name} (rendered MJML line {problem.line})"


def _context_score(rendered: list[str], at: int, patterns: list[re.Pattern[str] | None], j: int) -> int:
    """How many rendered lines around `at` also match template lines around `j` (Jinja-only lines drift)."""
    score = 0
    for k in (-3, -2, -1, 1, 2, 3):
        if not 0 <= at + k < len(rendered) or not rendered[at + k]:
            continue
        near = patterns[max(0, j + k - 2) : j + k + 3]
        if any(p is not None and p.fullmatch(rendered[at + k]) for p in near):
            score += 1
    return score


def compile_mjml(source: str, template_path: Path, env: jinja2.Environment | None = None) -> str:
    """Compile MJML to HTML; a malformed document names the template file and line."""
    name = template_path.name
    problem = check_mjml(source)
    if problem is not None:
        env = env or make_env(template_path.parent)
        raise TemplateError(f"{locate(env, name, source, problem)}: MJML error: {problem.message}")
    try:
        # fonts={}: no web-font <link>s (MJML adds Google Fonts for Roboto & co.); the stacks are web-safe.
        return squeeze(mjml.mjml2html(source, disable_comments=True, fonts={}))
    except (ValueError, RuntimeError) as exc:
        where = str(template_path)
        m = re.search(r"position (\d+):(\d+)", str(exc))
        if m:  # MRML gives byte offsets into the rendered MJML
            raw = source.encode("utf-8")
            start, end = int(m.group(1)), int(m.group(2))
            line = raw[:start].count(b"\n") + 1
            snippet = raw[start:end].decode("utf-8", "replace").strip()
            where = locate(env or make_env(template_path.parent), name, source, MjmlProblem(line, str(exc), snippet))
        raise TemplateError(f"{where}: MJML error: {exc}") from None

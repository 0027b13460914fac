"""Errors a user caused and can fix: shown as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the operator (CLI argument, file, setting). Exit status 2."""

    exit_code = 2


class ConfigError(UserError):
    """config.toml or the environment holds a value that is not allowed."""


class DatabaseUnavailable(UserError):
    """The database cannot be reached: a pipe alias then asks its mail system to retry (EX_TEMPFAIL)."""


class IngestError(UserError):
    """A comparison source could not be read; message is `path:line: what was expected`."""


class TemplateError(UserError):
    """An operator-edited template does not render; message names the file and line."""


class ProviderAuthError(UserError):
    """The email provider refused our credentials: stop the send, tell the operator once."""

    exit_code = 1

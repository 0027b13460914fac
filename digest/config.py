"""Operator settings: `config.toml` validated with pydantic, secrets from the environment.

A bad setting must stop the program with one line that names the key, the value
and what is allowed, so `load_config` turns pydantic's errors into `ConfigError`.

Long because every section of config.toml is declared here, in the file's order, with its checks.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from digest import defaults
from digest.errors import ConfigError
from digest.providers import registry

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EMAILISH = re.compile(r"^[^@\s<>\"']+@[^@\s<>\"']+\.[^@\s<>\"']+$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_email(value: str) -> str:
    if value and not _EMAILISH.match(value):
        raise ValueError("is not an email address")
    return value


def _check_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("is not an http(s) URL")
    return value.rstrip("/")


class SiteSettings(_Section):
    name: str = Field("Weekly AI Tool Verdicts", min_length=1, max_length=80)
    tagline: str = "New AI tools ship daily. We compare them before you waste an afternoon."
    site_url: str = "https://verdicts.example.com"
    public_url: str = "http://127.0.0.1:8000"
    postal_address: str = Field("Weekly AI Tool Verdicts, 1 Example Street, London", min_length=1)
    language: str = Field("en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    allowed_origins: list[str] = ["http://localhost:8000", "http://127.0.0.1:8000"]

    _urls = field_validator("site_url", "public_url")(_check_url)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [_check_url(v) for v in value]


class SenderSettings(_Section):
    from_email: str = "verdicts@example.com"
    from_name: str = "Weekly AI Tool Verdicts"
    reply_to: str = ""
    unsubscribe_mailto: str = "unsubscribe@example.com"

    _emails = field_validator("from_email", "reply_to", "unsubscribe_mailto")(_check_email)

    @field_validator("from_name")
    @classmethod
    def _no_newlines(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("must be one line")
        return value


class ScheduleSettings(_Section):
    day: str = "monday"
    time: str = "09:00"
    timezone: str = "Europe/London"
    max_lateness_hours: float = Field(6, ge=0)
    misfire_grace_seconds: int = Field(3600, ge=1)
    feeds: list[str] = []

    @field_validator("day")
    @classmethod
    def _day(cls, value: str) -> str:
        if value.lower() not in WEEKDAYS:
            raise ValueError(f"is not a weekday (one of {', '.join(WEEKDAYS)})")
        return value.lower()

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        m = re.match(r"^(\d{1,2}):(\d{2})$", value)
        if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ValueError("is not a time of day (HH:MM, 24 h)")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone (e.g. Europe/London)") from None
        return value

    @field_validator("feeds")
    @classmethod
    def _feeds(cls, value: list[str]) -> list[str]:
        return [_check_url(v) for v in value]

    @property
    def weekday_index(self) -> int:
        return WEEKDAYS.index(self.day)

    @property
    def hour_minute(self) -> tuple[int, int]:
        hh, mm = self.time.split(":")
        return int(hh), int(mm)


class SelectionSettings(_Section):
    window_days: int = Field(7, ge=1, le=365)
    max_items: int = Field(5, ge=1, le=20)
    min_items: int = Field(2, ge=1, le=20)
    weight_panel: float = Field(0.5, ge=0)
    weight_community: float = Field(0.3, ge=0)
    weight_freshness: float = Field(0.2, ge=0)
    weight_diversity: float = Field(0.3, ge=0)
    # Off by default: boost comparisons in categories readers clicked more than average (digest.selection).
    weight_interest: float = Field(0.0, ge=0)
    interest_issues: int = Field(8, ge=1, le=104)  # over the last N issues sent
    community_prior_votes: int = Field(20, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> SelectionSettings:
        if self.min_items > self.max_items:
            raise ValueError(f"min_items ({self.min_items}) is larger than max_items ({self.max_items})")
        if (
            self.weight_panel
            + self.weight_community
            + self.weight_freshness
            + self.weight_diversity
            + self.weight_interest
        ) <= 0:
            raise ValueError("the weights add up to 0; at least one must be positive")
        return self


class StorageSettings(_Section):
    sqlite_path: str = "var/digest.db"


class TransportSettings(_Section):
    """`[transport]`: which transport sends (`kind`, a registered name) and how any send behaves.

    Each transport's own settings live in `[transport.<name>]`, validated by the model the
    transport's provider declared (digest.providers.registry); load_config takes those tables out first.
    """

    kind: str = "outbox"
    # Emails per batch; at most (and by default) the transport's declared maximum.
    batch_size: int | None = Field(None, ge=1)
    max_attempts: int = Field(6, ge=1, le=50)
    # Transient failures in a row (across batches) after which a send pauses instead of going on.
    pause_after_failures: int = Field(8, ge=1, le=1000)
    # `digest serve` / `digest worker` try a paused send again after this, doubling up to the ceiling.
    resume_after_seconds: float = Field(30, gt=0, le=86400)
    resume_max_seconds: float = Field(600, gt=0, le=86400)


class TemplateSettings(_Section):
    # The email templates' folder; empty: the ones packaged with the digest (`digest init` copies them to edit).
    dir: str = ""


class SubscribeSettings(_Section):
    confirm_expiry_days: int = Field(7, ge=1, le=365)
    confirmation_resend_minutes: int = Field(10, ge=0)
    check_deliverability: bool = False
    per_ip_per_minute: int = Field(10, ge=1)
    # Well under the shared confirmation caps below, so one client cannot spend them for everyone.
    per_ip_per_hour: int = Field(30, ge=1)
    per_address_per_hour: int = Field(5, ge=1)
    # The confirmation budget (sign-ups past it are answered as usual and mail nothing): one
    # mailbox however spelt (counting queued confirmations), one recipient domain and the whole
    # service (counting every sign-up past the per-IP and per-mailbox limits, whoever it is for).
    confirmations_per_mailbox_per_day: int = Field(3, ge=1)
    confirmations_per_domain_per_hour: int = Field(100, ge=1)
    confirmations_per_hour: int = Field(500, ge=1)


class PreviewSettings(_Section):
    test_recipients: list[str] = []

    @field_validator("test_recipients")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for v in value:
            if not _EMAILISH.match(v):
                raise ValueError(f"{v!r} is not an email address")
        return value


_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")


class WebhookSettings(_Section):
    sns_topic_arns: list[str] = []  # the SNS topics whose SES events /webhooks/ses accepts; empty: none

    @field_validator("sns_topic_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for v in value:
            if not _TOPIC_ARN.fullmatch(v):
                raise ValueError(f"{v!r} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)")
        return value


class BounceSettings(_Section):
    """`[bounces]`: how bounce reports count, and the mailbox `digest serve` (every `poll_seconds`)
    and `digest subscribers bounce-poll` read.

    The bounce address itself is the SMTP transport's `bounce_address` (the envelope sender)."""

    soft_bounce_limit: int = Field(3, ge=1, le=100)  # soft bounces in a row (no delivery between) that suppress
    soft_bounce_window_days: int = Field(30, ge=1, le=3650)  # older soft bounces no longer count
    imap_host: str = ""  # empty: no mailbox to poll
    imap_port: int = Field(993, ge=1, le=65535)
    imap_security: Literal["tls", "starttls", "none"] = "tls"
    imap_user: str = ""  # the password comes from DIGEST_IMAP_PASSWORD
    imap_folder: str = "INBOX"
    imap_done_folder: str = ""  # processed reports move here (empty: they stay, flagged as processed)
    imap_timeout_seconds: float = Field(30, gt=0)
    poll_seconds: int = Field(600, ge=0, le=86400)  # `digest serve` reads the mailbox this often; 0: never

    @field_validator("imap_folder", "imap_done_folder", "imap_host", "imap_user")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(c in value for c in "\r\n\0"):
            raise ValueError("must be one line")
        return value.strip()


_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)((?!-)[A-Za-z0-9_-]{1,63}(?<!-)\.)+[A-Za-z0-9-]{2,63}$")


class DoctorSettings(_Section):
    """What `digest doctor` looks for in DNS where the transport's provider does not say."""

    spf_include: str = ""  # the include your provider's SPF needs, e.g. "_spf.mailgun.org"; empty: the transport's
    spf_domain: str = ""  # where that SPF record lives (a custom MAIL FROM domain); empty: the transport's
    dkim_selectors: list[str] = []  # e.g. ["s1"]; empty: the ones the transport's provider declares

    @field_validator("spf_include")
    @classmethod
    def _include(cls, value: str) -> str:
        value = value.strip().removeprefix("include:")
        if value and not _DNS_NAME.match(value):
            raise ValueError("is not a domain name (what follows include: in your provider's SPF record)")
        return value.lower()

    @field_validator("spf_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().rstrip(".")
        if value and not _DNS_NAME.match(value):
            raise ValueError("is not a domain name")
        return value.lower()

    @field_validator("dkim_selectors")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        for v in value:
            if not all(_DNS_LABEL.match(part) for part in v.split(".")):
                raise ValueError(f"{v!r} is not a DKIM selector (the part before ._domainkey)")
        return value


class TrackingSettings(_Section):
    """`[tracking]`: our own click tracking (every transport) and an optional open pixel.

    Clicks on comparison links go through `public_url/c/<token>`; `clicks = false` turns it off
    (links then point straight at the comparisons). A burst of `burst_links` distinct links of one
    message within `burst_seconds` is a link scanner's, not a reader's. Repeats of one link of one
    message within `repeat_seconds` are counted on one row (a flood of requests is not a flood of
    rows). Per-person click rows are kept `retention_days`, then made anonymous (the counts stay).
    """

    clicks: bool = True
    open_pixel: bool = False
    burst_links: int = Field(3, ge=2, le=100)
    burst_seconds: float = Field(5, gt=0, le=3600)
    retention_days: int = Field(180, ge=1, le=3650)
    flush_seconds: float = Field(1.0, gt=0, le=86400)  # how often recorded clicks are written (and at shutdown)
    repeat_seconds: float = Field(60, ge=1, le=3600)  # repeats of one link of one message within this: one row


class TopicSettings(_Section):
    """`[topics]`: the topics readers choose from. By default one per tool category found in the
    comparisons, named after it; `rename` gives a category's topic another name, `merge` gathers
    several categories under one topic, `hide` offers a category as no topic at all."""

    rename: dict[str, str] = {}  # category -> topic name
    merge: dict[str, list[str]] = {}  # topic name -> its categories
    hide: list[str] = []  # categories

    @model_validator(mode="after")
    def _consistent(self) -> TopicSettings:
        seen: dict[str, str] = {}
        for name, categories in self.merge.items():
            if not name.strip():
                raise ValueError("merge: a topic name is empty")
            if not categories:
                raise ValueError(f"merge: {name!r} lists no categories")
            for c in categories:
                key = " ".join(c.split()).casefold()
                if key in seen:
                    raise ValueError(f"merge: category {c!r} is in both {seen[key]!r} and {name!r}")
                seen[key] = name
        for category, name in self.rename.items():
            if not name.strip():
                raise ValueError(f"rename: the new name of {category!r} is empty")
        return self


class Settings(_Section):
    site: SiteSettings = SiteSettings()
    sender: SenderSettings = SenderSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    selection: SelectionSettings = SelectionSettings()
    storage: StorageSettings = StorageSettings()
    transport: TransportSettings = TransportSettings()
    templates: TemplateSettings = TemplateSettings()
    subscribe: SubscribeSettings = SubscribeSettings()
    preview: PreviewSettings = PreviewSettings()
    webhooks: WebhookSettings = WebhookSettings()
    bounces: BounceSettings = BounceSettings()
    doctor: DoctorSettings = DoctorSettings()
    tracking: TrackingSettings = TrackingSettings()
    topics: TopicSettings = TopicSettings()


class Config:
    """Validated settings plus where they came from and the environment's secrets."""

    def __init__(
        self,
        settings: Settings,
        path: Path,
        env: dict[str, str],
        sections: dict[str, Any] | None = None,
        deprecations: tuple[str, ...] = (),
    ):
        self.settings = settings
        self.path = path
        self.base_dir = path.parent
        self.env = env
        self.sections: dict[str, Any] = dict(sections or {})  # validated [transport.<name>] tables
        self.deprecations = deprecations  # old section names still read, one line each

    def transport_section(self, name: str) -> Any:
        """The `[transport.<name>]` settings (the transport's defaults when the table is absent)."""
        if name not in self.sections:
            self.sections[name] = registry.get(name).section()
        return self.sections[name]

    @property
    def transport_spec(self) -> registry.Provider:
        return registry.get(self.transport_kind)

    def secret(self, provider: str, name: str) -> str:
        """The environment variable `name`, one of the secrets `provider` declared ('' when unset)."""
        if name not in registry.get(provider).secrets:
            raise KeyError(f"{name} is not a secret the {provider} provider declared")
        return self.env.get(name, "")

    @property
    def batch_size(self) -> int:
        """Emails per batch: `[transport] batch_size`, never above what the transport takes at once."""
        most = self.transport_spec.capabilities.max_batch
        return min(self.settings.transport.batch_size or most, most)

    def resolve(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def var_dir(self) -> Path:
        return self.resolve("var")

    @property
    def database_url(self) -> str:
        url = self.env.get("DIGEST_DATABASE_URL", "").strip()
        if url:
            return url
        return f"sqlite:///{self.resolve(self.settings.storage.sqlite_path)}"

    @property
    def transport_kind(self) -> str:
        return self.env.get("DIGEST_TRANSPORT", "").strip() or self.settings.transport.kind

    @property
    def outbox_dir(self) -> Path:
        """Where messages are written as files: the `dir` of the provider that declares `writes_files`."""
        writer = next(p for p in registry.providers() if p.capabilities.writes_files)
        return self.resolve(self.transport_section(writer.name).dir)

    @property
    def templates_dir(self) -> Path:
        """`templates.dir`, or the packaged email templates when it is unset."""
        if not self.settings.templates.dir.strip():
            return defaults.EMAIL_TEMPLATES
        return self.resolve(self.settings.templates.dir)

    @property
    def operator_token(self) -> str:
        """DIGEST_OPERATOR_TOKEN: a Bearer token that shows /healthz details to a remote monitor."""
        return self.env.get("DIGEST_OPERATOR_TOKEN", "").strip()

    @property
    def imap_password(self) -> str:
        return self.env.get("DIGEST_IMAP_PASSWORD", "")

    @property
    def secret_key_path(self) -> Path:
        """Where the generated key lives when DIGEST_SECRET_KEY is not set."""
        return self.var_dir / "secret.key"

    @property
    def secret_key(self) -> str:
        """DIGEST_SECRET_KEY, or a key generated once under var/ for the embedded default."""
        raw = self.env.get("DIGEST_SECRET_KEY", "")
        if raw:  # set to something: it must be a real key (unset or empty: the key file)
            return _checked_key(raw.strip(), "DIGEST_SECRET_KEY")
        path = self.secret_key_path
        if not path.exists():
            _create_key_file(path)
        try:
            stored = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read ({exc}); restore it from a backup") from None
        return _checked_key(stored, str(path))


MIN_SECRET_KEY = 16


def _checked_key(key: str, where: str) -> str:
    """An empty or short key would let anyone forge confirm and unsubscribe links: refuse it."""
    if len(key) < MIN_SECRET_KEY:
        what = "is empty" if not key else f"is {len(key)} characters"
        raise ConfigError(
            f"{where}: the signing key {what}; it needs at least {MIN_SECRET_KEY} characters (restore it from "
            "a backup, or generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return key


def _create_key_file(path: Path) -> None:
    """Write a new key to a private temporary file, then link it into place: the key file is
    complete the instant it exists. When processes race, one link wins and the others read it."""
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: its key is the key
    finally:
        tmp.unlink(missing_ok=True)


def _format_error(path: Path, err: ErrorDetails, raw: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    key = ".".join(loc)
    value: Any = raw
    for part in loc:
        value = value.get(part) if isinstance(value, dict) else None
    msg = err.get("msg", "is not valid")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err.get("type") == "extra_forbidden":
        return f"{path.name}: {key}: unknown setting"
    if err.get("type") == "literal_error":
        allowed = msg[msg.find("Input should be ") + 16 :] if "Input should be " in msg else msg
        return f"{path.name}: {key}: {value!r} is not allowed ({allowed})"
    if value is None or isinstance(value, dict):
        return f"{path.name}: {key}: {msg}"
    if msg.startswith("is ") or msg.startswith("must "):
        return f"{path.name}: {key}: {value!r} {msg}"
    return f"{path.name}: {key}: {value!r}: {msg}"


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Read and validate config; raises ConfigError with one clear line."""
    env = dict(os.environ if env is None else env)
    cfg_path = Path(path or env.get("DIGEST_CONFIG") or "config.toml").expanduser().resolve()
    if not cfg_path.exists():
        raise ConfigError(f"{cfg_path}: config file not found (pass --config PATH)")
    try:
        raw = tomllib.loads(cfg_path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path.name}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_path.name}: cannot be read: {exc}") from None
    deprecations = _upgrade_legacy_sections(raw)
    for line in deprecations:
        print(f"warning: {cfg_path.name}: {line}", file=sys.stderr)
    tables = _take_transport_tables(raw)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(cfg_path, exc.errors()[0], raw)) from None
    sections = _validate_transport_tables(cfg_path, tables)
    if settings.transport.kind not in registry.names():
        raise ConfigError(
            f"{cfg_path.name}: transport.kind: {settings.transport.kind!r} is not a transport "
            f"({registry.describe_names()})"
        )
    transport = env.get("DIGEST_TRANSPORT", "").strip()
    if transport and transport not in registry.names():
        raise ConfigError(f"DIGEST_TRANSPORT: {transport!r} is not a transport ({registry.describe_names()})")
    db_url = env.get("DIGEST_DATABASE_URL", "").strip()
    if db_url and not (db_url.startswith("sqlite") or db_url.startswith("postgresql")):
        raise ConfigError("DIGEST_DATABASE_URL: must start with sqlite:/// or postgresql+psycopg://")
    return Config(settings, cfg_path, env, sections, tuple(deprecations))


def _upgrade_legacy_sections(raw: dict[str, Any]) -> list[str]:
    """Read the old places each provider declares (`Legacy`) into the new sections, saying so.

    A value also given in the new place keeps the new one. Returns one warning line per old name.
    """
    transport = raw.setdefault("transport", {})
    if not isinstance(transport, dict):
        return []  # validation names the problem
    lines = []
    for provider in registry.providers():
        old, name = provider.legacy.table, provider.name
        if old and isinstance(raw.get(old), dict):
            table = dict(raw.pop(old))
            moved_up = [k for k in provider.legacy.shared if k in table]
            for key in moved_up:
                transport.setdefault(key, table.pop(key))
            section = transport.setdefault(name, {})
            if isinstance(section, dict):
                for key, value in table.items():
                    section.setdefault(key, value)
            lines.append(
                f"[{old}] is deprecated: move it to [transport.{name}]"
                + (f" ({', '.join(moved_up)} go to [transport])" if moved_up else "")
            )
        for key, new_key in provider.legacy.keys.items():
            if key in transport:
                section = transport.setdefault(name, {})
                value = transport.pop(key)
                if isinstance(section, dict):
                    section.setdefault(new_key, value)
                lines.append(f"transport.{key} is deprecated: move it to [transport.{name}] {new_key}")
    return lines


def _take_transport_tables(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Take the `[transport.<name>]` tables out of `[transport]`; the registry's models check them."""
    transport = raw.get("transport")
    if not isinstance(transport, dict):
        return {}
    return {name: transport.pop(name) for name in [k for k, v in transport.items() if isinstance(v, dict)]}


def _validate_transport_tables(cfg_path: Path, tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    for name, table in tables.items():
        if name not in registry.names():
            raise ConfigError(
                f"{cfg_path.name}: [transport.{name}]: {name!r} is not a transport ({registry.describe_names()})"
            )
        try:
            sections[name] = registry.get(name).section.model_validate(table)
        except ValidationError as exc:
            err = exc.errors()[0]
            err["loc"] = ("transport", name, *err["loc"])
            raise ConfigError(_format_error(cfg_path, err, {"transport": {name: table}})) from None
    return sections

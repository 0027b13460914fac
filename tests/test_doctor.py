"""`digest doctor` against a real DNS server (dnslib on 127.0.0.1), the fake Resend, and the real web app
served over TLS: a well-configured installation passes; each missing record fails with its fix."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digest.config import load_config
from digest.doctor import Check, Context, Status, run, site_checks
from digest.doctor.resolver import Dns
from tests.conftest import ROOT, apply_overrides, write_project
from tests.fake_resend import FakeResend, FakeResendServer
from tests.support_dns import LocalDns, silent_port
from tests.support_serve import free_port, wait_for
from tests.support_sns import self_signed

DOMAIN = "weekly-verdicts.org"
KEY = "re_full_access_key"
NO_APP = "https://127.0.0.1:9"  # where nothing listens: for tests about other checks
SENDING_KEY = "re_sending_only_key"


def dkim_key() -> str:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


GOOD_DNS = {
    DOMAIN: ["v=spf1 include:_spf.google.com ~all", "google-site-verification=abc123"],
    f"send.{DOMAIN}": ["v=spf1 include:amazonses.com ~all"],
    f"resend._domainkey.{DOMAIN}": [f"p={dkim_key()}"],  # ~400 characters: two TXT strings on the wire
    f"_dmarc.{DOMAIN}": [f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{DOMAIN}"],
}


@dataclass
class TlsApp:
    url: str
    ca_file: Path


@pytest.fixture(scope="module")
def tls_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsApp]:
    """The real web app (uvicorn) over TLS with a certificate for 127.0.0.1: what site.public_url points at."""
    folder = tmp_path_factory.mktemp("tls-app")
    key, cert = self_signed("127.0.0.1", ip="127.0.0.1")
    (folder / "tls.pem").write_bytes(cert)
    (folder / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = write_project(folder / "project")
    port = free_port()
    env = {
        **os.environ,
        "DIGEST_CONFIG": str(config),
        "DIGEST_DATABASE_URL": f"sqlite:///{folder / 'app.db'}",
        "DIGEST_SECRET_KEY": secrets.token_urlsafe(48),
        "DIGEST_TRANSPORT": "outbox",
    }
    log = (folder / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "digest.web.asgi:make_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ssl-keyfile",
            str(folder / "tls.key"),
            "--ssl-certfile",
            str(folder / "tls.pem"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (folder / "uvicorn.log").read_text(errors="replace")
        try:
            trust = ssl.create_default_context(cafile=str(folder / "tls.pem"))
            return httpx.get(f"{url}/healthz/live", verify=trust, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 60, what="the web app over TLS")
        yield TlsApp(url, folder / "tls.pem")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def resend() -> Iterator[FakeResendServer]:
    fake = FakeResend(api_keys={KEY}, sending_keys={SENDING_KEY})
    fake.add_domain("other-newsletter.com", status="verified")
    fake.add_domain(DOMAIN, status="verified")
    with FakeResendServer(fake) as server:
        yield server


EVENTS = ["email.sent", "email.delivered", "email.bounced", "email.complained", "email.opened", "email.clicked"]


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"the doctor tests' webhook secret").decode()


def register_webhook(
    resend: FakeResendServer,
    public_url: str,
    events: list[str] | None = EVENTS,
    status: str = "enabled",
    secret: str = WEBHOOK_SECRET,
) -> None:
    """What the operator does in Resend's dashboard: Webhooks → Add endpoint <public_url>/webhooks/resend,
    then copies its signing secret into RESEND_WEBHOOK_SECRET (`environment` sets that one)."""
    resend.fake.add_webhook(f"{public_url}/webhooks/resend", events, status, signing_secret=secret)


def project(tmp_path: Path, public_url: str, **sections: dict[str, object]) -> Path:
    """A production-like config: Resend, an https public URL, real addresses on DOMAIN."""
    config = write_project(tmp_path / "project")
    overrides: dict[str, dict[str, object]] = {
        "site": {"public_url": public_url, "postal_address": "Verdicts Ltd, 12 Harbour Road, Bristol BS1 5TY, UK"},
        "sender": {"from_email": f"news@{DOMAIN}", "unsubscribe_mailto": f"unsubscribe@{DOMAIN}"},
        "transport": {"kind": "resend"},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    config.write_text(apply_overrides(config.read_text(), overrides))
    return config


def environment(resend: FakeResendServer, db_url: str, ca_file: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "RESEND_", "SSL_CERT"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "RESEND_API_URL": resend.url,
            "RESEND_API_KEY": KEY,
            "RESEND_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "DIGEST_SECRET_KEY": secrets.token_urlsafe(48),
            "DIGEST_DATABASE_URL": db_url,
        }
    )
    if ca_file is not None:
        env["SSL_CERT_FILE"] = str(ca_file)
    return {**env, **extra}


def doctor(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "doctor", "--timeout", "3", *args],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(result: subprocess.CompletedProcess[str], label: str) -> list[str]:
    """The check lines for `label`, each with its `fix:` line after it."""
    out = result.stdout.splitlines()
    found = []
    for i, line in enumerate(out):
        if line[6:].startswith(label + " ") or line[6:] == label:
            found.append(line)
            if i + 1 < len(out) and out[i + 1].strip().startswith("fix:"):
                found.append(out[i + 1].strip())
    return found


def test_a_well_configured_installation_passes(
    tmp_path: Path, db_url: str, resend: FakeResendServer, tls_app: TlsApp
) -> None:
    config = project(tmp_path, tls_app.url)
    register_webhook(resend, tls_app.url)
    with LocalDns(GOOD_DNS) as dns:
        result = doctor(config, environment(resend, db_url, tls_app.ca_file), "--nameserver", dns.address)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    body = result.stdout.splitlines()
    checks = body[1:-1]
    assert all(line.startswith("PASS  ") for line in checks), result.stdout
    names = [line[6:].split("  ")[0].strip() for line in checks]
    assert names == [
        "transport",
        "sender",
        "SPF",
        "DKIM",
        "DMARC",
        "Resend domain",
        "public URL",
        "webhooks",
        "Resend webhook",
        "postal address",
        "unsubscribe mailbox",
        "bounces",
        "secret key",
        "database",
    ]
    assert f"send.{DOMAIN}: v=spf1 include:amazonses.com ~all" in lines(result, "SPF")[0]
    assert f"resend._domainkey.{DOMAIN}: key MIIBIjANBgkq" in lines(result, "DKIM")[0]
    assert f"_dmarc.{DOMAIN}: p=quarantine" in lines(result, "DMARC")[0]
    assert f"{DOMAIN}: verified" in lines(result, "Resend domain")[0]
    assert f"{tls_app.url}: https, and `digest serve` answers" in lines(result, "public URL")[0]
    assert lines(result, "Resend webhook")[0].endswith(
        f"{tls_app.url}/webhooks/resend gets email.bounced, email.complained, email.delivered (enabled)"
    )
    assert body[-1] == f"{len(checks)} pass, 0 warn, 0 fail"


@pytest.mark.parametrize(
    "missing, label, problem, fix",
    [
        (
            f"send.{DOMAIN}",
            "SPF",
            f"send.{DOMAIN}: no SPF record",
            f"fix: add a TXT record at send.{DOMAIN}: v=spf1 include:amazonses.com ~all (as Resend's dashboard "
            f"(Domains → {DOMAIN}) shows)",
        ),
        (
            f"resend._domainkey.{DOMAIN}",
            "DKIM",
            f"resend._domainkey.{DOMAIN}: no DKIM record",
            f"fix: add the DKIM TXT record Resend's dashboard (Domains → {DOMAIN}) lists at resend._domainkey.{DOMAIN}",
        ),
        (
            f"_dmarc.{DOMAIN}",
            "DMARC",
            f"_dmarc.{DOMAIN}: no DMARC record",
            f"fix: add a TXT record at _dmarc.{DOMAIN}: v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}",
        ),
    ],
)
def test_each_missing_record_fails_with_its_fix(
    tmp_path: Path,
    sqlite_url: str,
    resend: FakeResendServer,
    tls_app: TlsApp,
    missing: str,
    label: str,
    problem: str,
    fix: str,
) -> None:
    config = project(tmp_path, tls_app.url)
    register_webhook(resend, tls_app.url)
    records = {name: values for name, values in GOOD_DNS.items() if name != missing}
    with LocalDns(records) as dns:
        result = doctor(config, environment(resend, sqlite_url, tls_app.ca_file), "--nameserver", dns.address)
    assert result.returncode == 1, result.stdout + result.stderr
    check, fix_line = lines(result, label)
    assert check.startswith("FAIL  ") and check.endswith(problem)
    assert fix_line.startswith(fix)
    others = [line for line in result.stdout.splitlines()[1:-1] if line.startswith(("PASS", "WARN", "FAIL"))]
    assert [line for line in others if not line.startswith("PASS")] == [check]  # only that one fails
    assert result.stdout.splitlines()[-1].endswith("0 warn, 1 fail")


@pytest.mark.parametrize(
    "name, records, expected, fix",
    [
        (
            f"send.{DOMAIN}",
            ["v=spf1 include:_spf.google.com ~all"],
            f"send.{DOMAIN}: v=spf1 include:_spf.google.com ~all: does not include amazonses.com",
            "fix: add include:amazonses.com before the all at the end: "
            "v=spf1 include:amazonses.com include:_spf.google.com",
        ),
        (f"send.{DOMAIN}", ["v=spf1 include:amazonses.com", "v=spf1 -all"], "2 SPF records", "fix: merge them"),
        (
            f"send.{DOMAIN}",
            ["v=spf1 include:amazonses.com +all"],
            "lets any server on the internet send",
            "fix: end the record with ~all",
        ),
        (
            f"_dmarc.{DOMAIN}",
            ["v=DMARC1; rua=mailto:d@x.org"],
            "no p= policy",
            "fix: give it a policy: v=DMARC1; p=none",
        ),
        (f"resend._domainkey.{DOMAIN}", ["v=DKIM1; k=rsa; p="], "the key is revoked (empty p=)", "fix: add the DKIM"),
    ],
)
def test_wrong_records_fail_with_the_record_to_write(
    tmp_path: Path, sqlite_url: str, resend: FakeResendServer, name: str, records: list[str], expected: str, fix: str
) -> None:
    config = project(tmp_path, NO_APP)
    with LocalDns({**GOOD_DNS, name: records}) as dns:
        result = doctor(config, environment(resend, sqlite_url, None), "--nameserver", dns.address)
    assert result.returncode == 1
    failing = [line for line in result.stdout.splitlines() if expected in line]
    assert len(failing) == 1 and failing[0].startswith("FAIL"), result.stdout
    after = result.stdout.splitlines()[result.stdout.splitlines().index(failing[0]) + 1].strip()
    assert after.startswith(fix), after


def test_spf_include_nested_in_another_include_counts(
    tmp_path: Path, sqlite_url: str, resend: FakeResendServer
) -> None:
    config = project(tmp_path, NO_APP)
    records = {
        **GOOD_DNS,
        f"send.{DOMAIN}": ["v=spf1 include:_spf.relay.net -all"],
        "_spf.relay.net": ["v=spf1 ip4:192.0.2.0/24 include:amazonses.com -all"],
    }
    with LocalDns(records) as dns:
        result = doctor(config, environment(resend, sqlite_url, None), "--nameserver", dns.address)
    assert lines(result, "SPF")[0].startswith("PASS")


def test_a_subdomain_inherits_the_organizations_dmarc(
    tmp_path: Path, sqlite_url: str, resend: FakeResendServer
) -> None:
    sub = f"mail.{DOMAIN}"
    resend.fake.add_domain(sub)
    config = project(tmp_path, NO_APP, sender={"from_email": f"news@{sub}"})
    records = {
        f"send.{sub}": GOOD_DNS[f"send.{DOMAIN}"],
        f"resend._domainkey.{sub}": GOOD_DNS[f"resend._domainkey.{DOMAIN}"],
        f"_dmarc.{DOMAIN}": ["v=DMARC1; p=none"],
    }
    with LocalDns(records) as dns:
        result = doctor(config, environment(resend, sqlite_url, None), "--nameserver", dns.address)
    dmarc = lines(result, "DMARC")[0]
    assert dmarc.startswith("PASS") and f"_dmarc.{DOMAIN}: p=none (inherited by {sub})" in dmarc


def test_resend_domain_status(tmp_path: Path, sqlite_url: str, resend: FakeResendServer) -> None:
    pending = "pending-verdicts.net"
    resend.fake.add_domain(pending, status="pending")
    url = NO_APP
    with LocalDns(GOOD_DNS) as dns:
        config = project(tmp_path / "a", url, sender={"from_email": f"news@{pending}"})
        result = doctor(config, environment(resend, sqlite_url, None), "--nameserver", dns.address)
        check, fix = lines(result, "Resend domain")
        assert check.startswith("FAIL") and check.endswith(
            f"{pending}: pending; not verified: SPF send (pending), SPF send (pending), "
            "DKIM resend._domainkey (pending)"
        )
        assert fix.startswith(f"fix: add the records Resend lists for {pending}")

        config = project(tmp_path / "b", url, sender={"from_email": "news@unknown-verdicts.net"})
        result = doctor(config, environment(resend, sqlite_url, None), "--nameserver", dns.address)
        check, fix = lines(result, "Resend domain")
        assert check.startswith("FAIL") and "unknown-verdicts.net is not a domain of this Resend account" in check
        assert fix.startswith("fix: add unknown-verdicts.net at Resend (Domains → Add domain)")

        config = project(tmp_path / "c", url)
        result = doctor(
            config, environment(resend, sqlite_url, None, RESEND_API_KEY=SENDING_KEY), "--nameserver", dns.address
        )
        check, _ = lines(result, "Resend domain")
        assert check.startswith("WARN") and "401 restricted_api_key" in check and "sending-only key" in check

        result = doctor(
            config, environment(resend, sqlite_url, None, RESEND_API_KEY="re_wrong"), "--nameserver", dns.address
        )
        check, fix = lines(result, "Resend domain")
        assert check.startswith("FAIL") and "403 invalid_api_key" in check and "check RESEND_API_KEY" in fix


def test_resend_webhook_must_post_bounces_and_complaints_here(tmp_path: Path, resend: FakeResendServer) -> None:
    """Without a webhook to this service, Resend keeps bounces and complaints to itself and dead addresses
    keep being mailed; the doctor reads the account's webhooks and names what is wrong."""
    from digest.providers.resend import doctor as resend_check

    url = "https://news.weekly-verdicts.org"
    config = project(tmp_path, url)
    env = {"RESEND_API_URL": resend.url, "RESEND_API_KEY": KEY, "RESEND_WEBHOOK_SECRET": WEBHOOK_SECRET}

    def webhook_check(**extra: str) -> Check:
        (result,) = check(config, resend_check.webhook_registered, **{**env, **extra})
        return result

    result = webhook_check()  # none at all
    assert (
        result.status is Status.FAIL
        and f"no webhook of this Resend account posts to {url}/webhooks/resend" in result.detail
    )
    assert f"Add endpoint) to {url}/webhooks/resend for email.bounced, email.complained" in result.fix

    register_webhook(resend, "https://old-host.example.net")  # a webhook elsewhere: named, to spot a typo
    result = webhook_check()
    assert result.status is Status.FAIL and "post to https://old-host.example.net/webhooks/resend" in result.detail

    register_webhook(resend, url, status="disabled")
    result = webhook_check()
    assert result.status is Status.FAIL and "is disabled" in result.detail and "enable it" in result.fix

    register_webhook(resend, url, secret="whsec_" + base64.b64encode(b"another webhook's secret").decode())
    result = webhook_check()  # enabled, but its posts are signed with a secret the service does not have
    assert result.status is Status.FAIL and "RESEND_WEBHOOK_SECRET is not the signing secret" in result.detail
    assert "copy its signing secret into RESEND_WEBHOOK_SECRET" in result.fix

    resend.fake.add_webhook(
        f"{url}/webhooks/resend/",
        ["email.delivered", "email.bounced"],  # the same, with a /
        signing_secret=WEBHOOK_SECRET,
    )
    result = webhook_check()
    assert result.status is Status.FAIL and "does not get email.complained" in result.detail
    assert "add email.complained to its events" in result.fix

    # A second webhook for complaints does not help: its posts carry its own secret, refused here.
    register_webhook(resend, url, ["email.complained"], secret="whsec_" + base64.b64encode(b"a third one").decode())
    assert webhook_check().status is Status.FAIL
    register_webhook(resend, url)  # one webhook with every event, signed with the service's secret
    assert webhook_check().status is Status.PASS

    other = "https://letters.weekly-verdicts.org"
    register_webhook(resend, other.upper().replace("HTTPS", "https"), ["email.bounced", "email.complained"])
    (result,) = check(project(tmp_path / "other", other), resend_check.webhook_registered, **env)
    assert result.status is Status.WARN and "not email.delivered" in result.detail  # the host's case aside

    result = webhook_check(RESEND_API_KEY=SENDING_KEY)
    assert result.status is Status.WARN and "401 restricted_api_key" in result.detail
    result = webhook_check(RESEND_API_KEY="re_wrong")
    assert result.status is Status.FAIL and "403 invalid_api_key" in result.detail

    assert check(config, resend_check.webhook_registered, RESEND_API_KEY="") == []  # the domain check says so
    smtp = project(tmp_path / "smtp", url, transport={"kind": "smtp"})
    assert check(smtp, resend_check.webhook_registered, **env) == []


def test_unreachable_dns_is_a_clear_line_per_record_not_a_traceback(
    tmp_path: Path, sqlite_url: str, resend: FakeResendServer
) -> None:
    config = project(tmp_path, NO_APP)
    nowhere = silent_port()
    result = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "doctor", "--timeout", "1", "--nameserver", nowhere],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(resend, sqlite_url, None),
    )
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    for label in ("SPF", "DKIM", "DMARC"):
        check, fix = lines(result, label)
        assert check.startswith("FAIL") and f"not checked: {nowhere} did not answer (no answer in time" in check
        assert fix.startswith("fix: check the server with --nameserver")


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--nameserver", "not a server"], {}, "error: --nameserver: 'not a server' is not HOST[:PORT]"),
        (["--nameserver", "127.0.0.1:99999"], {}, "error: --nameserver: '127.0.0.1:99999' is not HOST[:PORT]"),
        (
            [],
            {"DIGEST_DNS_SERVER": "no-such-host.invalid"},
            "error: DIGEST_DNS_SERVER: 'no-such-host.invalid' is neither an IP address nor a host name that resolves",
        ),
        (["--timeout", "0"], {}, "error: --timeout: 0 is not between 0 and 120 seconds"),
    ],
)
def test_bad_options_are_one_clear_line(
    tmp_path: Path, sqlite_url: str, resend: FakeResendServer, args: list[str], env: dict[str, str], message: str
) -> None:
    config = project(tmp_path, NO_APP)
    result = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "doctor", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(resend, sqlite_url, None, **env),
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().startswith(message), result.stderr


def test_an_unreadable_config_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "latin1.toml").write_bytes(b'[site]\nname = "Caf\xe9"\n')
    for name in ("folder.toml", "latin1.toml", "missing.toml"):
        result = subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(tmp_path / name), "doctor"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**env, "PYTHONPATH": str(ROOT)},
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and name in result.stderr
        assert result.stderr.startswith("error: ")


# -- the settings checks, in-process ---------------------------------------------------------------


def check(config: Path, fn: object, **env: str) -> list[Check]:
    ctx = Context(load_config(config, env=env), Dns(("127.0.0.1", 9), 1), http_timeout=3)
    return run(ctx, [fn])  # type: ignore[list-item]


def test_public_url_must_be_https_and_answer(tmp_path: Path, tls_app: TlsApp) -> None:
    (result,) = check(project(tmp_path / "a", "http://news.weekly-verdicts.org"), site_checks.public_url)
    assert result.status is Status.FAIL and "is not https" in result.detail and "TLS reverse proxy" in result.fix
    (result,) = check(project(tmp_path / "b", f"https://127.0.0.1:{free_port()}"), site_checks.public_url)
    assert result.status is Status.FAIL and "not reachable" in result.detail and "start `digest serve`" in result.fix
    # The app's certificate is not trusted here (no SSL_CERT_FILE in this process): a TLS failure.
    (result,) = check(project(tmp_path / "c", tls_app.url), site_checks.public_url)
    assert result.status is Status.FAIL and "certificate" in result.detail.lower() and "certificate" in result.fix


@pytest.mark.parametrize(
    "transport, env, status, text",
    [
        ("resend", {}, Status.FAIL, "RESEND_WEBHOOK_SECRET is not set"),
        ("resend", {"RESEND_WEBHOOK_SECRET": "hunter2"}, Status.FAIL, "not a signing secret"),
        ("resend", {"RESEND_WEBHOOK_SECRET": "whsec_abc"}, Status.PASS, "Resend posts events to"),
        ("ses", {}, Status.FAIL, "webhooks.sns_topic_arns is empty"),
        ("smtp", {}, Status.PASS, "not needed"),
    ],
)
def test_webhook_secret_when_the_transport_has_webhooks(
    tmp_path: Path, transport: str, env: dict[str, str], status: Status, text: str
) -> None:
    config = project(tmp_path, NO_APP, transport={"kind": transport})
    (result,) = check(config, site_checks.webhooks, **env)
    assert result.status is status and text in result.detail


def test_placeholders_fail(tmp_path: Path) -> None:
    config = write_project(tmp_path / "project")  # the shipped example values
    (postal,) = check(config, site_checks.postal_address)
    assert postal.status is Status.FAIL and "still the example" in postal.detail
    assert "site.postal_address" in postal.fix
    (mailbox,) = check(config, site_checks.unsubscribe_mailbox)
    assert mailbox.status is Status.FAIL and "unsubscribe@example.com is an example address" in mailbox.detail
    transport, sender = check(config, site_checks.sender)
    assert transport.status is Status.WARN and sender.status is Status.FAIL
    config.write_text(apply_overrides(config.read_text(), {"sender": {"unsubscribe_mailto": ""}}))
    (mailbox,) = check(config, site_checks.unsubscribe_mailbox)
    assert mailbox.status is Status.WARN and "unsubscribe-mail" in mailbox.fix


@pytest.mark.parametrize(
    "smtp, bounces, status, text",
    [
        ({}, {}, Status.WARN, "bounce_address is empty: SMTP bounces and complaints are not processed"),
        ({"bounce_address": "bounces@example.com"}, {}, Status.FAIL, "bounces@example.com is an example address"),
        (
            {"bounce_address": f"bounces@{DOMAIN}"},
            {},
            Status.PASS,
            f"VERP envelope sender bounces@{DOMAIN}, read by `digest subscribers bounce-mail`",
        ),
        (
            {"bounce_address": f"bounces@{DOMAIN}"},
            {"imap_host": f"imap.{DOMAIN}"},
            Status.PASS,
            f"polled over IMAP at imap.{DOMAIN}",
        ),
    ],
)
def test_smtp_bounce_address(
    tmp_path: Path, smtp: dict[str, object], bounces: dict[str, object], status: Status, text: str
) -> None:
    config = project(tmp_path, NO_APP, transport={"kind": "smtp"}, **{"transport.smtp": smtp, "bounces": bounces})
    (result,) = check(config, site_checks.bounces)
    assert result.status is status and text in result.detail
    if status is not Status.PASS:
        assert "digest subscribers bounce-mail -" in result.fix


@pytest.mark.parametrize(
    "key, status, text",
    [
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Status.FAIL, "only 1 different characters"),
        ("short-but-ok-1234567", Status.WARN, "20 characters; 32 or more"),
        ("abc", Status.FAIL, "3 characters; at least 16"),
        # A fixed id: each xdist worker collects the same test name whatever key it drew.
        pytest.param(secrets.token_urlsafe(48), Status.PASS, "DIGEST_SECRET_KEY: 64 characters", id="random-64-pass"),
    ],
)
def test_secret_key_strength(tmp_path: Path, key: str, status: Status, text: str) -> None:
    (result,) = check(project(tmp_path, "https://x.weekly-verdicts.org"), site_checks.secret_key, DIGEST_SECRET_KEY=key)
    assert result.status is status and text in result.detail


def test_secret_key_file_is_read_never_created(tmp_path: Path) -> None:
    config = project(tmp_path, "https://x.weekly-verdicts.org")
    key_file = config.parent / "var" / "secret.key"
    (result,) = check(config, site_checks.secret_key)
    assert result.status is Status.WARN and "no key yet" in result.detail and not key_file.exists()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(secrets.token_urlsafe(48))
    key_file.chmod(0o644)
    (result,) = check(config, site_checks.secret_key)
    assert result.status is Status.WARN and "readable by other users" in result.detail and "chmod 600" in result.fix
    key_file.chmod(0o600)
    assert check(config, site_checks.secret_key)[0].status is Status.PASS


def test_database_must_be_migrated_and_is_not_changed(tmp_path: Path, db_url: str) -> None:
    config = project(tmp_path, "https://x.weekly-verdicts.org")
    (result,) = check(config, site_checks.database, DIGEST_DATABASE_URL=db_url)
    assert result.status is Status.PASS and "migrated (revision" in result.detail

    empty = tmp_path / "empty.db"
    import sqlite3

    sqlite3.connect(empty).close()
    (result,) = check(config, site_checks.database, DIGEST_DATABASE_URL=f"sqlite:///{empty}")
    assert result.status is Status.FAIL and "at revision none (empty)" in result.detail
    assert "digest db upgrade" in result.fix
    assert sqlite3.connect(empty).execute("select count(*) from sqlite_master").fetchone() == (0,)  # untouched

    absent = tmp_path / "absent.db"
    (result,) = check(config, site_checks.database, DIGEST_DATABASE_URL=f"sqlite:///{absent}")
    assert result.status is Status.FAIL and "no database yet" in result.detail and not absent.exists()

    (result,) = check(
        config, site_checks.database, DIGEST_DATABASE_URL="postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    )
    assert result.status is Status.FAIL and "cannot connect" in result.detail and "secret" not in result.detail

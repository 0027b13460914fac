"""A real IMAP server for tests: Dovecot (Debian's dovecot-imapd) as a foreground process.

Its config, passwd-file and mail live in a temporary folder; it listens on a free port on
127.0.0.1 with plain-text login, and on another with implicit TLS (IMAPS).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_or_skip
from tests.support_serve import free_port

USER, PASSWORD = "bounces", "imap-test-pass"


@dataclass(frozen=True)
class Imap:
    port: int  # plain IMAP
    tls_port: int  # implicit TLS (IMAPS) with the test certificate
    user: str = USER
    password: str = PASSWORD


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


@contextmanager
def dovecot(certificate: tuple[Path, Path]) -> Iterator[Imap]:
    """Dovecot on two free ports: plain IMAP and IMAPS with `certificate` (cert, key)."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    require_or_skip(None if binary else "no dovecot binary (apt-get install dovecot-imapd)", "Dovecot")
    assert binary is not None
    # Not pytest's tmp_path: Dovecot's unprivileged processes (nobody, dovenull) must reach it.
    root = Path(tempfile.mkdtemp(prefix="digest-imap-"))
    root.chmod(0o755)
    (root / "mail").mkdir(mode=0o777)
    (root / "mail").chmod(0o777)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port, tls_port = free_port(), free_port()
    for name, source in zip(("cert.pem", "key.pem"), certificate, strict=True):
        shutil.copy(source, root / name)
    (root / "dovecot.conf").write_text(
        CONFIG.format(root=root, port=port, tls_port=tls_port, cert=root / "cert.pem", key=root / "key.pem")
    )
    proc = subprocess.Popen(
        [binary, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                    out = proc.stdout.read().decode() if proc.stdout and proc.poll() is not None else ""
                    raise RuntimeError(f"dovecot did not start: {out} {log}")
                time.sleep(0.1)
        yield Imap(port, tls_port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)

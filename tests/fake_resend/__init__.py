"""A fake of Resend's batch and domains API for tests: schema-checked, rate-limited, idempotent, breakable on demand."""

from tests.fake_resend.server import FakeResendProcess, FakeResendServer
from tests.fake_resend.state import FakeResend, Faults

__all__ = ["FakeResend", "FakeResendProcess", "FakeResendServer", "Faults"]

"""The mail package's error."""

from vm_expiry.errors import VmExpiryError


class MailError(VmExpiryError):
    """A mail that cannot be built: unknown event, broken template or unusable address."""

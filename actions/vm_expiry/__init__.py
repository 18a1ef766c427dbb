"""vm-expiry: automatic expiry of forgotten OpenStack servers, as a Mistral workflow pack."""

__version__ = "0.1.0"

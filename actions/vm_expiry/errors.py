"""Errors the pack reports to people as one clear line."""


class VmExpiryError(Exception):
    """An error whose message is fit to show a user as is."""


class ConfigError(VmExpiryError):
    """An invalid configuration value; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"configuration key '{key}': {problem}")

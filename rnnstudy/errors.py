"""The harness's own error: a bad configuration (exit status 2), importable without torch so the CLI answers fast."""


class ConfigError(ValueError):
    """A bad configuration; the message names the key, the value and what is allowed."""

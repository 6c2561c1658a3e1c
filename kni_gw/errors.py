"""kni-gw's own exception types.

Each also subclasses the builtin that matches it, so that callers can catch
either. The CLI turns any of them into one line on stderr and exit status 2.
"""


class KniGwError(Exception):
    """Base of every error kni-gw reports to its user."""


class ConfigError(KniGwError, ValueError):
    """The command line or the host cannot run the gateway as asked."""


class DataplaneError(KniGwError, OSError):
    """The C dataplane refused or failed an operation."""

    def __init__(self, message: str, errno_value: int = 0):
        super().__init__(message)
        self.errno_value = errno_value

    def __str__(self) -> str:  # OSError's own formatting would add "[Errno]"
        return self.args[0]

"""The billing API's branch of the exception tree (see ``cluster_exporter.errors``).

    ExporterError
    └── BillingApiError                exit 1
        ├── BillingConfigError         exit 2 (also a UsageError): tokens, pricing file, database URL
        ├── StorageError               exit 6: the database is unreachable, a migration failed
        ├── RequestRejected            a request the API refuses; carries its HTTP status
        └── StripePushError            Stripe did not take a meter event (``retryable`` says if a retry can help)

Storage backends map sqlite3/psycopg errors to ``StorageError`` (or the internal
``UniqueViolation``) in one place; the HTTP layer turns ``RequestRejected`` into its status and a
one-line JSON message; the CLI prints any of these as one line with its exit code.
"""

from __future__ import annotations

from ..errors import ExporterError, UsageError


class BillingApiError(ExporterError):
    """Root of the billing API's errors."""


class BillingConfigError(BillingApiError, UsageError):
    """Bad billing API configuration: tokens, pricing file, database URL."""

    exit_code = 2


class StorageError(BillingApiError):
    """The database failed or could not be reached."""

    exit_code = 6


class UniqueViolation(StorageError):
    """A unique constraint refused a row: the caller decides whether that is a duplicate or a conflict."""


class RequestRejected(BillingApiError):
    """A request the API refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StripePushError(BillingApiError):
    """Stripe did not take a meter event."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable

"""One exception tree for everything cluster-exporter reports to a user.

    ExporterError                      exit 1 unless said otherwise
    ├── UsageError                     exit 2: bad flags, bad config, bad times
    │   └── cli.MissingDependencyError a command's optional dependency is not installed (names the extra)
    ├── SourceError                    a data source failed: never turn this into a zero
    │   ├── PrometheusError            unreachable, HTTP error, malformed/partial body, NaN
    │   └── KubernetesError            kubeconfig missing or bad, an answer that is not what was asked
    │       ├── KubernetesNotFound         404: the object (or its namespace) does not exist
    │       ├── KubernetesConflict         409: stale resourceVersion, or the object already exists
    │       ├── KubernetesRefused          any other 4xx (403, 422 ...): final, never retried
    │       └── KubernetesUnavailable      5xx, 429, timeouts, connection errors, after the retries
    ├── WindowNotReadyError            window end in the future or too recent to be complete
    ├── NoDataError                    no container samples in the window: a broken pipeline
    ├── LayoutError                    exit 6: the data's layout does not match the settings
    ├── DeliveryError                  the billing API did not take a report
    │   └── PermanentDeliveryError     a 4xx other than 408 and 429: retrying cannot help
    ├── state.StateError               the watermark/spool could not be read or written
    │   ├── StateConflictError         another replica wrote the state in between
    │   ├── StateTooLargeError         the ConfigMap backend's size limit
    │   ├── StateLockedError           another process holds the directory state
    │   └── runner.LostLeaseError      leadership lost in the middle of a cycle
    ├── service.NotLeaderError         run --once found the Lease held by another replica
    ├── billing_api.errors.BillingApiError   the billing API's own tree (config, storage,
    │                                        rejected requests, Stripe pushes)
    └── devtools...DevServerError      a development server (Prometheus, promtool) failed

The branches named with a module live next to the code that raises them; they are drawn here so
this stays the one place to read the tree.

Dependencies' exceptions (aiohttp, kubernetes, pydantic) are mapped to these in the module that
talks to the dependency, with ``raise ... from exc``, so the CLI only has to know this tree: for
the Kubernetes API that is ``kube_api.request`` alone (statuses to the typed errors below, kopf's
``check_response``); what is retried first is ``retry.py``'s rule.
Every message is one line; response bodies are cut with ``clip`` before they reach a message.
"""

from __future__ import annotations

MAX_BODY_IN_MESSAGE = 200


def clip(text: str | bytes, limit: int = MAX_BODY_IN_MESSAGE) -> str:
    """Make a response body safe for a one-line message: decoded, single line, cut to ``limit``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[:limit] + "..."


class ExporterError(Exception):
    """Root of every error cluster-exporter raises on purpose."""

    exit_code = 1


class UsageError(ExporterError):
    """The user asked for something malformed (flags, config, times)."""

    exit_code = 2


class SourceError(ExporterError):
    """A data source failed; the window must not be reported."""


class PrometheusError(SourceError):
    """Prometheus (or a PromQL-compatible engine) failed or answered something unusable."""


class KubernetesError(SourceError):
    """The Kubernetes API failed or could not be reached."""


class KubernetesStatusError(KubernetesError):
    """The Kubernetes API answered an HTTP error status; ``body`` is the answer, clipped."""

    def __init__(self, message: str, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class KubernetesNotFound(KubernetesStatusError):
    """404: the object, or the namespace it lives in, does not exist."""


class KubernetesConflict(KubernetesStatusError):
    """409: another writer changed the object since we read it, or created it first."""


class KubernetesRefused(KubernetesStatusError):
    """Any other 4xx (403 Forbidden, 422 Invalid ...): final, asking again cannot help."""


class KubernetesUnavailable(KubernetesError):
    """5xx, 429, timeouts or connection errors that outlasted the retries; ``status`` is None when
    there was no answer at all."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WindowNotReadyError(ExporterError):
    """The window has not ended, or ended too recently for its last scrapes to be stored."""

    exit_code = 3


class NoDataError(ExporterError):
    """Prometheus holds no container samples for the window: scraping is broken or data is late."""

    exit_code = 4


class LayoutError(ExporterError):
    """The series are there but do not fit what a meter reads (a namespace in a label it does not
    read, copies it cannot merge, a pipeline with CPU but no memory): billing them would be wrong."""

    exit_code = 6


class DeliveryError(ExporterError):
    """The billing API did not accept a report (retryable)."""

    exit_code = 5


class PermanentDeliveryError(DeliveryError):
    """The billing API rejected a report for good (4xx other than 408 and 429)."""

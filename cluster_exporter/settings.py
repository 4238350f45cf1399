"""Settings, grouped by concern, from flags > environment > config file > defaults.

Every field documents itself (``description``) because docs/configuration.md is generated from this
module (``cluster-exporter config-reference``). Functions receive a ``Settings`` (or one group of
it) as an argument; nothing else in the package reads the environment.

Environment names: each field is read from ``<GROUP>_<FIELD>`` (``PROMETHEUS_URL``,
``BILLING_API_URL``, ``KUBERNETES_KUBECONFIG``), plus the original design's names where it had
one (``CLUSTER_ID`` or ``INSTANCE_ID``, ``CUSTOMER_LABEL``, ``KUBECONFIG``). Lists and tables are
JSON in the environment. The config file (``--config`` / ``CONFIG_FILE``) is TOML with one table
per group, e.g. ``[metering]`` and ``[[metering.custom_meters]]``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from . import meters
from .errors import UsageError
from .times import parse_rfc3339

_DURATION_RE = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?!s))?\s*(?:(\d+(?:\.\d+)?)s)?\s*(?:(\d+)ms)?\s*$"
)


def parse_duration(value: Any) -> Any:
    """Accept ``90s``, ``5m``, ``1h30m``, ``250ms``, a number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return timedelta(seconds=float(text))
        match = _DURATION_RE.match(text)
        if match and any(match.groups()):
            hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
            return timedelta(hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis)
    raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 5m, 1h)")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be positive")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]  # kept a str: callers append paths to it


def _json_if_str(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected JSON, got {value[:60]!r}") from exc
    return value


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class PrometheusSettings(_Group):
    """Where and how to query PromQL."""

    url: HttpUrl = Field("http://prometheus:9090", description="Base URL of Prometheus or a PromQL-compatible engine.")
    timeout: Duration = Field(timedelta(seconds=60), description="Timeout of one PromQL HTTP request.")
    max_concurrency: int = Field(4, ge=1, le=64, description="PromQL requests in flight at once.")
    meters_at_once: int | Literal["auto"] = Field(
        "auto",
        description="Meters measured at the same time. Each holds a few dozen bytes per series while it is "
        'measured. "auto": 3, or 1 on clusters with more than 50,000 labeled namespaces (to stay within '
        "128 MiB); a number overrides it.",
    )

    @field_validator("meters_at_once", mode="before")
    @classmethod
    def _auto_or_1_to_16(cls, value: Any) -> int | str:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            number = int(str(value).strip())
        except ValueError:
            number = 0
        if not 1 <= number <= 16 or isinstance(value, bool | float):
            raise ValueError(f'must be "auto" or a whole number from 1 to 16, not {value!r}')
        return number

    compression: bool = Field(
        False,
        description="Ask for gzip-compressed answers: less traffic to a remote engine, more CPU on both ends "
        "(a window's answers are tens of MB at 10,000 namespaces).",
    )
    fast_decoder: bool = Field(
        True,
        description="Decode answers with the typed JSON decoder (msgspec), a run of complete series at a time; "
        "off: the standard library's decoder, one series at a time (about 2.5 times the CPU). Either way "
        "an answer is checked the same and held within prometheus.max_item_bytes.",
    )
    attempts: int = Field(
        4, ge=1, le=20, description="Tries per PromQL request (5xx, 429, timeouts, connection errors)."
    )
    bearer_token: str | None = Field(None, description="Bearer token sent to the PromQL engine.", repr=False)
    bearer_token_file: Path | None = Field(None, description="File holding the bearer token (re-read per run).")
    basic_auth_username: str | None = Field(None, description="Basic-auth user for the PromQL engine.")
    basic_auth_password: str | None = Field(None, description="Basic-auth password.", repr=False)
    headers: Annotated[dict[str, str], BeforeValidator(_json_if_str)] = Field(
        default_factory=dict, description='Extra HTTP headers, e.g. {"X-Scope-OrgID": "tenant-a"} for Mimir/Cortex.'
    )
    ca_file: Path | None = Field(None, description="CA bundle to verify the engine's TLS certificate.")
    insecure_skip_verify: bool = Field(False, description="Do not verify TLS certificates (testing only).")
    query_split: int = Field(
        1,
        ge=1,
        le=36,
        description="Split each meter's queries into up to this many shards by namespace (for engines with a "
        "limit on the series or samples one query may load); the shards' answers are summed. The namespaces are "
        "listed first and cut at the character where their names differ most (a shared prefix or suffix is skipped).",
    )
    max_query_length: int = Field(
        256 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Longest PromQL expression sent, in bytes: raw-sample fetches of irregular series are split "
        "to fit (VictoriaMetrics refuses queries over -search.maxQueryLen, 16384 by default).",
    )
    max_item_bytes: int = Field(
        1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="Largest single element of an answer (one series with its samples, or the envelope around the "
        "result list), in bytes: what the exporter holds of an answer at once, and parses again while it is "
        "incomplete (about ten times its size in objects). The largest series a window reads, its raw samples over "
        "the window and 10 minutes, is about 15 KB at 10s scrapes for a 1h window and 150 KB for a 24h window at "
        "15s; a larger element fails the window.",
    )
    max_answer_bytes: int = Field(
        1024**3,
        ge=1024 * 1024,
        description="Largest answer read, in bytes, counted as it streams in (a boundary answer at 100,000 "
        "namespaces is about 100 MB); a larger one fails the window instead of being read forever.",
    )
    max_window_bytes: int = Field(
        8 * 1024**3,
        ge=1024 * 1024,
        description="Largest total of every answer of one window, in bytes (a window at 10,000 namespaces reads "
        "about 150 MB); past it the window fails.",
    )


class KubernetesSettings(_Group):
    """How customers are discovered."""

    kubeconfig: Path | None = Field(
        None, description="Kubeconfig file; without it the in-cluster config is used (inside a pod)."
    )
    context: str | None = Field(None, description="Kubeconfig context to use (default: the current one).")
    customer_label: str = Field(
        "billing.example.com/customer-id",
        description="Namespace label whose value is the customer id. Unlabeled namespaces are never billed.",
    )
    page_size: int = Field(500, ge=1, le=10000, description="Namespaces per list page (the API's limit/continue).")
    timeout: Duration = Field(timedelta(seconds=30), description="Timeout of one Kubernetes API request.")

    @field_validator("customer_label")
    @classmethod
    def _label(cls, value: str) -> str:
        if not re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value):
            raise ValueError(f"not a Kubernetes label key: {value!r}")
        return value


class CustomMeter(_Group):
    """An operator-defined meter, reported under ``name`` in every usage record."""

    name: str = Field(description="Key in the usage record (snake_case).")
    type: Literal["counter", "gauge"] = Field(
        "counter", description="counter: exact increase in the window; gauge: time integral in value-hours."
    )
    selector: str | None = Field(
        None,
        description='Series selector metered like the built-ins, e.g. pg_stat_database_xact_commit{datname!=""}.',
    )
    query: str | None = Field(
        None,
        description="Instead of selector: a PromQL template answering one value per namespace; placeholders "
        "{window}, {window_start}, {window_end} (unix seconds) and {namespace_label}.",
    )
    namespace_label: str = Field("namespace", description="Label that carries the tenant namespace.")
    multiplier: float = Field(1.0, description="Factor applied to the metered amount (e.g. unit conversion).")
    integer: bool = Field(False, description="Round the reported amount to a whole number.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", value):
            raise ValueError(f"meter name must be snake_case: {value!r}")
        if value in meters.RESERVED:
            raise ValueError(f"meter name {value!r} is taken by a built-in field")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CustomMeter:
        if (self.selector is None) == (self.query is None):
            raise ValueError(f"custom meter {self.name!r}: give exactly one of selector or query")
        return self


class GpuResource(_Group):
    """Extended resources counted as GPUs by gpu_hours, with what one unit of each is worth."""

    resource: str = Field(
        description="Regex (fully anchored) of kube-state-metrics' resource label, e.g. nvidia_com_gpu or "
        "nvidia_com_mig_1g_.* (kube-state-metrics writes nvidia.com/gpu as nvidia_com_gpu)."
    )
    weight: float = Field(1.0, gt=0, description="GPUs one requested unit counts as (a 1g MIG slice: 1/7).")

    @field_validator("resource")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"resource {value!r} is not a valid regex: {exc}") from None
        return value


# nvidia.com/gpu (NVIDIA's device plugin), amd.com/gpu (AMD's), and MIG profiles
# (nvidia.com/mig-<g>g.<mem>gb with the device plugin's mixed strategy): an A100 or H100 has 7
# compute slices, so a <g>g profile is g/7 of a GPU.
DEFAULT_GPU_RESOURCES: list[dict[str, Any]] = [
    {"resource": "nvidia_com_gpu", "weight": 1.0},
    {"resource": "amd_com_gpu", "weight": 1.0},
    *({"resource": f"nvidia_com_mig_{g}g_.*", "weight": g / 7} for g in (1, 2, 3, 4, 7)),
]


DEFAULT_DEDUP_LABELS = [
    "job",
    "instance",
    "node",
    "endpoint",
    "service",
    "metrics_path",
    "prometheus",
    "prometheus_replica",
    "replica",
]


class MeteringSettings(_Group):
    """What a window is and how samples become amounts."""

    window: Duration = Field(timedelta(hours=1), description="Length of a billing window (whole hours).")
    scrape_interval: Duration = Field(
        timedelta(seconds=30),
        description="Longest scrape interval expected of cAdvisor, the kubelet and the other sources (10s to 60s "
        "in real installations); only sets the default settle delay. Metering reads the spacing of the samples "
        "themselves and never assumes an even grid.",
    )
    max_gap: Duration = Field(
        timedelta(minutes=5),
        description="Longest gap between two samples of one series that is bridged: the same series on both sides "
        "of a gap is the same container, still alive. Default and maximum 5m, Prometheus' lookback delta (what "
        "Prometheus itself shows at any instant in between).",
    )
    boundary_search: Duration = Field(
        timedelta(seconds=90),
        description="How far on each side of a window boundary the samples around it are read. A series with no "
        "sample within it on either side is metered from its raw samples (exact, one more query); cover the "
        "longest scrape interval plus the jitter of exporter-set timestamps.",
    )
    series_lookback: Duration = Field(
        timedelta(hours=2),
        description="How far before a window start a counter's last sample is looked for. A series silent for "
        "longer is treated as new (counted from zero).",
    )
    settle_delay: Duration | None = Field(
        None,
        description="How long after its end a window may be reported (samples after the end are needed to "
        "interpolate and to tell a gap from a stop). Default: max_gap + 2 scrape intervals.",
    )
    http_source: Literal["nginx", "istio", "none"] = Field(
        "nginx", description="Where http_requests comes from: nginx-ingress, Istio, or not metered."
    )
    nginx_namespace_label: str = Field(
        "auto",
        description="Label of nginx_ingress_controller_requests holding the Ingress' namespace. auto: per series, "
        "exported_namespace where Prometheus renamed nginx's own namespace label (the target's namespace took "
        "it), else namespace (scraped with honorLabels). A label name forces that label.",
    )
    min_attributed_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A meter whose series attribute less than this share of its usage to a namespace fails the "
        "window (its namespace is in a label it does not read). Unattributed usage below it is reported in "
        "cluster_exporter_metering_unattributed_amount.",
    )
    dedup_labels: Annotated[list[str], BeforeValidator(_json_if_str)] = Field(
        default_factory=lambda: list(DEFAULT_DEDUP_LABELS),
        description="For HTTP and custom meters: labels that only tell copies of one series apart (two scrape "
        "jobs, HA Prometheus replicas); copies are counted once. Container, network and volume meters merge copies "
        "by what they measure (namespace, pod, container; namespace, pod, interface; namespace, claim).",
    )
    network_interfaces_excluded: str = Field("lo", description="Regex of network interfaces not billed.")
    namespace_labels_metric: bool = Field(
        True,
        description="Read kube-state-metrics' kube_namespace_labels to bill namespaces deleted during a window.",
    )
    requests: Literal["auto", "on", "off"] = Field(
        "auto",
        description="cpu_request_hours and memory_request_gb_hours: requests of running pods from "
        "kube-state-metrics (kube_pod_container_resource_requests gated by kube_pod_status_phase). auto: "
        "measured when kube-state-metrics' pod series are there; on: a window without them fails.",
    )
    gpu: Literal["auto", "on", "off"] = Field(
        "auto",
        description="gpu_hours: GPUs requested by running pods (metering.gpu_resources), from kube-state-metrics. "
        "auto: measured when kube-state-metrics' pod series are there; on: a window without them fails.",
    )
    gpu_resources: Annotated[list[GpuResource], BeforeValidator(_json_if_str)] = Field(
        default_factory=lambda: [GpuResource(**r) for r in DEFAULT_GPU_RESOURCES],
        description="Resources counted by gpu_hours, each with its weight; the first matching entry wins.",
    )
    gpu_utilization: Literal["off", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL"] = Field(
        "off",
        description="gpu_utilized_hours from dcgm-exporter: the time integral of the graphics engine's active "
        "ratio (DCGM_FI_PROF_GR_ENGINE_ACTIVE, a profiling metric) or of DCGM_FI_DEV_GPU_UTIL / 100 where "
        "profiling metrics are off; attributed by dcgm-exporter's namespace and pod labels. A window without "
        "the series fails.",
    )
    custom_meters: Annotated[list[CustomMeter], BeforeValidator(_json_if_str)] = Field(
        default_factory=list, description="Operator-defined meters (see docs/metering.md)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> MeteringSettings:
        hour = timedelta(hours=1)
        if self.window % hour:
            raise ValueError("metering.window must be a whole number of hours")
        if self.max_gap > timedelta(minutes=5):
            raise ValueError("metering.max_gap must be at most 5m (Prometheus' lookback delta)")
        if self.max_gap < 1.5 * self.scrape_interval:
            raise ValueError("metering.max_gap must be at least 1.5 scrape intervals")
        if self.boundary_search > self.max_gap:
            raise ValueError("metering.boundary_search must be at most max_gap")
        if self.series_lookback <= self.window + self.max_gap:
            raise ValueError("metering.series_lookback must be longer than window + max_gap")
        names = [m.name for m in self.custom_meters]
        if len(names) != len(set(names)):
            raise ValueError("custom meter names must be unique")
        return self

    @property
    def effective_settle_delay(self) -> timedelta:
        """The settle delay, defaulted from max_gap and the scrape interval."""
        return self.settle_delay or (self.max_gap + 2 * self.scrape_interval)


class BillingApiSettings(_Group):
    """Where reports go."""

    url: str | None = Field(None, description="Base URL of the billing API (POST {url}/api/usage/report).")
    token: str | None = Field(None, description="Bearer token of this cluster at the billing API.", repr=False)
    token_file: Path | None = Field(None, description="File holding the bearer token (a mounted Secret).")
    timeout: Duration = Field(timedelta(seconds=30), description="Timeout of one delivery request.")

    def resolved_token(self) -> str | None:
        """The token, read from token_file when one is given."""
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as exc:
                raise UsageError(f"cannot read billing_api.token_file {self.token_file}: {exc.strerror}") from exc
        return self.token


def _utc_time(value: Any) -> Any:
    if isinstance(value, str):
        value = parse_rfc3339(value)  # BadTime is a ValueError: pydantic reports it
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("time has no timezone (add Z for UTC)")
        return value.astimezone(UTC)
    return value


UtcTime = Annotated[datetime, BeforeValidator(_utc_time)]


class DeliverySettings(_Group):
    """How `run` schedules, stores and delivers reports (see docs/delivery.md)."""

    state_backend: Literal["auto", "directory", "configmap"] = Field(
        "auto",
        description="Where the watermark, spool and dead letters live: a directory (a PVC, or local use) or a "
        "ConfigMap in the exporter's namespace. auto: directory when state_dir is set, else configmap.",
    )
    state_dir: Path | None = Field(None, description="Directory of the directory backend (created if missing).")
    configmap_name: str = Field("cluster-exporter-state", description="Name of the ConfigMap of the configmap backend.")
    configmap_max_bytes: int = Field(
        900_000,
        ge=10_000,
        le=1_000_000,
        description="Budget for the ConfigMap's data (the API server refuses more than 1 MiB). Spooled reports are "
        "gzipped; a spool over budget stops building new windows until it drains.",
    )
    namespace: str | None = Field(
        None,
        description="Namespace of the state ConfigMap and the Lease. Default: the pod's own namespace (read from "
        "the service account).",
    )
    backfill_from: UtcTime | None = Field(
        None,
        description="On a first start (no watermark), report windows from this time on (RFC 3339, on a window "
        "boundary) instead of from the current window.",
    )
    max_age: Duration = Field(
        timedelta(days=35),
        description="Oldest window start catch-up will still build, counted back from the clock; default 35 days "
        "(840h), Stripe's limit for meter event timestamps. Older windows are skipped and counted.",
    )
    retry_budget: Duration = Field(
        timedelta(minutes=2),
        description="How long one cycle keeps retrying a delivery. Then the report stays spooled: --once exits "
        "non-zero, the loop tries again after poll_interval.",
    )
    backoff_initial: Duration = Field(timedelta(seconds=1), description="First retry delay (doubles, with jitter).")
    backoff_max: Duration = Field(timedelta(seconds=60), description="Longest delay between two delivery attempts.")
    retry_after_max: Duration = Field(
        timedelta(minutes=5), description="Longest Retry-After honoured; longer ones are cut to this."
    )
    max_customers_per_part: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        description="Customers per request; a bigger report is split into parts sharing report_id and window.",
    )
    poll_interval: Duration = Field(
        timedelta(seconds=60),
        description="In the loop: how long to wait after a failed cycle, and how often a standby replica looks "
        "for leadership work.",
    )
    metrics_address: str = Field("0.0.0.0", description="Address of the /metrics, /healthz and /readyz server.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Port of the /metrics, /healthz and /readyz server (0: a free port, logged)."
    )
    leader_election: bool = Field(
        True,
        description="Report only while holding a coordination.k8s.io Lease (run two replicas for HA). Off: this "
        "process reports whenever it runs.",
    )
    lease_name: str = Field("cluster-exporter", description="Name of the Lease.")
    lease_duration: Duration = Field(
        timedelta(seconds=15), description="How long a Lease is valid after its last renewal without being renewed."
    )
    lease_renew_deadline: Duration = Field(
        timedelta(seconds=10),
        description="The leader stops reporting when it could not renew for this long (shorter than "
        "lease_duration, so it stops before anyone else may start).",
    )
    lease_retry_period: Duration = Field(
        timedelta(seconds=2), description="How often the leader renews and a standby tries to acquire."
    )
    identity: str | None = Field(
        None, description="This replica's name in the Lease. Default: the host name (the pod name) and process id."
    )
    progress: Literal["auto", "bar", "lines"] = Field(
        "auto", description="Catch-up progress: a bar on a terminal, one log line per window otherwise (auto)."
    )

    @field_validator("configmap_name", "lease_name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", value):
            raise ValueError(f"not a Kubernetes object name: {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeliverySettings:
        if self.state_backend == "directory" and self.state_dir is None:
            raise ValueError("delivery.state_backend=directory needs delivery.state_dir")
        if self.lease_renew_deadline >= self.lease_duration:
            raise ValueError("delivery.lease_renew_deadline must be shorter than delivery.lease_duration")
        if self.lease_retry_period >= self.lease_renew_deadline:
            raise ValueError("delivery.lease_retry_period must be shorter than delivery.lease_renew_deadline")
        return self

    @property
    def backend(self) -> Literal["directory", "configmap"]:
        """The state backend in effect (auto resolved)."""
        if self.state_backend == "auto":
            return "directory" if self.state_dir is not None else "configmap"
        return self.state_backend


class Settings(BaseSettings):
    """All settings of one cluster-exporter process."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True, env_nested_delimiter="__")

    cluster_id: str = Field(
        "",
        description="This cluster's id at the billing API (env CLUSTER_ID, or INSTANCE_ID as in the original design).",
    )
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)  # type: ignore[arg-type]
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)  # type: ignore[arg-type]
    metering: MeteringSettings = Field(default_factory=MeteringSettings)  # type: ignore[arg-type]
    billing_api: BillingApiSettings = Field(default_factory=BillingApiSettings)  # type: ignore[arg-type]
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)  # type: ignore[arg-type]

    @field_validator("cluster_id")
    @classmethod
    def _cluster_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", value):
            raise ValueError(f"cluster id must be 1-63 characters of letters, digits, '.', '_', '-': {value!r}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init) beat GROUP_FIELD environment names, which beat GROUP__FIELD, which beat the file.
        return (init_settings, _FlatEnvSource(settings_cls), env_settings, _ConfigFileSource(settings_cls))


GROUPS: dict[str, type[_Group]] = {
    "prometheus": PrometheusSettings,
    "kubernetes": KubernetesSettings,
    "metering": MeteringSettings,
    "billing_api": BillingApiSettings,
    "delivery": DeliverySettings,
}

# The original design's environment names, and other names users already have set.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "cluster_id": ("CLUSTER_ID", "INSTANCE_ID"),
    "kubernetes.customer_label": ("CUSTOMER_LABEL",),
    "kubernetes.kubeconfig": ("KUBECONFIG",),
}


def env_names(path: str) -> tuple[str, ...]:
    """Environment variable names for a dotted settings path, most specific first."""
    primary = path.replace(".", "_").upper()
    return (primary, *[a for a in ENV_ALIASES.get(path, ()) if a != primary])


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        if name in GROUPS:
            group_values = {}
            for field in GROUPS[name].model_fields:
                for env in env_names(f"{name}.{field}"):
                    if environ.get(env, "") != "":
                        group_values[field] = environ[env]
                        break
            if group_values:
                values[name] = group_values
        else:
            for env in env_names(name):
                if environ.get(env, "") != "":
                    values[name] = environ[env]
                    break
    return values


class _FlatEnvSource(PydanticBaseSettingsSource):
    """``PROMETHEUS_URL``-style names and the original design's aliases (see ``ENV_ALIASES``)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _from_environ(os.environ)


_config_file: ContextVar[Path | None] = ContextVar("cluster_exporter_config_file", default=None)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The TOML file named by ``--config`` or ``CONFIG_FILE``."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        if path is None and os.environ.get("CONFIG_FILE"):
            path = Path(os.environ["CONFIG_FILE"])
        return _read_config_file(path) if path else {}


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first bad setting and why."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "settings"
    more = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"invalid setting {where}: {first['msg']}{more}"


def load_settings(overrides: Mapping[str, Any] | None = None, config_file: Path | None = None) -> Settings:
    """Build Settings: ``overrides`` (flags, nested dict) beat the environment, which beats the config file."""
    token = _config_file.set(config_file)
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc)) from exc
    finally:
        _config_file.reset(token)

"""The one typed settings object.

Defaults live in ``config/signalyard.toml`` (or the file named by ``SIGNALYARD_CONFIG``);
every value can be overridden from the environment as ``SIGNALYARD_<SECTION>__<KEY>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "SIGNALYARD_"
ENV_NESTED_DELIMITER = "__"
REPO_CONFIG_FILE = Path(__file__).resolve().parent / "signalyard.toml"

# The name of a registered domain (``domains.names()``); settings name domains only where a
# domain has its own values, and every domain without them gets the defaults.
DomainName = str


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming it."""


class Section(BaseModel):
    """A settings section; unknown keys are refused so that a typo cannot pass unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(Section):
    bootstrap_servers: str = Field(min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    client_id: str = Field(min_length=1)

    @model_validator(mode="after")
    def _credentials_for_sasl(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs "
                f"{ENV_PREFIX}KAFKA__SASL_USERNAME and {ENV_PREFIX}KAFKA__SASL_PASSWORD"
            )
        return self

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]


class ClickHouseSettings(Section):
    dsn: str = ""

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, dsn: str) -> str:
        if dsn and not dsn.startswith(("chdb://", "http://", "https://")):
            raise ValueError("dsn must start with chdb://, http:// or https://")
        return dsn


class BatchLimits(Section):
    """A micro-batch closes at ``max_batch_size`` events or ``max_wait_ms`` after its first."""

    max_batch_size: int = Field(gt=0, le=4096)
    max_wait_ms: int = Field(ge=0, le=60_000)


class DomainBatchLimits(Section):
    """One domain's own limits; what is left out comes from the ``[batching]`` defaults."""

    max_batch_size: int | None = Field(default=None, gt=0, le=4096)
    max_wait_ms: int | None = Field(default=None, ge=0, le=60_000)


class BatchingSettings(BatchLimits):
    news: DomainBatchLimits = DomainBatchLimits()
    tickets: DomainBatchLimits = DomainBatchLimits()
    sensors: DomainBatchLimits = DomainBatchLimits()

    def of(self, domain: DomainName) -> BatchLimits:
        """The limits the domain's micro-batches close at."""
        own: DomainBatchLimits = getattr(self, domain, None) or DomainBatchLimits()
        return BatchLimits(
            max_batch_size=own.max_batch_size or self.max_batch_size,
            max_wait_ms=self.max_wait_ms if own.max_wait_ms is None else own.max_wait_ms,
        )


class SinkSettings(Section):
    max_batch_rows: int = Field(gt=0, le=1_000_000)
    max_delay_ms: int = Field(ge=0, le=60_000)
    max_pending_rows: int = Field(gt=0)
    retry_initial_ms: int = Field(gt=0, le=60_000)
    retry_max_ms: int = Field(gt=0, le=600_000)
    max_attempts_on_permanent_error: int = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> SinkSettings:
        if self.max_pending_rows < self.max_batch_rows:
            raise ValueError("max_pending_rows must be at least max_batch_rows")
        if self.retry_max_ms < self.retry_initial_ms:
            raise ValueError("retry_max_ms must be at least retry_initial_ms")
        return self


class QuerySettings(Section):
    """Limits of every read-only query (``signalyard sql``, ``/sql``, the dashboard, the
    trainer's reads): ClickHouse's own, applied by the engine; a query over one fails."""

    max_execution_time_s: float = Field(gt=0, le=86_400)
    max_memory_usage_bytes: int = Field(gt=0)
    max_rows_to_read: int = Field(gt=0)
    max_bytes_to_read: int = Field(gt=0)
    max_result_rows: int = Field(gt=0)
    max_result_bytes: int = Field(gt=0)


ProcessingGuarantee = Literal["at_least_once", "exactly_once"]


class PipelineSettings(Section):
    app_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")  # Faust app id = consumer group
    max_payload_bytes: int = Field(gt=0, le=16_777_216)
    # An event's ts may run this far ahead of, or behind, its record's Kafka timestamp.
    max_future_skew_s: float = Field(ge=0, le=10 * 365 * 86_400)
    max_event_age_s: float = Field(ge=0, le=500 * 365 * 86_400)
    max_batches_in_flight: int = Field(gt=0, le=4096)
    commit_interval_ms: int = Field(ge=0, le=60_000)
    # at_least_once: a crash may publish a result or an alert again (ClickHouse collapses it);
    # exactly_once: each commit is a Kafka transaction of the outputs and the offsets.
    processing_guarantee: ProcessingGuarantee
    session_timeout_s: float = Field(ge=6, le=300)  # the broker's default bounds: 6 s to 5 min
    # From SIGTERM to exit at most; past it the worker ends anyway (status 70), what it did
    # not commit to be read again.
    shutdown_timeout_s: float = Field(gt=0, le=3600)
    torch_threads: int = Field(ge=0, le=1024)  # per scoring process; 0: torch's, one per core
    web_port: int = Field(ge=0, lt=65536)  # 0 keeps Faust's web server off
    web_bind: str = Field(min_length=1)  # the address the web server listens on
    # The credential of /sql, /explain and the backtest writes; empty: each worker makes one
    # and writes it to ``web_token_path`` (readable by its user only), where the CLI finds it.
    web_token: SecretStr = SecretStr("")

    @property
    def scoring_group(self) -> str:
        """The consumer group in which the workers split the raw topics' partitions."""
        return f"{self.app_id}-scoring"


class AlertsSettings(Section):
    # A relative path is taken from the folder of the config file (see ``rules_path``).
    rules_file: Path
    in_scoring_workers: bool  # false: only ``signalyard alerts worker`` runs alerting
    # An entity no result reached for this long (Kafka time) is forgotten; never sooner than
    # its rules' longest window and cool-down allow (streams.alerting.expiry).
    state_ttl_s: float = Field(gt=0)


# How a text model runs (models.serving.inference): torch in fp32, bf16 or fp16 autocast,
# dynamic int8; or ONNX Runtime in fp32 or dynamic int8.
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8", "onnx-fp32", "onnx-int8"]


class InferenceSettings(Section):
    device: Literal["auto", "cpu", "cuda"]
    max_seq_length: int = Field(gt=0, le=8192)
    precision: Precision
    # precision auto on a CPU: the largest share of validation rows on which the chosen
    # runtime may decide unlike fp32 (models.serving.precision_choice).
    max_decision_change: float = Field(default=0.01, ge=0, le=1)


class ExplanationSettings(Section):
    """Attributions of predictions (``signalyard explain``, alerts' evidence, ``/explain``)."""

    steps: int = Field(gt=0, le=1024)  # integrated-gradients steps per text
    top_k: int = Field(gt=0, le=50)  # words or columns for and against in the short form
    in_alerts: bool  # explain the events that trigger an alert, off the event loop
    lookup_wait_s: float = Field(ge=0, le=600)  # how long a trigger event may take to be stored
    budget_s: float = Field(gt=0, le=600)  # the most a fetch's alerts wait for explanations
    max_cpu_share: float = Field(gt=0, le=1)  # of wall time spent explaining, at most


class AdaptationSettings(Section):
    event_wait_s: float = Field(ge=0, le=3600)
    check_interval_s: float = Field(gt=0, le=86_400)
    min_new_labels: int = Field(ge=0)
    schedule_s: float = Field(ge=0)
    drift_threshold: float = Field(ge=0, le=1)
    drift_window: int = Field(gt=0, le=1_000_000)
    estimate_margin: float = Field(ge=0, le=1)
    estimate_window: int = Field(gt=0, le=1_000_000)
    min_interval_s: float = Field(ge=0)
    mode: Literal["full", "lora", "head"]
    replay_ratio: float = Field(ge=0, le=100)
    holdout_fraction: float = Field(gt=0, lt=1)
    min_holdout: int = Field(gt=0)
    gate_margin: float = Field(ge=0, le=1)
    source_tolerance: float = Field(ge=0, le=1)
    unlabeled_events: int = Field(ge=0)
    unlabeled_threshold: float = Field(ge=0, le=1)
    unlabeled_class_cap: int = Field(gt=0)
    student_from: Literal["live", "teacher"]


class StackSettings(Section):
    kafka_version: str = Field(pattern=r"^4\.\d+\.\d+$")
    port: int = Field(gt=0, lt=65536)
    controller_port: int = Field(gt=0, lt=65536)
    start_timeout_s: float = Field(gt=0)
    # A SASL_PLAINTEXT (PLAIN) listener beside the plain one, for trying credentials; 0: none.
    sasl_port: int = Field(ge=0, lt=65536)
    sasl_username: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    sasl_password: SecretStr = SecretStr("signalyard-local")


class TopicSettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")
    partitions: int = Field(gt=0, le=1000)
    replication_factor: int = Field(default=1, gt=0)
    retention_ms: int = Field(default=604_800_000, ge=-1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"


DOMAIN_PARTITIONS = 6  # of a domain topic with no settings of its own


class TopicsSettings(Section):
    news_raw: TopicSettings
    tickets_raw: TopicSettings
    sensors_raw: TopicSettings
    news_scored: TopicSettings
    tickets_scored: TopicSettings
    sensors_scored: TopicSettings
    deadletter: TopicSettings
    alerts: TopicSettings
    feedback_labels: TopicSettings
    retrain_requests: TopicSettings
    model_updates: TopicSettings
    # Appended to the topics of domains without settings of their own, as ``with_topic_suffix``
    # appends it to the others (an isolated namespace on a shared cluster).
    suffix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,100}$")

    def all(self) -> list[TopicSettings]:
        """The topics named here (a domain's topics are ``raw`` and ``scored``)."""
        return [
            topic
            for field in type(self).model_fields
            if isinstance(topic := getattr(self, field), TopicSettings)
        ]

    def raw(self, domain: DomainName) -> TopicSettings:
        return self._of(domain, "raw")

    def scored(self, domain: DomainName) -> TopicSettings:
        return self._of(domain, "scored")

    def _of(self, domain: DomainName, stage: str) -> TopicSettings:
        """A domain's own topic settings, or ``<domain>.<stage>`` with the defaults."""
        own = getattr(self, f"{domain}_{stage}", None)
        name = f"{domain}.{stage}" + (f".{self.suffix}" if self.suffix else "")
        return own or TopicSettings(name=name, partitions=DOMAIN_PARTITIONS)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    home: Path = Path("~/.signalyard")
    registry_dir: Path | None = None
    kafka: KafkaSettings
    clickhouse: ClickHouseSettings
    batching: BatchingSettings
    sink: SinkSettings
    queries: QuerySettings
    pipeline: PipelineSettings
    alerts: AlertsSettings
    inference: InferenceSettings
    explanations: ExplanationSettings
    adaptation: AdaptationSettings
    stack: StackSettings
    topics: TopicsSettings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file()),
        )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def models_dir(self) -> Path:
        return (self.registry_dir or self.home_dir / "models").expanduser().resolve()

    @property
    def web_token_path(self) -> Path:
        """Where a worker without a configured ``pipeline.web_token`` keeps the one it made."""
        return self.home_dir / f"web-token-{self.pipeline.web_port}"

    @property
    def encoders_dir(self) -> Path:
        """Pretrained encoders fetched at setup (``signalyard encoders fetch``)."""
        return self.home_dir / "encoders"

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse.dsn or f"chdb://{self.home_dir / 'clickhouse'}"

    @property
    def rules_path(self) -> Path:
        """The alert rules file; relative to the config file's folder so that a site's config
        and rules travel together."""
        return (config_file().parent / self.alerts.rules_file.expanduser()).resolve()


def config_file() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG", REPO_CONFIG_FILE)).expanduser()


def _setting_name(location: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in location)


def setting_names(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> set[str]:
    """Every environment variable name that sets a value, e.g. SIGNALYARD_KAFKA__CLIENT_ID."""
    names: set[str] = set()
    for field, info in model.model_fields.items():
        name = prefix + field.upper()
        names.add(name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= setting_names(annotation, name + ENV_NESTED_DELIMITER)
    return names


def with_topic_suffix(settings: Settings, suffix: str) -> Settings:
    """The same settings with every topic renamed ``<name>.<suffix>``: an isolated namespace
    on a shared cluster, e.g. for a test or a benchmark run."""
    topics = {
        field: topic.model_copy(update={"name": f"{topic.name}.{suffix}"})
        for field, topic in settings.topics
        if isinstance(topic, TopicSettings)
    }
    joined = f"{settings.topics.suffix}.{suffix}" if settings.topics.suffix else suffix
    return settings.model_copy(update={"topics": TopicsSettings(**topics, suffix=joined)})


def settings_environment(settings: Settings) -> dict[str, str]:
    """The SIGNALYARD_* variables that give a child process exactly these settings."""
    return _flatten(settings.model_dump(), ENV_PREFIX)


def _flatten(values: dict[str, object], prefix: str) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = prefix + key.upper()
        if isinstance(value, dict):
            flat |= _flatten(value, name + ENV_NESTED_DELIMITER)
        elif isinstance(value, SecretStr):
            flat[name] = value.get_secret_value()
        elif isinstance(value, bool):
            flat[name] = str(value).lower()
        elif value is not None:
            flat[name] = str(value)
    return flat


def load_settings(**overrides: object) -> Settings:
    """Load settings from the config file and the environment, or raise SettingsError."""
    path = config_file()
    if not path.is_file():
        raise SettingsError(f"config file {path} not found (set {ENV_PREFIX}CONFIG)")
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(_describe(problem) for problem in error.errors())
        raise SettingsError(f"invalid setting {problems}") from None


def _describe(problem: ErrorDetails) -> str:
    name = _setting_name(problem["loc"]) if problem["loc"] else ENV_PREFIX + "*"
    value = problem.get("input")
    hidden = isinstance(value, dict) or value is None or "PASSWORD" in name
    shown = "" if hidden else f"={value!r}"
    return f"{name}{shown}: {problem['msg']}"

"""The node's configuration: pydantic models for ``config.yaml``, environment overrides and loading.

``load_config()`` reads the YAML file, applies ``DICOMNODE__SECTION__KEY`` environment overrides (values
parsed as YAML scalars, list items addressed by index: ``DICOMNODE__PEERS__0__PORT``), validates everything
and raises :class:`ConfigError` with messages that name the bad key. Relative paths (``storage.dir``,
``model.weights``, a SQLite database file) resolve against the directory of the configuration file.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from model.measurements import MEASUREMENT_NAMES, ReferenceRange

ENV_PREFIX = "DICOMNODE__"
DEFAULT_CONFIG_PATH = Path("config.yaml")


class ConfigError(ValueError):
    """The configuration file or an environment override is missing, unreadable or invalid."""


def _check_ae_title(value: str) -> str:
    """A DICOM AE title: 1 to 16 characters of the default repertoire, no backslash, not only spaces."""
    title = value.strip()
    if not title:
        raise ValueError("AE title must not be empty or only spaces")
    if len(title) > 16:
        raise ValueError(f"AE title {title!r} is longer than 16 characters")
    if "\\" in title or any(ord(c) < 0x20 or ord(c) > 0x7E for c in title):
        raise ValueError(f"AE title {title!r} contains a backslash or a non-printable/non-ASCII character")
    return title


AETitle = Annotated[str, AfterValidator(_check_ae_title)]
MeasurementName = Literal[MEASUREMENT_NAMES]  # type: ignore[valid-type]
Port = Annotated[int, Field(ge=1, lt=65536)]
Seconds = Annotated[float, Field(gt=0)]


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir") or Path.cwd())


def _resolve(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (_base_dir(info) / path).resolve()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


class NodeSection(_Section):
    """This node's own DICOM identity and network limits."""

    ae_title: AETitle = "KNEEALIGN"
    bind: str = "0.0.0.0"
    port: Port = 11112
    max_associations: int = Field(default=10, ge=1)
    max_pdu_size: int = Field(default=131072, ge=0, description="bytes, 0 = unlimited")
    acse_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 60.0
    network_timeout: Seconds = 60.0


class PeerConfig(_Section):
    """A DICOM peer allowed to send to the node (calling AE title from one of ``allowed_hosts``)."""

    name: str = Field(min_length=1)
    ae_title: AETitle
    host: str = Field(min_length=1)
    port: Port
    send_results: bool = True
    allowed_hosts: list[str] | None = Field(
        default=None, description="IP addresses, CIDR networks or host names; default [host]"
    )
    compression: Literal["lossless", "none"] = Field(
        default="lossless",
        description="lossless: offer results as stored (the SC in JPEG 2000 Lossless) with an uncompressed "
                    "fallback the peer may pick; none: send everything uncompressed",
    )

    @model_validator(mode="after")
    def _default_allowed_hosts(self) -> PeerConfig:
        if not self.allowed_hosts:
            # object.__setattr__ avoids re-running validation (validate_assignment) from inside a validator.
            object.__setattr__(self, "allowed_hosts", [self.host])
        return self

    def allows_host(self, ip: str) -> bool:
        """True if the peer address ``ip`` matches one of ``allowed_hosts`` (IP, network or resolved name)."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return ip in (self.allowed_hosts or [])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
            ip = str(address)
        for entry in self.allowed_hosts or []:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
                continue
            except ValueError:
                pass  # not an IP or a network: a host name
            if ip in _resolve_host(entry):
                return True
        return False


def _resolve_host(name: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return set()


class StorageSection(_Section):
    """The spool: received instances and built outputs."""

    dir: Path = Path("var/spool")
    retention_days: float = Field(default=7, ge=0)
    min_free_mb: int = Field(default=1024, ge=0, description="below this free space C-STORE answers 0xA700")

    @field_validator("dir")
    @classmethod
    def _resolve_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @property
    def incoming_dir(self) -> Path:
        """Where C-STORE writes temporary files before renaming them into ``instances_dir``."""
        return self.dir / "incoming"

    @property
    def instances_dir(self) -> Path:
        """Received instances, as ``<instances_dir>/<StudyInstanceUID>/<SOPInstanceUID>.dcm``."""
        return self.dir / "instances"


class DatabaseSection(_Section):
    """The job database: an SQLAlchemy URL (SQLite by default, PostgreSQL for several hosts)."""

    url: str = "sqlite:///var/dicomnode.sqlite"

    @field_validator("url")
    @classmethod
    def _resolve_sqlite_file(cls, value: str, info: ValidationInfo) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {value!r}") from exc
        if url.get_backend_name() != "sqlite":
            return value
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return value
        resolved = _resolve(Path(database), info)
        return url.set(database=str(resolved)).render_as_string(hide_password=False)


class ProcessingSection(_Section):
    """When and how received images are processed."""

    trigger: Literal["instance", "study"] = "instance"
    study_quiet_seconds: float = Field(default=5, ge=0)
    outputs: list[Literal["sr", "landmarks", "sc", "gsps"]] = Field(default_factory=lambda: ["sr", "sc"],
                                                                     min_length=1)
    workers: int = Field(default=1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: Seconds = 10.0
    # The knee alignment panel (docs/measurements.md): which measurements are computed; the aTFA always is.
    measurements: list[MeasurementName] = Field(default_factory=lambda: list(MEASUREMENT_NAMES))
    # Optional, per site: measurement -> [low, high] in its unit; a value outside is shown as "outside the site's
    # range", never as a diagnosis.
    reference_ranges: dict[MeasurementName, tuple[float, float]] = Field(default_factory=dict)

    @field_validator("outputs", "measurements")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("reference_ranges")
    @classmethod
    def _valid_ranges(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for name, (low, high) in value.items():
            ReferenceRange(low, high)  # finite, low <= high; its message names the values
        return value

    @model_validator(mode="after")
    def _ranges_of_measured(self) -> ProcessingSection:
        measured = set(self.measurements) | {"atfa_fts", "atfa_fnts"}
        unmeasured = sorted(set(self.reference_ranges) - measured)
        if unmeasured:
            raise ValueError(f"reference_ranges for {', '.join(unmeasured)}, which processing.measurements leaves "
                             "out")
        return self

    def site_ranges(self) -> dict[str, ReferenceRange]:
        return {name: ReferenceRange(low, high) for name, (low, high) in self.reference_ranges.items()}


class DispatchSection(_Section):
    """Sending results to peers: retries with exponential backoff, capped."""

    max_attempts: int = Field(default=20, ge=1)
    retry_base_seconds: Seconds = 15.0
    retry_max_seconds: Seconds = 3600.0

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> DispatchSection:
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds must not be smaller than retry_base_seconds")
        return self


class ModelSection(_Section):
    """The landmark model's weights and the confidence below which a result is flagged."""

    weights: Path | None = None
    confidence_threshold: float | None = Field(default=None, ge=0, le=1)

    @field_validator("weights")
    @classmethod
    def _resolve_weights(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)


class LoggingSection(_Section):
    """Log level of the node's own loggers."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class NodeConfig(_Section):
    """The whole validated configuration."""

    node: NodeSection = Field(default_factory=NodeSection)
    peers: list[PeerConfig] = Field(default_factory=list)
    storage: StorageSection = Field(default_factory=StorageSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    processing: ProcessingSection = Field(default_factory=ProcessingSection)
    dispatch: DispatchSection = Field(default_factory=DispatchSection)
    model: ModelSection = Field(default_factory=ModelSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("peers")
    @classmethod
    def _unique_peer_names(cls, peers: list[PeerConfig]) -> list[PeerConfig]:
        names = [peer.name for peer in peers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"peer names must be unique; repeated: {', '.join(duplicates)}")
        return peers

    @property
    def source(self) -> Path | None:
        """The file this configuration was loaded from (None if built in code)."""
        return self._source

    def peer_by_ae(self, ae_title: str, host: str) -> PeerConfig | None:
        """The first peer with this calling AE title whose ``allowed_hosts`` match ``host`` (an IP), or None."""
        title = ae_title.strip()
        return next((p for p in self.peers if p.ae_title == title and p.allows_host(host)), None)

    def peer_by_name(self, name: str) -> PeerConfig:
        """The peer called ``name``; ``KeyError`` naming the known peers if there is none."""
        for peer in self.peers:
            if peer.name == name:
                return peer
        known = ", ".join(p.name for p in self.peers) or "none configured"
        raise KeyError(f"no peer named {name!r} (known: {known})")


def _parse_env_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set_path(data: dict[str, Any], keys: list[str], value: Any, variable: str) -> None:
    """Set ``value`` at ``keys`` in nested dicts/lists, creating dicts on the way; list items by index."""
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"{variable}: no list item {key!r} at {'.'.join(keys[:depth]) or 'top level'}")
            key_or_index: Any = int(key)
        elif isinstance(node, dict):
            key_or_index = key
        else:
            raise ConfigError(f"{variable}: {'.'.join(keys[:depth])} is not a section")
        if last:
            node[key_or_index] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(key), (dict, list)):
                node[key] = {}
            node = node[key_or_index]


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Apply ``DICOMNODE__SECTION__KEY=value`` overrides to ``data`` in place.

    Returns a map from the dotted key (``node.port``) to the variable that set it, for error messages.
    """
    applied: dict[str, str] = {}
    for variable in sorted(env):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in variable[len(ENV_PREFIX):].split("__")]
        if not all(keys):
            raise ConfigError(f"{variable}: empty key in environment override")
        _set_path(data, keys, _parse_env_value(env[variable]), variable)
        applied[".".join(keys)] = variable
    return applied


def _format_errors(exc: ValidationError, source: str, env_keys: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        origin = next((f"{var} (environment)" for dotted, var in env_keys.items()
                       if key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + ".")), source)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{origin}: {key}: {message}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Load and validate the configuration from ``path`` (default ./config.yaml) and ``env`` (default os.environ)."""
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    env = os.environ if env is None else env
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read configuration file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the top level must be a mapping of sections")
    env_keys = apply_env_overrides(data, env)
    try:
        config = NodeConfig.model_validate(data, context={"base_dir": config_path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, config_path.name, env_keys)) from None
    config._source = config_path.resolve()
    return config

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
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dicomnode.vocabulary import DEFAULT_OUTPUTS, OUTPUT_KIND_NAMES
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
OutputKindName = Literal[OUTPUT_KIND_NAMES]  # type: ignore[valid-type] - the registry's names
Seconds = Annotated[float, Field(gt=0)]


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir") or Path.cwd())


def _resolve(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (_base_dir(info) / path).resolve()


class _Section(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` in YAML is refused for every number (an infinite timeout is none).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True, allow_inf_nan=False)


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
    # This node's name in a queue shared with other nodes (one PostgreSQL database): written into the claims of
    # its jobs and deliveries; unique among those nodes. Defaults to the host name.
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    # Receiver processes sharing the listening port: one accepts and admits connections (the limits below hold
    # across all), the others run the associations (see dicomnode.receive.handoff). 1: one process, threads.
    receivers: int = Field(default=1, ge=1, le=32)

    @property
    def instance_name(self) -> str:
        """``name``, or the host name."""
        return self.name or socket.gethostname()


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
    tls: bool = Field(default=False, description="send to this peer over DICOM TLS (see the tls section)")

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
    outputs: list[OutputKindName] = Field(default_factory=lambda: list(DEFAULT_OUTPUTS), min_length=1)
    workers: int = Field(default=1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: Seconds = 10.0
    job_time_limit_seconds: Seconds = Field(default=120.0, description="wall clock per job in the sandbox")
    job_memory_mb: int = Field(default=3072, ge=256, description="MiB a job may use beyond the loaded model")
    max_decoded_mb: int = Field(default=128, ge=1, description="largest decoded image (rows x columns x frames "
                                                              "x bytes per pixel) a worker decodes")
    # A running job's claim lasts this long unless its worker renews it (every third of it); when a node dies,
    # another node sharing the database takes its jobs over after at most this long.
    lease_seconds: float = Field(default=60.0, ge=1, le=3600)
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


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach: ``localhost``, 127.0.0.0/8 or ``::1``."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


HTTP_TOKEN_MIN_LENGTH = 16


class HttpSection(_Section):
    """The admin's status page, ``/healthz``, ``/readyz`` and ``/metrics`` (``dicomnode.web``), served by
    ``dicomnode serve`` on a port of its own. Off loopback, every request but the probes needs ``token``."""

    enabled: bool = True
    bind: str = Field(default="127.0.0.1", min_length=1)
    port: Port = 8080
    token: SecretStr | None = Field(default=None, description="bearer token / login secret, at least 16 characters")
    show_patient_data: bool = Field(default=False, description="patient name and ID on the status page")
    public_origin: str | None = Field(default=None, description="https://name[:port] of a reverse proxy in front")

    @field_validator("public_origin")
    @classmethod
    def _origin_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{value!r} is not an origin such as https://kneealign.example.org[:port]")
        return f"{parts.scheme}://{parts.netloc}".lower()

    @field_validator("token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value()) < HTTP_TOKEN_MIN_LENGTH:
            raise ValueError(f"must be at least {HTTP_TOKEN_MIN_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpSection:
        if self.enabled and self.token is None and not is_loopback(self.bind):
            raise ValueError(f"bind {self.bind!r} is reachable from other machines: set http.token (at least "
                             f"{HTTP_TOKEN_MIN_LENGTH} characters, e.g. from DICOMNODE__HTTP__TOKEN) or bind "
                             "127.0.0.1")
        return self


class LoggingSection(_Section):
    """Log level of the node's own loggers."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


MiB = 1024 * 1024


class LimitsSection(_Section):
    """What one connection, one source address and one received object may cost the receiver.

    ``node.max_associations`` is the cap on connections in total; these limits work inside it. A connection
    that has not yet been accepted as an association is *pending*; pending connections are the ones closed
    first when a configured peer needs a slot.
    """

    max_connections_per_source: int = Field(default=8, ge=1, le=1000)
    unknown_source_connections: int = Field(
        default=2, ge=0, le=1000,
        description="connections at once from addresses outside every peer's allowed_hosts (they are only "
                    "ever answered with an A-ASSOCIATE-RJ); beyond this they are closed at once")
    pdu_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="seconds within which a PDU, once begun, must have fully arrived")
    max_associate_request_bytes: int = Field(default=128 * 1024, ge=1024, le=16 * MiB)
    max_dataset_bytes: int = Field(default=288 * MiB, ge=MiB, description="encoded (and inflated) bytes of "
                                   "one received dataset; a larger one aborts the association")
    max_image_pixels: int = Field(default=64 * MiB, ge=1, description="rows x columns x frames")
    max_image_bytes: int = Field(default=256 * MiB, ge=1, description="decoded pixel data bytes")

    @model_validator(mode="after")
    def _dataset_holds_an_image(self) -> LimitsSection:
        if self.max_dataset_bytes < self.max_image_bytes:
            raise ValueError("limits.max_dataset_bytes must not be smaller than limits.max_image_bytes (an "
                             "uncompressed image within the image limit must fit in one dataset)")
        return self


class TlsSection(_Section):
    """DICOM TLS: the listener (``enabled``) and outgoing associations to peers with ``tls: true``.

    The same certificate and key identify the node as a server and as a client; ``ca_certificates`` verifies
    both the clients' certificates and the peers' server certificates.
    """

    enabled: bool = Field(default=False, description="the listener accepts only TLS connections")
    certificate: Path | None = None
    private_key: Path | None = None
    ca_certificates: Path | None = None
    require_client_certificate: bool = True
    minimum_version: Literal["1.2", "1.3"] = "1.2"

    @field_validator("certificate", "private_key", "ca_certificates")
    @classmethod
    def _resolve_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> TlsSection:
        if self.enabled:
            for key in ("certificate", "private_key"):
                if getattr(self, key) is None:
                    raise ValueError(f"tls.{key} is required when tls.enabled is true")
            if self.require_client_certificate and self.ca_certificates is None:
                raise ValueError("tls.ca_certificates is required when tls.require_client_certificate is true")
        if self.certificate is not None or self.private_key is not None:
            if self.certificate is None or self.private_key is None:
                raise ValueError("tls.certificate and tls.private_key go together")
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.certificate,
                                                                                  self.private_key)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"tls.certificate/tls.private_key cannot be loaded: {exc}") from None
        if self.ca_certificates is not None:
            try:
                ssl.create_default_context(cafile=str(self.ca_certificates))
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"tls.ca_certificates cannot be loaded: {exc}") from None
        return self


class SyslogSection(_Section):
    """Where audit events are also sent, as RFC 5424 syslog messages carrying DICOM audit messages."""

    host: str = Field(min_length=1)
    port: Port = 514
    protocol: Literal["udp", "tcp"] = "udp"
    app_name: str = Field(default="kneealign", pattern=r"^[!-~]{1,48}$")
    enterprise_site_id: str | None = Field(default=None, max_length=64)


class AuditSection(_Section):
    """The audit trail: a table of its own (``dicomnode audit``), optionally mirrored to syslog."""

    retention_days: float = Field(default=365, gt=0)
    syslog: SyslogSection | None = None


SENDER = "sender"  # in a route's send_to: the peer that sent the image


class RouteConfig(_Section):
    """Where the results of an image go. Routes are tried in order and the first that matches decides; a route
    with neither ``from_peers`` nor ``from_calling_ae`` matches every image. Without routes, results go back to
    the sending peer when its ``send_results`` is true."""

    from_peers: list[str] = Field(default_factory=list, description="names of configured peers")
    from_calling_ae: list[AETitle] = Field(default_factory=list)
    send_to: list[str] = Field(min_length=1, description=f"peer names, or {SENDER!r} for the sending peer")

    def matches(self, peer: str | None, calling_ae: str) -> bool:
        if not self.from_peers and not self.from_calling_ae:
            return True
        return (peer is not None and peer in self.from_peers) or calling_ae.strip() in self.from_calling_ae


class NodeConfig(_Section):
    """The whole validated configuration."""

    node: NodeSection = Field(default_factory=NodeSection)
    peers: list[PeerConfig] = Field(default_factory=list)
    storage: StorageSection = Field(default_factory=StorageSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    processing: ProcessingSection = Field(default_factory=ProcessingSection)
    dispatch: DispatchSection = Field(default_factory=DispatchSection)
    model: ModelSection = Field(default_factory=ModelSection)
    http: HttpSection = Field(default_factory=HttpSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    tls: TlsSection = Field(default_factory=TlsSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    routes: list[RouteConfig] = Field(default_factory=list)

    _source: Path | None = PrivateAttr(default=None)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @field_validator("peers")
    @classmethod
    def _unique_peer_names(cls, peers: list[PeerConfig]) -> list[PeerConfig]:
        names = [peer.name for peer in peers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"peer names must be unique; repeated: {', '.join(duplicates)}")
        return peers

    @model_validator(mode="after")
    def _routes_name_peers(self) -> NodeConfig:
        names = {peer.name for peer in self.peers}
        if self.routes and SENDER in names:
            raise ValueError(f"a peer is named {SENDER!r}, which routes use for the sending peer: rename it")
        for number, route in enumerate(self.routes):
            unknown = sorted((set(route.from_peers) | set(route.send_to)) - names - {SENDER})
            if unknown:
                raise ValueError(f"routes[{number}] names peers that are not configured: {', '.join(unknown)}")
        return self

    def destinations(self, peer_name: str | None, calling_ae: str = "") -> list[str]:
        """The peers the results of an image from ``peer_name`` (calling ``calling_ae``) go to (see routes)."""
        sender = self._peer_or_none(peer_name)
        if not self.routes:
            return [sender.name] if sender is not None and sender.send_results else []
        route = next((r for r in self.routes if r.matches(peer_name, calling_ae)), None)
        if route is None:
            return []
        chosen = [(sender.name if sender is not None else None) if name == SENDER else name for name in route.send_to]
        return list(dict.fromkeys(name for name in chosen if name is not None))

    def _peer_or_none(self, name: str | None) -> PeerConfig | None:
        return next((peer for peer in self.peers if peer.name == name), None) if name is not None else None

    @model_validator(mode="after")
    def _distinct_ports(self) -> NodeConfig:
        if self.http.enabled and self.http.port == self.node.port:
            raise ValueError(f"http.port and node.port are both {self.node.port}: give the status page its own port")
        return self

    @model_validator(mode="after")
    def _security_consistent(self) -> NodeConfig:
        tls_peers = [peer.name for peer in self.peers if peer.tls]
        if tls_peers and (self.tls.ca_certificates is None or self.tls.certificate is None):
            raise ValueError(f"peers {', '.join(tls_peers)} use tls: tls.certificate, tls.private_key and "
                             "tls.ca_certificates are required")
        if self.audit.retention_days < self.storage.retention_days:
            raise ValueError(f"audit.retention_days ({self.audit.retention_days:g}) must not be shorter than "
                             f"storage.retention_days ({self.storage.retention_days:g})")
        return self

    def effective(self) -> dict[str, Any]:
        """The validated configuration as plain data, the database password replaced by ``***``."""
        data = self.model_dump(mode="json")
        data["database"]["url"] = make_url(self.database.url).render_as_string(hide_password=True)
        return data

    @property
    def source(self) -> Path | None:
        """The file this configuration was loaded from (None if built in code)."""
        return self._source

    @property
    def warnings(self) -> list[str]:
        """Legal but risky settings found at loading (see dicomnode.config_checks), as "key: message"."""
        return list(self._warnings)

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


def _origin(key: str, source: str, env_keys: Mapping[str, str]) -> str:
    """Where the value at dotted ``key`` came from: an environment variable, or the file ``source``."""
    return next((f"{var} (environment)" for dotted, var in env_keys.items()
                 if key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + ".")), source)


def _format_errors(exc: ValidationError, source: str, env_keys: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        origin = _origin(key, source, env_keys)
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
    config = validate(data, config_path.resolve().parent, config_path.name, env_keys)
    config._source = config_path.resolve()
    return config


def validate(data: dict[str, Any], base_dir: Path, source: str, env_keys: Mapping[str, str]) -> NodeConfig:
    """Validate ``data`` (YAML plus environment), then look for foot-guns (dicomnode.config_checks): errors
    raise ConfigError naming each key, warnings are kept in ``config.warnings``."""
    from dicomnode.config_checks import find_footguns

    try:
        config = NodeConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, env_keys)) from None
    findings = find_footguns(config, data)
    errors = [f"{_origin(f.key, source, env_keys)}: {f}" for f in findings if f.level == "error"]
    if errors:
        raise ConfigError("\n".join(errors))
    config._warnings = [str(f) for f in findings if f.level != "error"]
    return config

"""Configuration foot-guns: values that pass the type checks of :mod:`dicomnode.config` but would make a
node that silently misbehaves. Each finding names its key; errors stop the node (``ConfigError``, exit code 2),
warnings are printed by ``dicomnode check-config`` and logged at start-up.

Errors: a boolean where a number is expected (YAML ``true`` would become 1: ``port: true`` is port 1); an
in-memory SQLite database (every process would get its own, empty one); a spool at ``/``, at a system directory
or at a path that is a file; an ``allowed_hosts`` entry that admits every address, or an empty list (it does not
mean "nobody": leave the key out to mean ``[host]``); ``confidence_threshold: 0`` (nothing would ever be flagged
LOW CONFIDENCE); more workers or associations than any machine can serve; timeouts longer than a day.
Warnings: values that are legal but risky (DEBUG logs, no disk reserve, broad networks, more workers than CPUs,
a privileged port...).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import make_url

MAX_WORKERS = 64
MAX_ASSOCIATIONS = 1000
WARN_ASSOCIATIONS = 100
MAX_TIMEOUT_SECONDS = 86400.0
WARN_TIMEOUT_SECONDS = 600.0
# Memory the pipeline needs per byte of decoded image, measured on this code (decode, modality LUT in float64,
# normalisation, percentiles): 16 when the image is analysed, about 23 with the Secondary Capture. Used by the
# worker's header checks (dicomnode.pipeline.image_checks) and here; defined here, where nothing heavy is imported.
DECODE_MEMORY_FACTOR = 16
WARN_PREFIX = {4: 16, 6: 48}  # networks broader than these are worth a warning
SYSTEM_DIRS = {Path(p) for p in ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run",
                                 "/sbin", "/sys", "/usr", "/var", "/home", "/tmp", "/opt", "/srv")}
TIMEOUT_KEYS = (("node", "acse_timeout"), ("node", "dimse_timeout"), ("node", "network_timeout"),
                ("processing", "job_time_limit_seconds"))


@dataclass(frozen=True)
class Finding:
    """One foot-gun: ``level`` is "error" or "warning"; ``key`` the dotted key (``peers.0.allowed_hosts``)."""

    level: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def _booleans_for_numbers(model: BaseModel, raw: Any, prefix: str) -> list[Finding]:
    """YAML booleans given for integer or float fields (pydantic's lax mode turns ``true`` into 1)."""
    findings: list[Finding] = []
    if not isinstance(raw, dict):
        return findings
    for name, field in type(model).model_fields.items():
        if name not in raw:
            continue
        value, key = getattr(model, name), f"{prefix}{name}"
        if isinstance(value, BaseModel):
            findings += _booleans_for_numbers(value, raw[name], f"{key}.")
        elif isinstance(value, list) and isinstance(raw[name], list):
            for index, (item, raw_item) in enumerate(zip(value, raw[name], strict=False)):
                if isinstance(item, BaseModel):
                    findings += _booleans_for_numbers(item, raw_item, f"{key}.{index}.")
        elif isinstance(raw[name], bool) and field.annotation is not bool and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            findings.append(Finding("error", key, f"{str(raw[name]).lower()} is a boolean, not a number "
                                                  f"(it would become {int(raw[name])})"))
    return findings


def _database(config) -> list[Finding]:
    url = make_url(config.database.url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or "mode=memory" in database or "mode=memory" in str(url.query):
            return [Finding("error", "database.url", "an in-memory SQLite database is private to each process: "
                                                     "the receiver and the workers would not share jobs; give a file")]
    return []


def _storage(config) -> list[Finding]:
    directory = Path(config.storage.dir)
    findings = []
    if directory in SYSTEM_DIRS:
        findings.append(Finding("error", "storage.dir", f"{directory} is a system directory; give a directory of "
                                                        "the node's own (e.g. /var/lib/kneealign/spool)"))
    elif directory.exists() and not directory.is_dir():
        findings.append(Finding("error", "storage.dir", f"{directory} exists and is not a directory"))
    if config.storage.min_free_mb == 0:
        findings.append(Finding("warning", "storage.min_free_mb", "0: no disk reserve; the spool may fill the disk"))
    return findings


def _peers(config, raw: Any) -> list[Finding]:
    findings = []
    raw_peers = raw.get("peers") if isinstance(raw, dict) else None
    for index, peer in enumerate(config.peers):
        key = f"peers.{index}.allowed_hosts"
        raw_peer = raw_peers[index] if isinstance(raw_peers, list) and index < len(raw_peers) else {}
        if isinstance(raw_peer, dict) and raw_peer.get("allowed_hosts", None) == []:
            findings.append(Finding("error", key, "an empty list does not mean \"nobody\": it would fall back to "
                                                  "[host]; leave the key out for that, or list the addresses"))
        for entry in peer.allowed_hosts or []:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue  # a host name
            if network.prefixlen == 0:
                findings.append(Finding("error", key, f"{entry} admits every address; list the peer's addresses"))
            elif network.prefixlen < WARN_PREFIX[network.version]:
                findings.append(Finding("warning", key, f"{entry} admits {network.num_addresses} addresses"))
    return findings


def _limits(config) -> list[Finding]:
    findings = []
    workers = config.processing.workers
    if workers > MAX_WORKERS:
        findings.append(Finding("error", "processing.workers", f"{workers} workers: at most {MAX_WORKERS} (each "
                                                               "loads the model; memory and CPU run out long before)"))
    elif workers > (os.cpu_count() or 1):
        findings.append(Finding("warning", "processing.workers", f"{workers} workers on {os.cpu_count()} CPU(s)"))
    associations = config.node.max_associations
    if associations > MAX_ASSOCIATIONS:
        findings.append(Finding("error", "node.max_associations",
                                f"{associations}: at most {MAX_ASSOCIATIONS} (each is a thread of the receiver)"))
    elif associations > WARN_ASSOCIATIONS:
        findings.append(Finding("warning", "node.max_associations", f"{associations} simultaneous associations"))
    for section, name in TIMEOUT_KEYS:
        value = getattr(getattr(config, section), name, None)
        if value is None:
            continue
        if value > MAX_TIMEOUT_SECONDS:
            findings.append(Finding("error", f"{section}.{name}", f"{value:g} s: at most {MAX_TIMEOUT_SECONDS:g} s "
                                                                   "(a stuck peer or job would hold on that long)"))
        elif value > WARN_TIMEOUT_SECONDS:
            findings.append(Finding("warning", f"{section}.{name}", f"{value:g} s is long"))
    processing = config.processing
    if processing.max_decoded_mb * DECODE_MEMORY_FACTOR > processing.job_memory_mb:
        findings.append(Finding("warning", "processing.max_decoded_mb",
                                f"images near {processing.max_decoded_mb} MiB decoded need about "
                                f"{processing.max_decoded_mb * DECODE_MEMORY_FACTOR} MiB to process, more than "
                                f"processing.job_memory_mb ({processing.job_memory_mb}): they will fail"))
    threshold = config.model.confidence_threshold
    if threshold is not None and threshold == 0:
        findings.append(Finding("error", "model.confidence_threshold", "0 would never flag a result LOW CONFIDENCE; "
                                                                       "leave it out for the model card's value"))
    return findings


def _misc(config) -> list[Finding]:
    findings = []
    if config.logging.level == "DEBUG":
        findings.append(Finding("warning", "logging.level", "DEBUG logs carry error details and library messages "
                                                            "that may quote patient data"))
    if config.node.port < 1024:
        findings.append(Finding("warning", "node.port", f"{config.node.port} is a privileged port: the node needs "
                                                        "CAP_NET_BIND_SERVICE (see deploy/kneealign.service)"))
    if config.storage.retention_days == 0:
        findings.append(Finding("warning", "storage.retention_days", "0: finished work is deleted at the next "
                                                                     "retention run"))
    return findings


def find_footguns(config, raw: dict[str, Any] | None = None) -> list[Finding]:
    """Every finding for a validated ``config``; ``raw`` is the data it was validated from (YAML plus
    environment), needed to tell ``true`` from 1 and ``[]`` from a missing key."""
    raw = raw or {}
    return [*_booleans_for_numbers(config, raw, ""), *_database(config), *_storage(config), *_peers(config, raw),
            *_limits(config), *_misc(config)]

"""The security keys of config.yaml (limits, tls, audit, peers[].tls): validated, with errors naming the key."""

from __future__ import annotations

import pytest

from dicomnode.config import ConfigError, load_config
from tests.conftest import REPO

SHIPPED = REPO / "config.yaml"


def test_the_shipped_file_documents_the_defaults():
    config = load_config(SHIPPED, env={})
    assert config.limits.max_connections_per_source == 8 and config.limits.unknown_source_connections == 2
    assert config.limits.max_associate_request_bytes == 128 * 1024
    assert config.tls.enabled is False and config.audit.retention_days == 365 and config.audit.syslog is None


@pytest.mark.parametrize(("env", "expected"), [
    ({"DICOMNODE__LIMITS__PDU_TIMEOUT": "0"}, "limits.pdu_timeout: Input should be greater than 0"),
    ({"DICOMNODE__LIMITS__PDU_TIMEOUT": ".inf"}, "limits.pdu_timeout: Input should be a finite number"),
    ({"DICOMNODE__LIMITS__MAX_CONNECTIONS_PER_SOURCE": "0"}, "limits.max_connections_per_source"),
    ({"DICOMNODE__LIMITS__UNKNOWN_SOURCE_CONNECTIONS": "-1"}, "limits.unknown_source_connections"),
    ({"DICOMNODE__LIMITS__MAX_ASSOCIATE_REQUEST_BYTES": "100"}, "limits.max_associate_request_bytes"),
    ({"DICOMNODE__LIMITS__MAX_DATASET_BYTES": "2000000"},
     "limits: limits.max_dataset_bytes must not be smaller than limits.max_image_bytes"),
    ({"DICOMNODE__LIMITS__MAX_IMAGE_PIXELS": "0"}, "limits.max_image_pixels"),
    ({"DICOMNODE__LIMITS__BOGUS": "1"}, "limits.bogus: unknown key"),
    ({"DICOMNODE__TLS__ENABLED": "true"}, "tls: tls.certificate is required when tls.enabled is true"),
    ({"DICOMNODE__TLS__CERTIFICATE": "/nonexistent/node.pem"}, "tls.certificate: no such file"),
    ({"DICOMNODE__TLS__MINIMUM_VERSION": "1.0"}, "tls.minimum_version: Input should be '1.2' or '1.3'"),
    ({"DICOMNODE__PEERS__0__TLS": "true"}, "peers pacs use tls: tls.certificate, tls.private_key and"),
    ({"DICOMNODE__AUDIT__RETENTION_DAYS": "3"},
     "audit.retention_days (3) must not be shorter than storage.retention_days (7)"),
    ({"DICOMNODE__AUDIT__RETENTION_DAYS": "0"}, "audit.retention_days: Input should be greater than 0"),
    ({"DICOMNODE__AUDIT__SYSLOG": "{host: audit.example.org, protocol: smtp}"},
     "audit.syslog.protocol: Input should be 'udp' or 'tcp'"),
    ({"DICOMNODE__AUDIT__SYSLOG": "{port: 514}"}, "audit.syslog.host: Field required"),
    ({"DICOMNODE__AUDIT__SYSLOG": "{host: h, app_name: 'two words'}"}, "audit.syslog.app_name"),
])
def test_bad_security_values_name_the_key(env, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(SHIPPED, env=env)
    assert expected in str(caught.value), str(caught.value)

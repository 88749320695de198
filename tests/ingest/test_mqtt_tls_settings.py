"""MQTT client-certificate settings: checked at start with a message that says what to set, and loaded into
the TLS context when given (a broker with require_certificate true then accepts the service)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from crowdflow.broker import make_test_certs
from ingest.mqtt import MqttSettings, MqttSettingsError


def test_client_certificate_needs_tls_and_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(MqttSettingsError, match="tls is off"):
        MqttSettings(cert_file=str(cert), key_file=str(cert))
    with pytest.raises(MqttSettingsError, match="key_file is set without cert_file"):
        MqttSettings(tls=True, key_file=str(cert))
    with pytest.raises(MqttSettingsError, match=r"cert_file .*missing\.pem does not exist"):
        MqttSettings(tls=True, cert_file=str(tmp_path / "missing.pem"))


def test_client_certificate_is_loaded_into_the_tls_context(tmp_path: Path) -> None:
    files = make_test_certs(tmp_path / "certs", ["127.0.0.1"])
    settings = MqttSettings(tls=True, ca_file=str(files.ca_file), cert_file=str(files.cert_file),
                            key_file=str(files.key_file))  # fmt: skip
    ctx = settings.tls_context()
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    wrong = tmp_path / "wrong-key.pem"
    wrong.write_text(files.ca_file.read_text())  # a certificate where the key should be
    with pytest.raises(ssl.SSLError):
        MqttSettings(tls=True, cert_file=str(files.cert_file), key_file=str(wrong)).tls_context()

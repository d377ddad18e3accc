"""`mqtts://user:password@host` end to end: the flow and the publisher over TLS with auth.

A private Mosquitto with a TLS listener, a certificate from a CA made for the test, and a
password file (no anonymous clients). The flow reads from it with `VITALFLOW_MQTT_CA_FILE`;
the project's own publisher (simulator, dlq replay) sends over the same URL.
"""

from __future__ import annotations

import getpass
import ipaddress
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pipeline_harness import FlowUnderTest, bp_message, register_bp_patient, wait_for
from test_broker_restart import free_port

from connectors.mqtt_publisher import MqttPublisher, MqttPublishError
from flows.parent_death import die_with_parent

pytestmark = pytest.mark.integration

USER, PASSWORD = "gateway", "s3cret:with@odd/chars"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """Write a CA and a server certificate for 127.0.0.1 and localhost; return their paths."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("vitalflow test CA"))
        .issuer_name(_name("vitalflow test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class TlsBroker:
    port: int
    ca_file: Path
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, user: str = USER, password: str = PASSWORD) -> str:
        return f"mqtts://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    ca, cert, key = make_certificates(tmp_path)
    passwords = tmp_path / "passwords"
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([passwd, "-b", "-c", str(passwords), USER, PASSWORD], check=True)
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {passwords}\n"
        f"persistence true\npersistence_location {tmp_path}/\nmax_inflight_messages 10000\n"
        # Run as ourselves: as root, Mosquitto would switch to a user that cannot read the
        # files in our temporary directory.
        f"user {getpass.getuser()}\n"
    )
    log = tmp_path / "mosquitto.log"
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen(
        [binary, "-c", str(config)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    broker = TlsBroker(port, ca, process, log)
    try:
        deadline = time.monotonic() + 15
        while True:
            probe = MqttPublisher(broker.url(), client_id="vf-tls-probe", ca_file=str(ca))
            try:
                probe.connect(timeout_s=2)
                break
            except MqttPublishError as exc:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"{exc}\n{log.read_text()}"
                time.sleep(0.2)
        probe.close()
        yield broker
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_the_flow_and_the_publisher_work_over_tls_with_a_password(
    tls_broker: TlsBroker, flow: FlowUnderTest, unique_id: str
) -> None:
    flow.mqtt_url = tls_broker.url()
    db = flow.db
    register_bp_patient(db, "tls-patient")
    flow.extra_env["VITALFLOW_MQTT_CA_FILE"] = str(tls_broker.ca_file)
    flow.start()
    wait_for(lambda: " connected to " in flow.logs(), 60, flow, "the flow's TLS connection")
    time.sleep(1)
    publisher = MqttPublisher(
        tls_broker.url(), client_id=f"vf-tls-{unique_id}", ca_file=str(tls_broker.ca_file)
    )
    publisher.connect()
    for n in range(20):
        publisher.publish(*bp_message(n))
    assert publisher.wait_for_acks(30)
    publisher.close()
    wait_for(lambda: db.observations.count_documents({}) >= 40, 90, flow, "20 BP readings")
    assert db.observations.count_documents({"patient_id": "tls-patient"}) == 40
    assert PASSWORD not in flow.logs()


def test_a_wrong_password_or_an_unknown_ca_is_refused_with_a_clear_error(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    wrong = MqttPublisher(
        tls_broker.url(password="wrong"), client_id="vf-tls-wrong", ca_file=str(tls_broker.ca_file)
    )
    with pytest.raises(MqttPublishError, match="refused: Not authorized"):
        wrong.connect(timeout_s=5)
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_certificates(tmp_path / "other")
    untrusted = MqttPublisher(tls_broker.url(), client_id="vf-tls-ca", ca_file=str(other_ca))
    with pytest.raises(MqttPublishError, match="certificate verify failed"):
        untrusted.connect(timeout_s=5)


def test_a_flow_that_cannot_verify_the_broker_says_why_and_keeps_trying(
    tls_broker: TlsBroker, flow: FlowUnderTest
) -> None:
    # No CA file: the system's CAs do not know the test CA, as with a misconfigured site.
    flow.mqtt_url = tls_broker.url()
    flow.start()
    wait_for(
        lambda: flow.logs().count("certificate verify failed") >= 2,
        60,
        flow,
        "the reason, logged at each retry",
    )
    assert "cannot connect to 127.0.0.1" in flow.logs()
    assert PASSWORD not in flow.logs()
    flow.assert_running()

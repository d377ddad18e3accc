"""Tokens, scopes and filters: who sees which step event."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.auth import Access, AuthConfigError, InvalidTokenError, TokenVerifier, build_verifier
from api.records import parse_record
from api.selection import EventFilter, OutOfScopeError, Selection, split_values
from flows.settings import Settings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def _token(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _event(patient: str | None, hospital: str | None, **data: object) -> bytes:
    body = {
        "message_id": "m1",
        "step": "1_mqtt_received",
        "status": "success",
        "device_type": "AVA4",
        "device_id": "D1",
        "patient_id": patient,
        "hospital_id": hospital,
        **data,
    }
    return json.dumps({"id": "m1/1", "source": "vitalflow", "type": "t", "data": body}).encode()


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_hs256_token_grants_its_scopes() -> None:
    token = _token({"exp": time.time() + 60, "scope": "hospital:H1 patient:P7 patient:P8"})
    access = TokenVerifier(secret=SECRET).verify(token)
    assert not access.everything
    assert access.hospitals == {"H1"}
    assert access.patients == {"P7", "P8"}


def test_rs256_token_is_checked_with_the_public_key(rsa_keys: tuple[str, str]) -> None:
    private, public = rsa_keys
    token = _token({"exp": time.time() + 60, "scope": "events:all"}, private, "RS256")
    assert TokenVerifier(public_key=public).verify(token).everything


def test_public_key_used_as_hmac_secret_is_refused(rsa_keys: tuple[str, str]) -> None:
    _, public = rsa_keys

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"exp": time.time() + 60, "scope": "events:all"}).encode())
    mac = hmac.new(public.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidTokenError):
        TokenVerifier(public_key=public).verify(f"{header}.{claims}.{b64(mac)}")


@pytest.mark.parametrize(
    ("claims", "key", "reason"),
    [
        ({"exp": time.time() - 5, "scope": "events:all"}, SECRET, "expired"),
        ({"scope": "events:all"}, SECRET, "exp"),
        (
            {"exp": time.time() + 60, "scope": "events:all"},
            "another-secret-of-enough-length!!",
            "signature",
        ),
    ],
)
def test_expired_unbounded_or_badly_signed_tokens_are_invalid(
    claims: dict[str, object], key: str, reason: str
) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        TokenVerifier(secret=SECRET).verify(_token(claims, key))


def test_garbage_and_unsigned_tokens_are_invalid() -> None:
    verifier = TokenVerifier(secret=SECRET)
    with pytest.raises(InvalidTokenError):
        verifier.verify("not.a.token")
    unsigned = jwt.encode({"exp": time.time() + 60, "scope": "events:all"}, None, algorithm="none")
    with pytest.raises(InvalidTokenError):
        verifier.verify(unsigned)


def test_scope_may_be_a_list_and_unknown_grants_are_ignored() -> None:
    access = Access.from_scope(["patient:P1", "read:everything events:all"], expires_at=None)
    assert access.everything
    assert access.patients == {"P1"}


@pytest.mark.parametrize(
    "scope",
    [5, 1.5, True, None, {"events:all": 1}, ["events:all", 5], [["events:all"]], [None]],
    ids=["int", "float", "bool", "null", "object", "list-with-int", "nested-list", "list-null"],
)
def test_a_scope_claim_that_is_not_a_string_or_a_list_of_strings_is_invalid(
    scope: object,
) -> None:
    token = _token({"exp": time.time() + 60, "scope": scope})
    with pytest.raises(InvalidTokenError, match="scope claim"):
        TokenVerifier(secret=SECRET).verify(token)


def test_a_token_without_a_scope_claim_is_valid_and_grants_nothing() -> None:
    access = TokenVerifier(secret=SECRET).verify(_token({"exp": time.time() + 60}))
    assert access == Access(expires_at=access.expires_at)
    assert not access.can_see("P1", "H1")


def test_events_without_a_patient_are_visible_to_events_all_only() -> None:
    assert Access.unrestricted().can_see(None, None)
    assert not Access(hospitals=frozenset({"H1"})).can_see(None, None)
    assert not Access(patients=frozenset({"P1"})).can_see(None, None)


def test_a_households_events_are_visible_to_its_hospital_not_to_one_patient() -> None:
    # A message of several patients' readings names no patient, only their shared hospital.
    assert Access(hospitals=frozenset({"H1"})).can_see(None, "H1")
    assert not Access(hospitals=frozenset({"H2"})).can_see(None, "H1")
    assert not Access(patients=frozenset({"P1"})).can_see(None, "H1")


def test_hospital_grant_sees_its_patients_and_patient_grant_only_that_patient() -> None:
    hospital = Access(hospitals=frozenset({"H1"}))
    assert hospital.can_see("P9", "H1")
    assert not hospital.can_see("P9", "H2")
    patient = Access(patients=frozenset({"P1"}))
    assert patient.can_see("P1", "H2")
    assert not patient.can_see("P2", "H2")


def test_token_without_any_grant_sees_nothing() -> None:
    nothing = Access.from_scope("openid profile", expires_at=None)
    assert not nothing.can_see("P1", "H1")


def test_auth_needs_a_key_unless_explicitly_off() -> None:
    with pytest.raises(AuthConfigError):
        build_verifier(Settings(auth="jwt", jwt_secret=None, jwt_public_key=None))
    with pytest.raises(AuthConfigError):
        build_verifier(Settings(auth="maybe", jwt_secret=SECRET))
    assert build_verifier(Settings(auth="off")) is None


def test_auth_off_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    build_verifier(Settings(auth="off"))
    assert any("AUTH IS OFF" in r.message and r.levelname == "WARNING" for r in caplog.records)


def test_public_key_may_be_given_as_a_file(tmp_path: Path, rsa_keys: tuple[str, str]) -> None:
    private, public = rsa_keys
    pem = tmp_path / "public.pem"
    pem.write_text(public)
    verifier = build_verifier(Settings(auth="jwt", jwt_public_key=str(pem)))
    assert verifier is not None
    token = _token({"exp": time.time() + 60, "scope": "patient:P1"}, private, "RS256")
    assert verifier.verify(token).patients == {"P1"}


def test_filter_values_may_be_repeated_or_comma_separated() -> None:
    assert split_values(["AVA4,Kati", " Qube "]) == {"AVA4", "Kati", "Qube"}
    assert split_values([]) is None
    assert split_values([" , "]) is None


def test_filters_outside_the_scope_are_refused() -> None:
    patient_only = Access(patients=frozenset({"P1"}))
    EventFilter(patient_ids=frozenset({"P1"})).check_scope(patient_only)
    with pytest.raises(OutOfScopeError):
        EventFilter(patient_ids=frozenset({"P1", "P2"})).check_scope(patient_only)
    with pytest.raises(OutOfScopeError):
        EventFilter(hospital_ids=frozenset({"H1"})).check_scope(patient_only)
    hospital = Access(hospitals=frozenset({"H1"}))
    EventFilter(hospital_ids=frozenset({"H1"}), patient_ids=frozenset({"P5"})).check_scope(hospital)
    with pytest.raises(OutOfScopeError):
        EventFilter(hospital_ids=frozenset({"H2"})).check_scope(hospital)
    EventFilter(hospital_ids=frozenset({"H9"})).check_scope(Access.unrestricted())


def test_selection_applies_filters_and_scope_together() -> None:
    record = parse_record(0, 0, 0, _event("P1", "H1"))
    other = parse_record(0, 1, 0, _event("P2", "H2"))
    anonymous = parse_record(0, 2, 0, _event(None, None))
    scoped = Selection(Access(hospitals=frozenset({"H1"})), EventFilter())
    assert [scoped.accepts(r) for r in (record, other, anonymous)] == [True, False, False]
    by_type = Selection(Access.unrestricted(), EventFilter(device_types=frozenset({"Kati"})))
    assert not by_type.accepts(record)
    by_step = Selection(
        Access.unrestricted(),
        EventFilter(steps=frozenset({"1_mqtt_received"}), statuses=frozenset({"success"})),
    )
    assert by_step.accepts(anonymous)


def test_unreadable_records_are_never_accepted() -> None:
    broken = parse_record(0, 0, 0, b"{not json")
    assert not broken.valid
    assert not Selection(Access.unrestricted(), EventFilter()).accepts(broken)


def test_alerts_are_recognised_from_flags_severity_and_emergencies() -> None:
    flagged = parse_record(0, 0, 0, _event("P1", "H1", alert=True, severity="high"))
    emergency = parse_record(
        0,
        1,
        0,
        _event("P1", "H1", processed_data={"observations": [{"kind": "emergency", "flags": []}]}),
    )
    calm = parse_record(0, 2, 0, _event("P1", "H1", alert=False, severity="normal"))
    assert (flagged.alert, emergency.alert, calm.alert) == (True, True, False)


def test_pretty_printed_events_are_compacted_into_one_data_line() -> None:
    pretty = json.dumps(json.loads(_event("P1", "H1")), indent=2).encode()
    record = parse_record(0, 0, 0, pretty)
    data_lines = [line for line in record.frame.split(b"\n") if line.startswith(b"data: ")]
    assert len(data_lines) == 1
    assert record.event_json()["data"]["patient_id"] == "P1"

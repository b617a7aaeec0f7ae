"""The signature verifier against Sinch's vectors and every trap in the contract."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.sinch.signature import (
    SignatureError,
    SignatureFailure,
    SignatureVerifier,
    SignedRequest,
    content_md5,
    decode_secret,
    format_timestamp,
    parse_timestamp,
    sign,
)

# The project's shared vectors when checked out beside it; else the copy kept with the tests.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "signature-vectors.json"
VENDORED = Path(__file__).resolve().parent / "data" / "signature-vectors.json"
VECTORS = json.loads((SHARED if SHARED.exists() else VENDORED).read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_sign_matches_sinch_vectors(vector: dict[str, str]) -> None:
    body = vector["body"].encode()
    assert content_md5(body) == vector["content_md5"]
    signature = sign(
        secret=decode_secret(vector["secret_b64"]),
        method=vector["method"],
        body=body,
        content_type=vector["content_type"],
        timestamp=vector["x_timestamp"],
        path=vector["path"],
    )
    assert signature == vector["signature"]


def _request(vector: dict[str, str], **headers: str) -> SignedRequest:
    base = {
        "authorization": vector["authorization_header"],
        "x-timestamp": vector["x_timestamp"],
        "content-type": vector["content_type"],
    }
    base.update(headers)
    return SignedRequest(
        method=vector["method"], path=vector["path"], body=vector["body"].encode(), headers=base
    )


def _verifier(vector: dict[str, str], tolerance: timedelta | None = None) -> SignatureVerifier:
    return SignatureVerifier(
        {vector["key"]: decode_secret(vector["secret_b64"])}, tolerance=tolerance
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_verifier_accepts_every_vector(vector: dict[str, str]) -> None:
    key = _verifier(vector).verify(_request(vector), now=datetime.now(UTC))
    assert key == vector["key"].lower()


CALLBACK = VECTORS[-1]  # V8: a real request event with a 7-digit fractional timestamp


def _fails(request: SignedRequest, failure: SignatureFailure, **kw: object) -> None:
    verifier = kw.pop("verifier", None) or _verifier(CALLBACK)
    assert isinstance(verifier, SignatureVerifier)
    with pytest.raises(SignatureError) as caught:
        verifier.verify(request, now=parse_timestamp(CALLBACK["x_timestamp"]))
    assert caught.value.failure is failure


def test_scheme_and_key_compare_case_insensitively() -> None:
    header = CALLBACK["authorization_header"].replace("Application", "application")
    key, _, signature = header.partition(" ")[2].partition(":")
    request = _request(CALLBACK, authorization=f"APPLICATION {key.lower()}:{signature}")
    verifier = _verifier(CALLBACK)
    assert verifier.verify(request, now=datetime.now(UTC)) == key.lower()


def test_unpadded_secret_is_accepted() -> None:
    unpadded = CALLBACK["secret_b64"].rstrip("=")
    assert decode_secret(unpadded) == decode_secret(CALLBACK["secret_b64"])


def test_tampered_body_is_rejected() -> None:
    request = _request(CALLBACK)
    tampered = SignedRequest(
        method="POST",
        path=request.path,
        body=request.body.replace(b"0453", b"0001"),
        headers=request.headers,
    )
    _fails(tampered, SignatureFailure.BAD_SIGNATURE)


def test_wrong_path_method_and_content_type_are_rejected() -> None:
    request = _request(CALLBACK)
    _fails(
        SignedRequest("POST", "/other", request.body, request.headers),
        SignatureFailure.BAD_SIGNATURE,
    )
    _fails(
        SignedRequest("PUT", request.path, request.body, request.headers),
        SignatureFailure.BAD_SIGNATURE,
    )
    _fails(
        _request(CALLBACK, **{"content-type": "application/json"}), SignatureFailure.BAD_SIGNATURE
    )


def test_wrong_scheme_missing_header_and_unknown_key() -> None:
    sig = CALLBACK["authorization_header"].split(" ", 1)[1]
    _fails(
        _request(CALLBACK, authorization=f"Basic {sig}"), SignatureFailure.MALFORMED_AUTHORIZATION
    )
    _fails(_request(CALLBACK, authorization=""), SignatureFailure.MISSING_AUTHORIZATION)
    other = "Application 00000000-0000-0000-0000-000000000000:" + sig.split(":", 1)[1]
    _fails(_request(CALLBACK, authorization=other), SignatureFailure.UNKNOWN_APPLICATION)


def test_stale_and_malformed_timestamps() -> None:
    verifier = _verifier(CALLBACK, tolerance=timedelta(minutes=15))
    request = _request(CALLBACK)
    late = parse_timestamp(CALLBACK["x_timestamp"]) + timedelta(minutes=16)
    with pytest.raises(SignatureError) as caught:
        verifier.verify(request, now=late)
    assert caught.value.failure is SignatureFailure.STALE_TIMESTAMP
    on_time = parse_timestamp(CALLBACK["x_timestamp"]) + timedelta(minutes=14)
    assert verifier.verify(request, now=on_time)
    _fails(_request(CALLBACK, **{"x-timestamp": "yesterday"}), SignatureFailure.MALFORMED_TIMESTAMP)


def test_tolerance_off_accepts_any_age() -> None:
    far = parse_timestamp(CALLBACK["x_timestamp"]) + timedelta(days=3650)
    assert _verifier(CALLBACK, tolerance=None).verify(_request(CALLBACK), now=far)


def test_seven_digit_fraction_round_trips() -> None:
    parsed = parse_timestamp("2023-12-01T15:01:20.0406449Z")
    assert parsed == datetime(2023, 12, 1, 15, 1, 20, 40644, tzinfo=UTC)
    assert format_timestamp(parsed) == "2023-12-01T15:01:20.0406440Z"
    assert parse_timestamp("2014-06-04T13:41:58Z").tzinfo is not None


def test_the_secret_is_keyed_once_per_application_not_per_callback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hmac.new per callback keyed and freed an OpenSSL context each time (~13k instructions
    a callback): the verifier absorbs each secret into its hashes once."""
    verifier = _verifier(CALLBACK)
    keyed: list[bytes] = []
    new = hmac.new

    def counting(key: bytes, *args: Any, **kwargs: Any) -> hmac.HMAC:
        keyed.append(key)
        return new(key, *args, **kwargs)

    monkeypatch.setattr(hmac, "new", counting)
    for _ in range(3):
        assert verifier.verify(_request(CALLBACK), now=datetime.now(UTC)) == CALLBACK["key"].lower()
    assert keyed == []


@pytest.mark.parametrize("length", [0, 1, 16, 32, 63, 64, 65, 100, 200])
def test_every_secret_length_verifies_as_hmac_signs(length: int) -> None:
    """Keys longer than SHA-256's 64-byte block are hashed first, shorter ones padded."""
    secret = bytes((7 * i + length) % 256 for i in range(length))
    verifier = SignatureVerifier({"app": secret}, tolerance=None)
    for body in (b"", b"{}", b"x" * 1000):
        timestamp = format_timestamp(datetime.now(UTC))
        fields = {"method": "POST", "body": body, "content_type": "application/json"}
        signature = sign(secret=secret, **fields, timestamp=timestamp, path="/cb")
        headers = {
            "authorization": f"Application app:{signature}",
            "x-timestamp": timestamp,
            "content-type": "application/json",
        }
        request = SignedRequest(method="POST", path="/cb", body=body, headers=headers)
        assert verifier.verify(request, now=datetime.now(UTC)) == "app"
        other = ("B" if signature[0] != "B" else "C") + signature[1:]
        forged = {**headers, "authorization": f"Application app:{other}"}
        with pytest.raises(SignatureError) as caught:
            verifier.verify(SignedRequest("POST", "/cb", body, forged), now=datetime.now(UTC))
        assert caught.value.failure is SignatureFailure.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-05T23:04:51Z", datetime(2026, 12, 5, 23, 4, 51, tzinfo=UTC)),
        ("2026-12-05T23:04:51", datetime(2026, 12, 5, 23, 4, 51, tzinfo=UTC)),
        (" 2026-12-05T23:04:51.1\n", datetime(2026, 12, 5, 23, 4, 51, 100000, tzinfo=UTC)),
        ("2026-12-05T23:04:51.1234567Z", datetime(2026, 12, 5, 23, 4, 51, 123456, tzinfo=UTC)),
        ("2026-12-05T23:04:51.123456789Z", datetime(2026, 12, 5, 23, 4, 51, 123456, tzinfo=UTC)),
        (
            "2026-12-05T23:04:51.5+0200",
            datetime(2026, 12, 5, 21, 4, 51, 500000, tzinfo=UTC),
        ),
        ("2026-12-05T23:04:51-05:30", datetime(2026, 12, 6, 4, 34, 51, tzinfo=UTC)),
    ],
)
def test_timestamps_of_every_admitted_form_parse_to_their_moment(
    text: str, expected: datetime
) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-05 23:04:51Z",  # fromisoformat takes any separator; Sinch sends T
        "2026-12-05T23:04:51.1234567890Z",
        "2026-12-05T23:04Z",
        "2026-12-05T23:04:51.Z",
        "2026-12-05T23:04:51+2",
        "20261205T230451Z",
    ],
)
def test_timestamps_outside_the_pattern_are_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 timestamp"):
        parse_timestamp(text)

"""POSTing a record to a webhook, signed with HMAC-SHA256, retried with backoff until it lands.

The receiver checks `X-Vitalflow-Signature: sha256=<hex>`, the HMAC-SHA256 under the shared
secret of `<X-Vitalflow-Timestamp>.<body>` (the timestamp is signed too, so a captured request
cannot be replayed later with a fresh timestamp; receivers should refuse timestamps more than
a few minutes old). The body is the record exactly as it is on the topic.

A network error, a timeout, a 5xx, a 408 or a 429 is retried (0.5 s doubling to a minute,
forever, until the caller stops); any other answer outside 2xx is the receiver refusing this
record for what it is, which no retry can change: it is reported and given up.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Outcome", "WebhookSender", "signature"]

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Vitalflow-Signature"
TIMESTAMP_HEADER = "X-Vitalflow-Timestamp"
_RETRIED_STATUSES = frozenset({408, 425, 429})


class Outcome(StrEnum):
    """How the delivery of one record ended."""

    DELIVERED = "delivered"
    REFUSED = "refused"
    STOPPED = "stopped"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Return the signature header value of `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


@dataclass
class WebhookSender:
    """Delivers records to one URL; `deliver` blocks until delivered, refused or stopped."""

    url: str
    secret: str
    content_type: str = "application/cloudevents+json"
    timeout_s: float = 10.0
    first_delay_s: float = 0.5
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            msg = f"the webhook URL must be http(s), not {self.url!r}"
            raise ValueError(msg)
        if not self.secret:
            msg = "a webhook secret is required: receivers must be able to check the sender"
            raise ValueError(msg)

    def deliver(self, body: bytes, record_id: str, stop: threading.Event) -> Outcome:
        """POST `body` until the receiver takes it (2xx) or refuses it (other 4xx)."""
        delay = self.first_delay_s
        attempt = 0
        while not stop.is_set():
            attempt += 1
            status, reason = self._post(body, record_id, attempt)
            if status is not None and 200 <= status < 300:
                return Outcome.DELIVERED
            if status is not None and status < 500 and status not in _RETRIED_STATUSES:
                logger.error(
                    "webhook %s refused alert %s with HTTP %d (%s); not retried",
                    self.url,
                    record_id,
                    status,
                    reason,
                )
                return Outcome.REFUSED
            logger.warning(
                "webhook %s: alert %s not delivered (attempt %d: %s); retrying in %.1f s",
                self.url,
                record_id,
                attempt,
                reason,
                delay,
            )
            stop.wait(delay)
            delay = min(delay * 2, self.max_delay_s)
        return Outcome.STOPPED

    def _post(self, body: bytes, record_id: str, attempt: int) -> tuple[int | None, str]:
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": self.content_type,
                "User-Agent": "vitalflow-alert-webhook",
                "X-Vitalflow-Alert-Id": record_id,
                "X-Vitalflow-Delivery-Attempt": str(attempt),
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(self.secret, timestamp, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return int(response.status), f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

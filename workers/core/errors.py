"""Errors, classified by what the caller does about them.

    TenderscanError
    ├── SettingsError            bad configuration: fail at start, name the variable
    ├── TransientError           retry with backoff; at the edge, 503 + Retry-After
    │   ├── StorageUnavailable   S3 unreachable, throttling, 5xx            } an outage: does not spend the
    │   ├── StoreUnavailable     Redis unreachable or timing out            } scan's poison budget (workers/runtime/retrying.py)
    │   └── InferenceTimeout     no forward pass in time (workers/runtime/runner.py): a hang, spends an attempt
    ├── RejectedScan             permanent bad input: a `rejected` verdict with a reason code, never retried
    │   └── ContractError        a message or record that does not decode
    └── StorageError             an S3 answer we did not expect (permissions, bad bucket): operator action
        └── ObjectNotFound       the key is not there

Foreign exceptions (botocore, redis) are translated into these inside `storage.py` and
`verdict_store.py`; nothing above those modules imports botocore or redis exceptions.
"""

from __future__ import annotations


class TenderscanError(Exception):
    """Base of every error tenderscan raises on purpose."""


class SettingsError(TenderscanError):
    """A configuration value is missing or invalid. The message names the variable."""


class TransientError(TenderscanError):
    """Worth retrying: the same call may succeed in a moment."""

    # Does a delivery that ends in this error count toward the scan's poison cap (max_attempts)?
    # No for outages of the services around the worker: they say nothing about the scan, and are
    # bounded by the transient retry window instead (workers/runtime/retrying.py, docs/RELIABILITY.md).
    spends_attempt = False


class StorageUnavailable(TransientError):
    """The object store did not answer, or answered with a retryable status."""


class StoreUnavailable(TransientError):
    """Redis did not answer in time."""


def is_outage(exc: BaseException) -> bool:
    """A transient error that does not spend the scan's poison budget (TransientError.spends_attempt)."""
    return isinstance(exc, TransientError) and not exc.spends_attempt


class StorageError(TenderscanError):
    """The object store answered with a non-retryable error."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class RejectedScan(TenderscanError):
    """The scan itself is bad. `reason` is a `enums.Reason` value; `detail` is for humans."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = str(reason)
        self.detail = detail


class ContractError(RejectedScan):
    """A message, verdict or record that does not decode against the contract."""

    def __init__(self, detail: str) -> None:
        super().__init__("bad_message", detail)

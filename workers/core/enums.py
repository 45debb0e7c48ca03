"""The words a scan's state and verdict are written in. Each is a `str` Enum, so its value is what
goes into Redis, S3 and JSON answers; add a member only with a comment saying when it is used."""

from __future__ import annotations

from enum import StrEnum


class ScanStatus(StrEnum):
    """`status` in the scan state (keys.scan_key) and in poll answers."""

    QUEUED = "queued"  # accepted: image and intent in S3, message on the queue
    PROCESSING = "processing"  # a worker has dequeued it
    DONE = "done"  # a verdict exists (any decision, including rejected)


class WebhookEvent(StrEnum):
    """`type` of a webhook event (workers/webhooks/events.py, docs/WEBHOOKS.md)."""

    SCAN_COMPLETED = "scan.completed"  # a verdict was stored (any decision); data = the verdict
    SCAN_REVIEWED = "scan.reviewed"  # a person decided a `review` scan (the review console emits it)
    TEST = "webhook.test"  # `tenderscan webhook test`: a ping that carries no scan


class DeliveryOutcome(StrEnum):
    """`outcome` of one webhook delivery attempt in an endpoint's delivery log."""

    DELIVERED = "delivered"  # the receiver answered 2xx: done
    RETRYING = "retrying"  # failed; another attempt is scheduled (backoff with full jitter)
    GAVE_UP = "gave_up"  # failed, and the retry window (WEBHOOK_RETRY_WINDOW_S) is spent: dropped
    PARKED = "parked"  # the endpoint is disabled: kept until the tenant enables it again
    DROPPED = "dropped"  # the event or the endpoint no longer exists (retention passed, endpoint removed)


class DeliveryFailure(StrEnum):
    """`reason` of a failed webhook attempt (docs/WEBHOOKS.md): every one is retried."""

    BLOCKED_ADDRESS = "blocked_address"  # the host resolves to loopback, private, link-local, metadata... (SSRF)
    DNS_FAILURE = "dns_failure"  # the host does not resolve
    CONNECT_FAILED = "connect_failed"  # refused, unreachable, or TLS handshake failed
    TIMEOUT = "timeout"  # no connection or no answer within WEBHOOK_TIMEOUT_S
    REDIRECT = "redirect"  # a 3xx: redirects are never followed (they could point anywhere)
    HTTP_STATUS = "http_status"  # any other non-2xx answer
    BAD_URL = "bad_url"  # not an http(s) URL with a host


class Decision(StrEnum):
    """`decision` in a verdict."""

    GENUINE = "genuine"  # auto-decided: legal tender
    COUNTERFEIT = "counterfeit"  # auto-decided: a fake
    REVIEW = "review"  # the model is unsure: a person must look at the bill; `reason` says why
    REJECTED = "rejected"  # the scan could not be judged (bad image, or not one whole note); `reason` says why
    EXPIRED = "expired"  # dequeued after its deadline; no inference was run
    ERROR = "error"  # terminal: a poison scan (failed its worker max_attempts times, reason internal_error)
    #                  or one S3/Redis kept failing for the transient retry window (infrastructure_unavailable)


class Reason(StrEnum):
    """Why a scan was rejected, expired, ended in error or went to review. Also the `reason` of the
    edge's 4xx answers."""

    IMAGE_MISSING = "image_missing"  # no object at the scan's key
    IMAGE_EMPTY = "image_empty"  # zero bytes
    IMAGE_TOO_LARGE = "image_too_large"  # more bytes than max_body_bytes
    UNSUPPORTED_FORMAT = "unsupported_format"  # not JPEG or PNG (by content, not by header)
    IMAGE_UNREADABLE = "image_unreadable"  # truncated or corrupt
    TOO_MANY_PIXELS = "too_many_pixels"  # width * height above max_pixels (decompression bomb)
    DIMENSIONS_OUT_OF_RANGE = "dimensions_out_of_range"  # a side below min_side or above max_side
    CHECKSUM_MISMATCH = "checksum_mismatch"  # the stored bytes are not the bytes accepted
    SIZE_MISMATCH = "size_mismatch"  # the stored object's length is not the length accepted
    TYPE_MISMATCH = "type_mismatch"  # a direct upload whose magic bytes contradict its stored Content-Type
    BAD_MESSAGE = "bad_message"  # the queue message does not decode
    DEADLINE_EXCEEDED = "deadline_exceeded"  # dequeued after the scan's deadline
    INTERNAL_ERROR = "internal_error"  # a poison scan: it kept failing its worker
    INFRASTRUCTURE_UNAVAILABLE = "infrastructure_unavailable"  # S3 or Redis kept failing for the whole
    #                                                            transient retry window (TRANSIENT_RETRY_WINDOW_S)
    # the scan is a readable image but not one whole note of ours (rejected: ask for a new scan)
    NOT_A_BANKNOTE = "not_a_banknote"  # no note of ours in it: a card, a receipt, another currency, nothing
    NOTE_INCOMPLETE = "note_incomplete"  # under about 60 % of the note is in the frame or uncovered
    MULTIPLE_NOTES = "multiple_notes"  # two or more notes in one scan: scan them one at a time
    # why a scan went to `review` (a person looks; the model would otherwise guess)
    UNCERTAIN = "uncertain"  # the counterfeit probability lies between the two thresholds
    UNFAMILIAR_CAPTURE = "unfamiliar_capture"  # the scan is unlike anything the model learned (out of distribution)
    NOT_SURE_IT_IS_A_NOTE = "not_sure_it_is_a_note"  # the model is unsure the scan shows one whole note


class ReviewLabel(StrEnum):
    """`label` in a person's review (schemas.Review): what the reviewer saw in the scan."""

    GENUINE = "genuine"  # legal tender (console key g)
    COUNTERFEIT = "counterfeit"  # a fake (console key c)
    NOT_A_BANKNOTE = "not_a_banknote"  # no note of ours in the scan (console key n): final decision `rejected`


class ReviewSource(StrEnum):
    """Why a scan is in the review queue."""

    REVIEW = "review"  # its verdict's decision is `review`: the model was unsure
    QC_SAMPLE = "qc_sample"  # an auto-decided scan drawn for quality control (settings.review_qc_sample)


# a `rejected` for what the image shows (the model looked), unlike the rejections of the bytes above
SCENE_REASONS = frozenset({Reason.NOT_A_BANKNOTE, Reason.NOTE_INCOMPLETE, Reason.MULTIPLE_NOTES})


def judged(decision: str, reason: str | None) -> bool:
    """Whether the model judged the scan: genuine, counterfeit, review, or rejected for what it shows (not a
    note of ours, part of one, several) rather than for bytes that are not a usable image."""
    return decision in (Decision.GENUINE, Decision.COUNTERFEIT, Decision.REVIEW) or (
        decision == Decision.REJECTED and reason in SCENE_REASONS)

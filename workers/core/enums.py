"""The words a scan's state and verdict are written in. Each is a `str` Enum, so its value is what
goes into Redis, S3 and JSON answers; add a member only with a comment saying when it is used."""

from __future__ import annotations

from enum import StrEnum


class ScanStatus(StrEnum):
    """`status` in the scan state (keys.scan_key) and in poll answers."""

    QUEUED = "queued"  # accepted: image and intent in S3, message on the queue
    PROCESSING = "processing"  # a worker has dequeued it
    DONE = "done"  # a verdict exists (any decision, including rejected)


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

"""The scans every contender sees: rendered once, stored once, referenced by fresh scan ids.

`make_corpus(unique, seed)` renders `unique` synthetic JPEGs (models.synth.make_scans: slow, so few).
`upload_images` stores them under `copies` keys each, so fetches spread over many objects.
`messages(n)` makes n ScanMessages with fresh ids pointing at those keys round-robin: every
contender fetches, checks and decodes real images from S3, and writes its own verdicts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from workers.core import clock, keys, schemas
from workers.core.schemas import MultiScanMessage, ScanMessage

TENANT = "bench"


@dataclass
class Corpus:
    images: list[bytes]  # unique JPEG scans
    keys: list[tuple[str, int]] = field(default_factory=list)  # (S3 key, index into images) once uploaded

    def sha(self, i: int) -> str:
        return hashlib.sha256(self.images[i]).hexdigest()


def make_corpus(unique: int, seed: int) -> Corpus:
    from models.synth import make_scans

    return Corpus([jpeg for jpeg, _ in make_scans(unique, seed)])


def upload_images(corpus: Corpus, objects, copies: int) -> None:
    """Each unique image under `copies` keys in the scans bucket (before any clock starts)."""
    from concurrent.futures import ThreadPoolExecutor

    now = clock.utcnow()
    jobs = []
    for c in range(copies):
        for i, data in enumerate(corpus.images):
            key = keys.image_s3_key(TENANT, f"{c:04d}{i:04d}".ljust(32, "0"), now, "JPEG")
            jobs.append((key, i, data))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda j: objects.put(j[0], j[2], "image/jpeg", {"sha256": hashlib.sha256(j[2]).hexdigest()}),
                      jobs))
    corpus.keys = [(key, i) for key, i, _ in jobs]


def messages(corpus: Corpus, n: int, start: int = 0) -> list[ScanMessage]:
    """n scans with fresh ids over the uploaded keys (submitted now: queue wait counts from here)."""
    out = []
    for j in range(n):
        key, i = corpus.keys[(start + j) % len(corpus.keys)]
        out.append(ScanMessage(scan_id=schemas.new_scan_id(), tenant=TENANT, store_id="bench-store",
                               terminal_id=f"pos-{j % 50}", image_key=key, sha256=corpus.sha(i),
                               bytes=len(corpus.images[i]), submitted_at=clock.utcnow()))
    return out


def enqueue(app, msgs: list[ScanMessage], task: str, queue: str, per_message: int = 1) -> int:
    """Pre-fill a queue: one message per scan, or MultiScanMessages of `per_message`. Returns messages sent."""
    sent = 0
    with app.producer_or_acquire() as producer:
        for start in range(0, len(msgs), per_message):
            chunk = msgs[start:start + per_message]
            arg = (chunk[0].encode() if per_message == 1
                   else MultiScanMessage(tuple(chunk)).encode())
            app.send_task(task, args=[arg], queue=queue, producer=producer)
            sent += 1
    return sent

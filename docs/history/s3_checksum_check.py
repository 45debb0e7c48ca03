"""Issue 14: boto3's CPU per GET (44 kB) and PUT (1.5 kB) against a private SeaweedFS, the default
client against one that computes and validates flexible checksums only when required. Two rounds.

    PYTHONPATH=. .venv/bin/python docs/history/s3_checksum_check.py
"""

import os
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

from producer.dev import services

N = 150  # calls per figure
root = Path(tempfile.mkdtemp(prefix="s3-checksum-check-"))
svc = services.start_seaweedfs(root / "d", "ak", "sk-secret", ["b14"], root / "logs")


def client(**kw):
    return boto3.client("s3", endpoint_url=svc.extra["endpoint"], region_name="us-east-1", aws_access_key_id="ak",
                        aws_secret_access_key="sk-secret",
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"max_attempts": 3, "mode": "standard"}, **kw))


try:
    image, record = os.urandom(44000), os.urandom(1500)
    variants = {"default": client(),
                "checksums_when_required": client(request_checksum_calculation="when_required",
                                                  response_checksum_validation="when_required")}
    for c in variants.values():  # connections and first-call costs
        c.put_object(Bucket="b14", Key="img", Body=image)
        c.get_object(Bucket="b14", Key="img")["Body"].read()
    for rnd in range(2):
        for name, c in variants.items():
            t = time.thread_time()
            for _ in range(N):
                c.get_object(Bucket="b14", Key="img")["Body"].read()
            get_ms = (time.thread_time() - t) / N * 1000
            t = time.thread_time()
            for i in range(N):
                c.put_object(Bucket="b14", Key=f"rec{i}", Body=record, ContentType="application/json",
                             Metadata={"sig": "x" * 88})
            put_ms = (time.thread_time() - t) / N * 1000
            print(rnd, name, "GET ms", round(get_ms, 3), "PUT ms", round(put_ms, 3), flush=True)
finally:
    svc.stop()
    svc.cleanup()

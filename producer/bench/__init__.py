"""`tenderscan bench`: every design, against the limits, on the same pre-generated scans, in one run.

    corpus.py      the scans (models.synth.make_scans), their images in S3, messages to enqueue
    watch.py       verdict arrival times (pub/sub `ts:done:*`) and latency statistics
    standins.py    BENCHMARK-ONLY stand-ins: a zero-cost object store and model runner (the queue's
                   own ceiling) and a batch-size-1 runner (the naive worker)
    naive.py       the naive Celery app: one task per scan, one forward pass per image
    ceiling.py     the tenderscan worker with the stand-ins swapped in (queue ceiling only)
    contenders.py  model limit, work limit, tenderscan drain and open loop, naive, queue ceiling
    harness.py     services (a producer.dev DevStack: SeaweedFS, a private redis-server), the run,
                   ratios, JSON
    plot.py        latency against throughput (PNG)
    webhooks.py    webhook delivery lag on loopback, healthy and through a receiver outage
                   (`python -m producer.bench.webhooks`, docs/WEBHOOKS.md)

Nothing here is imported by the API or the workers; the stand-ins exist only in this package.
"""

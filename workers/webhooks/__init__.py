"""Signed webhooks to the tenants' back-ends (docs/WEBHOOKS.md), a floor of its own over `workers/core`.

    events.py     emit(redis, tenant, type, data): the one way to send an event (the worker's
                  publish stage for scan.completed, the review console for scan.reviewed)
    endpoints.py  a tenant's endpoints and their signing secrets, in Redis (`tenderscan webhook add`)
    outbox.py     the durable schedule: due deliveries, attempts, parked ones, the delivery log
    signing.py    Standard Webhooks 1.0 signatures (webhook-id, webhook-timestamp, webhook-signature)
    backoff.py    exponential backoff with full jitter inside a retry window (pure)
    addresses.py  which IP addresses a receiver may have (SSRF rules, pure)
    sender.py     one HTTP POST, to an address vetted when the socket connects, never a redirect
    deliverer.py  the loop that drains the schedule (`tenderscan webhook deliver`)

Imports `workers.core` only; `workers.runtime` imports this floor (publish emits scan.completed).
"""

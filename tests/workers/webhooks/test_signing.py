"""Standard Webhooks signatures: the spec's published test vector, rotation, and the client's verify."""

import pytest

from producer.client import WebhookVerificationError, verify
from workers.webhooks import signing

# The reference libraries' vector (standard-webhooks / svix test suites).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_published_vector_reproduces_exactly():
    assert signing.sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_headers_carry_one_signature_per_secret_newest_first():
    other = signing.new_secret()
    h = signing.headers([other, SECRET], MSG_ID, TIMESTAMP, BODY)
    assert h["webhook-id"] == MSG_ID and h["webhook-timestamp"] == str(TIMESTAMP)
    assert h["webhook-signature"].split(" ") == [signing.sign(other, MSG_ID, TIMESTAMP, BODY), EXPECTED]


def test_new_secrets_are_distinct_and_decode():
    a, b = signing.new_secret(), signing.new_secret()
    assert a != b and a.startswith("whsec_") and len(signing.secret_key(a)) == signing.SECRET_BYTES
    with pytest.raises(ValueError):
        signing.secret_key("whsec_not base64!")


def test_client_verify_accepts_the_vector_and_either_signature_of_a_rotation():
    assert verify(SECRET, {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(TIMESTAMP), "Webhook-Signature": EXPECTED},
                  BODY, now=TIMESTAMP + 10) == {"test": 2432232314}
    old, new = signing.new_secret(), signing.new_secret()
    h = signing.headers([new, old], MSG_ID, TIMESTAMP, BODY)
    for secret in (old, new):  # a back-end still on the old secret, and one already on the new
        assert verify(secret, h, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret", "stale", "future", "missing", "v2"])
def test_client_verify_refuses_tampering_and_replays(tamper):
    secret, body, now = SECRET, BODY, TIMESTAMP
    h = signing.headers([SECRET], MSG_ID, TIMESTAMP, BODY)
    if tamper == "body":
        body = b'{"test": 2432232315}'
    elif tamper == "id":
        h["webhook-id"] = "msg_other"
    elif tamper == "timestamp":
        h["webhook-timestamp"] = str(TIMESTAMP + 1)
    elif tamper == "secret":
        secret = signing.new_secret()
    elif tamper == "stale":
        now = TIMESTAMP + 301
    elif tamper == "future":
        now = TIMESTAMP - 301
    elif tamper == "missing":
        del h["webhook-signature"]
    elif tamper == "v2":
        h["webhook-signature"] = h["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(WebhookVerificationError):
        verify(secret, h, body, now=now)

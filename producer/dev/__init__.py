"""The local stack, for people and for tests: SeaweedFS, a private Redis, the API and workers as plain
processes on free loopback ports. Nothing here runs in production, and the HTTP service never imports it.

    services.py   one process each: free ports, spawn/stop, SeaweedFS (`weed mini`), redis-server
    stack.py      DevStack: S3 + Redis + the TENDERSCAN_* variables, the API and workers on demand;
                  used by `tenderscan dev up`, `make demo`, `tenderscan bench`, tests/integration, tests/chaos
    up.py         `tenderscan dev up | env | down`
    demo.py       `make demo`
"""

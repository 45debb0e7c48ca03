"""`python -m workers.health`: the liveness probe's command (infra/k8s, docker-compose.yml). The
heartbeat and its check live in workers/runtime/health.py."""

import sys

from workers.runtime.health import main

if __name__ == "__main__":
    sys.exit(main())

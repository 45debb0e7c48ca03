"""`python -m producer.cli`, the same as `tenderscan`."""

import sys

from producer.cli import main

sys.exit(main())

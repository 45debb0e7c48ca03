"""The HTTP edge, its client and the `tenderscan` command. Never imports torch (a test checks)."""

"""One module per `tenderscan` subcommand. Each exposes `register(subparsers)`.

Modules here import heavy things (torch, boto3, celery) inside their `run` functions only, so that
`tenderscan --help` and the API stay fast and torch-free.
"""

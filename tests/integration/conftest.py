"""Real servers for the production-path tests: PostgreSQL (tests/pg_server.py) and moto's S3 (tests/s3_server.py)."""

from tests.pg_server import postgres_server
from tests.s3_server import s3_server

__all__ = ["postgres_server", "s3_server"]

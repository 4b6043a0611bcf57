"""Real servers for the production-path tests: PostgreSQL (tests/pg_server.py), moto's S3 (tests/s3_server.py) and
Redis (tests/redis_server.py, the Celery broker)."""

from tests.pg_server import postgres_server
from tests.redis_server import redis_server
from tests.s3_server import s3_server

__all__ = ["postgres_server", "redis_server", "s3_server"]

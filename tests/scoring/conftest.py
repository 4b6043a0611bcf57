"""moto's S3 server (tests/s3_server.py) for batch scoring on an S3 runtime root."""

from tests.s3_server import s3_server

__all__ = ["s3_server"]

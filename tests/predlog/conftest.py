"""A real S3-compatible server (tests/s3_server.py) for the prediction log's object-store tests."""

from tests.s3_server import s3_server

__all__ = ["s3_server"]

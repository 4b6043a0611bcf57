"""A real S3-compatible server for tests: moto in server mode on a free loopback port.

Use the session fixture ``s3_server`` (import it into a conftest.py); it yields a ``S3Server`` with the endpoint, a
boto3 client factory and the ``AIRFLOW_CONN_<ID>`` value that makes Airflow's S3Hook talk to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.pg_server import HOST, free_port

ACCESS_KEY = "airloop-test"
SECRET_KEY = "airloop-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible endpoint and the credentials it accepts (moto accepts any)."""

    endpoint_url: str

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def airflow_connection(self) -> str:
        """The value of an ``AIRFLOW_CONN_<ID>`` environment variable for an aws connection to this endpoint."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": self.endpoint_url, "region_name": REGION},
            }
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    try:
        yield S3Server(endpoint_url=f"http://{HOST}:{port}")
    finally:
        server.stop()

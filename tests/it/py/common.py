"""Shared setup for the Python client scripts: a boto3 client for the server under test."""
import os

import boto3
from botocore.config import Config


def client(**config):
    return boto3.client(
        "s3",
        endpoint_url=os.environ["FERRY_ENDPOINT"],
        config=Config(**config) if config else None,
    )


def error_code(exc):
    return exc.response.get("Error", {}).get("Code")


def status(exc):
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def expect_error(fn, code, http_status=None):
    from botocore.exceptions import ClientError

    try:
        fn()
    except ClientError as e:
        assert error_code(e) == code, f"expected {code}, got {error_code(e)}: {e.response}"
        if http_status is not None:
            assert status(e) == http_status, f"expected HTTP {http_status}, got {status(e)}"
        return e
    raise AssertionError(f"expected error {code}, but the call succeeded")

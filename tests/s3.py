"""An S3-compatible server for the tests: moto's server mode on a loopback port, with request
signing checked (IAM auth on), one user whose keys may do anything on S3, and one bucket."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deployments import processes as proc
from tests.conftest import free_port

REGION = "us-east-1"


@contextmanager
def s3_server(bucket: str) -> Iterator[dict[str, str]]:
    """Yields the AWS_* environment a client needs for BUCKET (endpoint, region, real keys)."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="rl-s3-")) / "moto.log"
    # The first three requests (the user, its key and its policy) go unsigned; then auth is on.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = proc.spawn("moto", cmd, env, log)
    try:
        proc.wait_healthy(f"{endpoint}/moto-api/", [server], 60, "moto's S3 server")
        anonymous = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **anonymous)
        iam.create_user(UserName="ragline")
        key = iam.create_access_key(UserName="ragline")["AccessKey"]
        allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow]}
        iam.put_user_policy(UserName="ragline", PolicyName="s3", PolicyDocument=json.dumps(policy))
        creds = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **creds).create_bucket(Bucket=bucket)
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",  # read by LanceDB's object store: the endpoint is plain http
        }
    finally:
        proc.stop([server])


def storage_options(env: dict[str, str]) -> dict[str, str]:
    """The same access as LanceDB storage options (what RAGLINE_LANCEDB_STORAGE_OPTIONS takes)."""
    return {
        "aws_endpoint": env["AWS_ENDPOINT_URL"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "aws_region": env["AWS_REGION"],
        "allow_http": "true",
    }

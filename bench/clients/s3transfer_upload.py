"""Baseline: boto3's s3transfer uploading one file as a multipart upload.

python s3transfer_upload.py ENDPOINT FILE PART_SIZE CONCURRENCY
"""

import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, path, part_size, concurrency = (
    sys.argv[1],
    sys.argv[2],
    int(sys.argv[3]),
    int(sys.argv[4]),
)
client = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="bench",
    aws_secret_access_key="bench",
    config=Config(
        s3={"addressing_style": "path"},
        # Plain bodies, like every other client measured (no aws-chunked checksum trailers).
        request_checksum_calculation="when_required",
        max_pool_connections=concurrency,
    ),
)
config = TransferConfig(
    multipart_threshold=part_size,
    multipart_chunksize=part_size,
    max_concurrency=concurrency,
    use_threads=True,
)
client.upload_file(path, "bucket", "key", Config=config)

"""Baseline: boto3's s3transfer uploading one file as a multipart upload.

python s3transfer_upload.py ENDPOINT FILE PART_SIZE CONCURRENCY [MODE]

MODE is `plain` (the default: PART_SIZE and CONCURRENCY, no checksums, plain bodies like every
other client measured), `boto3` (the same with checksums as boto3 ships them: a CRC32 of every
part) or `defaults` (everything as boto3 ships it: 8 MiB parts, 10 threads, CRC32s; PART_SIZE
and CONCURRENCY are ignored).
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
mode = sys.argv[5] if len(sys.argv) > 5 else "plain"
if mode == "defaults":
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(s3={"addressing_style": "path"}),
    )
    client.upload_file(path, "bucket", "key", Config=TransferConfig())
    sys.exit(0)
client = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="bench",
    aws_secret_access_key="bench",
    config=Config(
        s3={"addressing_style": "path"},
        # "plain": bodies like every other client measured; "boto3": its shipped default.
        request_checksum_calculation="when_required" if mode == "plain" else "when_supported",
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

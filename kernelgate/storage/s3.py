"""The S3 backend: objects in a bucket of any S3-compatible object store, through boto3.

Uploads stream through boto3's managed transfer, multipart above `part_size`: memory
holds a few parts at a time, whatever the size (about 60 MB at the defaults, measured
by bench/storage_throughput.py). Downloads stream the response body. Credentials left
empty come from boto3's usual chain (AWS_* environment variables, a shared credentials
file, an instance role).
"""

from __future__ import annotations

from typing import BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from traitlets import Bool, Float, Int, Unicode

from kernelgate.storage.backend import ObjectMissing, StorageBackend, StorageUnavailable, check_key

_MISSING = ("404", "NoSuchKey", "NotFound")


class S3Backend(StorageBackend):
    name = "s3"
    endpoint_url = Unicode("", config=True, help="The object store's URL; empty: AWS S3.")
    region = Unicode("us-east-1", config=True, help="The bucket's region.")
    bucket = Unicode("", config=True, help="Bucket of the room archives. Empty: no s3 storage.")
    prefix = Unicode("kernelgate/", config=True, help="Prefix of every key in the bucket.")
    access_key_id = Unicode("", config=True, help="Access key; empty: boto3's credential chain.")
    secret_access_key = Unicode("", config=True, help="Secret key; empty: boto3's credential chain.")
    path_style = Bool(True, config=True, help="Path-style URLs (most S3-compatible servers need them).")
    create_bucket = Bool(True, config=True, help="Create the bucket when it does not exist.")
    connect_timeout = Float(3.0, config=True, help="Seconds to wait for a connection.")
    read_timeout = Float(60.0, config=True, help="Seconds to wait for a response's bytes.")
    part_size = Int(8 << 20, config=True, help="Bytes per part of a multipart upload.")
    concurrency = Int(2, config=True, help="Parts uploaded at once.")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            region_name=self.region,
            aws_access_key_id=self.access_key_id or None,
            aws_secret_access_key=self.secret_access_key or None,
            config=BotoConfig(
                connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path" if self.path_style else "auto"},
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=self.part_size, multipart_chunksize=self.part_size,
            max_concurrency=self.concurrency,
        )
        # parts read ahead from a stream and held in memory (s3transfer's default is 10)
        self._transfer.max_in_memory_upload_chunks = self.concurrency

    def put(self, key: str, source: BinaryIO) -> int:
        counted = _Counting(source)
        with self._errors(key):
            self._ensure_bucket()
            self._client.upload_fileobj(counted, self.bucket, self._key(key), Config=self._transfer)
        return counted.size

    def open(self, key: str) -> BinaryIO:
        with self._errors(key):
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return _Body(body, key)

    def delete(self, key: str) -> None:
        with self._errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def check(self) -> None:
        with self._errors("the bucket"):
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        """Before every write: a bucket lost (or never made) is created again."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in _MISSING or not self.create_bucket:
                raise
            self._client.create_bucket(Bucket=self.bucket)
            self.log.info("Created bucket %s", self.bucket)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _errors(self, key: str):
        return _Translate(key, self.endpoint_url or "S3")


class _Translate:
    """Turns boto3's errors into ObjectMissing / StorageUnavailable."""

    def __init__(self, key: str, where: str) -> None:
        self.key, self.where = key, where

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            if code in _MISSING:
                raise ObjectMissing(self.key) from None
            raise StorageUnavailable(f"S3 storage refused {self.key}: {code}") from error
        if isinstance(error, (BotoCoreError, OSError)):
            raise StorageUnavailable(f"S3 storage at {self.where} is unreachable: {error}") from error
        return False


class _Counting:
    """A source that counts the bytes read from it."""

    def __init__(self, source: BinaryIO) -> None:
        self.source, self.size = source, 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.size += len(data)
        return data


class _Body:
    """A response body whose read errors are StorageUnavailable."""

    def __init__(self, body, key: str) -> None:
        self.body, self.key = body, key

    def read(self, n: int = -1) -> bytes:
        try:
            return self.body.read(n if n >= 0 else None)
        except Exception as e:  # noqa: BLE001 - urllib3/botocore errors of a broken stream
            raise StorageUnavailable(f"S3 storage stopped sending {self.key}: {e}") from e

    def close(self) -> None:
        self.body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

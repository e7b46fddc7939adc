"""Upload bodies whose SHA-256 is computed where they are read, not on the event loop.

Over plain HTTP (an S3-compatible server on the local network, moto, SeaweedFS) botocore
signs the payload: its SigV4 signer hashes the whole body with SHA-256, and aiobotocore
signs on the event loop. For a multipart part that is 8 MiB hashed on the loop, some
20 ms during which the server answers nobody. The uploader reads each body in a worker
thread anyway (:meth:`bookstore.s3.S3Store.upload_file`): it hashes it there and hands it
over as a :class:`HashedBody`; the signer installed by :func:`install` uses that hash
instead of computing it again. Any other body is signed exactly as botocore would.
"""

from __future__ import annotations

import io
from typing import Any

import botocore.auth
from botocore.auth import S3SigV4Auth
from botocore.handlers import set_operation_specific_signer

__all__ = ["SIGNATURE_VERSION", "HashedBody", "install"]

#: The name our signer is registered under in botocore's table of signers.
SIGNATURE_VERSION = "bookstore-s3v4"
#: The operations whose bodies the uploader sends as :class:`HashedBody`.
OPERATIONS = ("PutObject", "UploadPart")


class HashedBody(io.BytesIO):
    """An upload body that carries the SHA-256 (hex) of its bytes, computed beforehand.

    ``sha256_hex`` None: not computed (botocore does not sign this body: HTTPS).
    """

    def __init__(self, data: bytes, sha256_hex: str | None) -> None:
        super().__init__(data)  # shares ``data``'s buffer until written to: no copy
        self.sha256_hex = sha256_hex
        self._size = len(data)

    def __len__(self) -> int:
        return self._size


class KnownPayloadS3SigV4Auth(S3SigV4Auth):
    """botocore's S3 SigV4 signer, taking a :class:`HashedBody`'s hash instead of hashing it."""

    def payload(self, request: Any) -> str:
        body = request.body
        known = getattr(body, "sha256_hex", None)
        if (
            known is not None
            and not self._is_streaming_checksum_payload(request)
            and self._should_sha256_sign_payload(request)
            and body.tell() == 0  # the hash is of the whole body (a retry rewinds it)
        ):
            return str(known)
        return str(super().payload(request))


def _choose_signer(
    signature_version: Any, context: dict[str, Any], signing_name: str, **kwargs: Any
) -> str | None:
    """Use our signer where botocore would use its S3 SigV4 one, for ordinary requests."""
    if not isinstance(signature_version, str) or signature_version.endswith(
        ("-query", "-presign-post")
    ):
        return None  # a presigned URL or POST: botocore's own choice
    resolved = set_operation_specific_signer(context=context, signing_name=signing_name)
    if (resolved or signature_version) == "s3v4":
        return SIGNATURE_VERSION
    return None


def install(client: Any) -> None:
    """Make ``client`` sign :class:`HashedBody` uploads with their precomputed hash."""
    botocore.auth.AUTH_TYPE_MAPS.setdefault(SIGNATURE_VERSION, KnownPayloadS3SigV4Auth)
    for op in OPERATIONS:
        # First: botocore's own choose-signer handler would answer "s3v4" before us.
        client.meta.events.register_first(f"choose-signer.s3.{op}", _choose_signer)

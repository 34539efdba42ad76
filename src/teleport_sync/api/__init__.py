"""The Teleport API client: one typed method per endpoint (`client`), OAuth2 client credentials
riding the client's own transport (`oauth`), one shared answer to "is authentication working?"
(`authstate`), the API's errors typed by what to do about them (`errors`), HTTP transports with
sendfile for part bodies (`transport`), a file range as a request body (`filebody`), values
asked for ahead of need (`prefetch`), a download's body read within bounds (`bounded`) and
parts' MD5s, several at once (`hashing`, with the optional `_md5lanes` C extension).

Imports only the helpers at the top of the package (`models`, `retry`, `config`, `logging`).
The names below are what the rest of the package imports.
"""

from .bounded import BodyTooLong, DownloadBounds, NotEnoughSpace
from .client import (
    TeleportClient,
    account_of,
    build_client,
    default_transport,
    metadata_v2_json,
)
from .errors import (
    ApiError,
    AuthenticationError,
    NotFoundError,
    RequestRejected,
    TransientError,
    UploadUrlExpired,
    redact_url,
)
from .oauth import ClientCredentialsAuth

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BodyTooLong",
    "ClientCredentialsAuth",
    "DownloadBounds",
    "NotEnoughSpace",
    "NotFoundError",
    "RequestRejected",
    "TeleportClient",
    "TransientError",
    "UploadUrlExpired",
    "account_of",
    "build_client",
    "default_transport",
    "metadata_v2_json",
    "redact_url",
]

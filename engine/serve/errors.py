"""Errors of the serving layer, each mapped to one HTTP status by the app (app.py).

Any other engine error (insid3.errors: an image that cannot be read, an empty reference mask...)
is what the client sent: 400. 422 is only for requests that do not fit the API's schema.
"""

from __future__ import annotations

from insid3.errors import Insid3Error


class ServeError(Insid3Error):
    """Base class; `status` is the HTTP status the app answers with."""

    status = 500


class BadRequestError(ServeError):
    """A field is missing or malformed, or an upload is not a decodable image."""

    status = 400


class PayloadTooLargeError(ServeError):
    """The body, an image's pixel count or a reference's feature bytes exceed a limit."""

    status = 413


class UnknownReferenceError(ServeError):
    """No such reference_id: never registered, deleted, expired or evicted."""

    status = 404


class QueueFullError(ServeError):
    """The batching queue is full; `retry_after_s` estimates when it will have room."""

    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReadyError(ServeError):
    """The engine is not loaded (yet)."""

    status = 503

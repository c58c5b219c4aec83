"""The one error of the image code, whose message a user reads."""

from __future__ import annotations


class ImageError(Exception):
    """An image could not be fetched or used; the message is for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

"""The object key an S3 "Object Created" event names, whether or not the event URL-encoded it.

S3's own notifications (to SQS, SNS, Lambda) give the key form-encoded (`a b+c.csv` arrives as
`a+b%2Bc.csv`); whether its EventBridge events do is not stated the same way (docs/deploy.md's
deploy checklist asks). A key that would read differently decoded is looked up both ways, and
the one S3 holds (with the event's ETag when both exist) is the run's. Any other key is taken
as given, with no S3 call.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from collage.aws import Store, is_denied, is_missing


def uploaded_key(store: Store, bucket: str, key: str, etag: str | None) -> str:
    """The key of the object the event is about: `key` itself, or `key` form-decoded."""
    decoded = unquote_plus(key)
    if decoded == key:
        return key
    found = {k: _etag(store, bucket, k) for k in (key, decoded)}
    return _the_upload(found, (etag or "").strip('"'), key)


def _the_upload(found: dict[str, str | None], etag: str, key: str) -> str:
    """Of the keys S3 holds, the one with the event's ETag; else the only one; else `key`."""
    present = {k: tag for k, tag in found.items() if tag is not None}
    if len(present) == 1:
        return next(iter(present))
    return next((k for k, tag in present.items() if tag == etag), key)


def _etag(store: Store, bucket: str, key: str) -> str | None:
    """The object's ETag, or None when it is not there (or S3 will not say: a 403)."""
    from botocore.exceptions import ClientError

    try:
        head = store.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if is_missing(error) or is_denied(error):
            return None
        raise
    return str(head.get("ETag", "")).strip('"')

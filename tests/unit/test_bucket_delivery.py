"""Bucket settings: incomplete configurations are named, and secrets never appear in a repr."""

import pytest

from acestep_worker.net.bucket import BucketConfig, DeliveryError

from ..support.s3 import SECRET


def test_incomplete_configs_are_named():
    with pytest.raises(DeliveryError, match="BUCKET_NAME is not"):
        BucketConfig.from_env({"BUCKET_ENDPOINT_URL": "http://x", "BUCKET_ACCESS_KEY_ID": "a",
                               "BUCKET_SECRET_ACCESS_KEY": "b"})
    with pytest.raises(DeliveryError, match="s3Config must be an object"):
        BucketConfig.from_job({"endpointUrl": "http://x"})
    assert BucketConfig.from_env({}) is None
    assert SECRET not in repr(BucketConfig("http://x", "b", "AK", SECRET))

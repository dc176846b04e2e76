"""URL spellings that used to escape the address rules as an uncaught httpx.InvalidURL (or reach the
resolver in a form it reads differently) are InputErrors naming the field, before any network; bucket
endpoints follow the same public-address rule (#18 items 3 and 6)."""

from __future__ import annotations

import pytest

from acestep_worker.audio.sources import SourcePolicy, check, read_bytes
from acestep_worker.errors import MAX_MESSAGE_CHARS, InputError
from acestep_worker.models.lora.sources import locate
from acestep_worker.net.bucket import BucketConfig, DeliveryError
from acestep_worker.net.safe_http import checked_url
from acestep_worker.schema.lora_refs import LoraRef
from acestep_worker.settings import Settings

SPELLINGS = [
    "https://0177.0.0.1/song.wav",  # octal IPv4
    "https://\u2460\u2461\u2466.0.0.1/song.wav",  # circled digits
    "https://0x7f.0.0.1/song.wav",  # hex IPv4
    "https://2130706433/song.wav",  # one decimal number
    "https://127.1/song.wav",  # a short IPv4
    "https://xn--/song.wav",  # an empty punycode label (idna's own error)
    "https://xn--ss-xyz.com/song.wav",  # punycode of a refused code point
    "https://\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com/song.wav",  # full-width letters
    "https://exa\u00admple.com/song.wav",  # a soft hyphen
    "https://\u200bexample.com/song.wav",  # a zero-width space
    "https://%31%32%37.0.0.1/song.wav",  # a percent-encoded host
    "https://ex ample.com/song.wav",  # a space
    "https://a..b.com/song.wav",  # an empty label
    "https://" + "a" * 64 + ".com/song.wav",  # a label over 63 characters
    "https://example.com:99999/song.wav",  # a port out of range
    "https://example.com:0/song.wav",  # port zero
    "https://example.com:-1/song.wav",  # a negative port
    "https://user:pw@example.com/song.wav",  # user info
    "https://example.com@127.0.0.1/song.wav",  # user info hiding the real host
    "https://[::1/song.wav",  # an unclosed IPv6 literal
    "https://::1/song.wav",  # a bare IPv6 address
    "https://[1:2:3]/song.wav",  # not an IPv6 address
    "https://[fe80::1%25eth0]/song.wav",  # a zone id
    "https://ex\tample.com/song.wav",  # a control character
    "https:///song.wav",  # no host
]


@pytest.mark.parametrize("url", SPELLINGS)
@pytest.mark.parametrize("field", ["src_audio", "reference_audio"])
def test_url_spellings_are_input_errors_naming_the_field(url, field):
    with pytest.raises(InputError) as err:
        check(field, url, SourcePolicy())
    assert err.value.field == field and str(err.value).startswith(field)
    assert len(str(err.value)) < 300 <= MAX_MESSAGE_CHARS and "\n" not in str(err.value)


@pytest.mark.parametrize("url", SPELLINGS)
def test_a_download_refuses_them_before_any_network(url, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("the resolver was asked"))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda *a, **k: pytest.fail("a connection was made"))
    for policy in (SourcePolicy(), SourcePolicy(allow_private=True)):
        with pytest.raises(InputError) as err:
            read_bytes("src_audio", url, policy)
        assert err.value.field == "src_audio"


@pytest.mark.parametrize("url", ["https://0177.0.0.1/a.safetensors", "https://\u2460\u2461\u2466.0.0.1/a.safetensors",
                                 "https://user:pw@example.com/a.safetensors",
                                 "https://example.com:99999/a.safetensors"])
def test_lora_urls_are_input_errors_naming_the_entry(url, tmp_path):
    settings = Settings.from_env({"ACESTEP_LORA_CACHE_DIR": str(tmp_path)})
    with pytest.raises(InputError) as err:
        locate("loras[2]", LoraRef("url", url), settings)
    assert err.value.field == "loras[2]" and str(err.value).startswith("loras[2]")


def test_plain_spellings_still_pass():
    for url in ("https://example.com/song.wav", "https://EXAMPLE.com:8443/a%20b.wav?x=1", "https://例え.テスト/x",
                "https://8.8.8.8/x", "https://[2606:4700::1]/x", "https://example.com./x"):
        assert checked_url("src_audio", url, False).host


S3 = {"accessId": "AK", "accessSecret": "secret", "bucketName": "songs"}


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "http://[::1]:9000", "http://10.1.2.3",
                                      "http://169.254.169.254", "https://192.168.1.10:9000", "http://0.0.0.0:9000"])
def test_a_bucket_endpoint_on_a_private_address_needs_the_opt_in(endpoint):
    with pytest.raises(DeliveryError, match="ACESTEP_ALLOW_PRIVATE_URLS=1") as err:
        BucketConfig.from_job({**S3, "endpointUrl": endpoint})
    assert str(err.value).startswith("s3Config.endpointUrl")
    with pytest.raises(DeliveryError, match="ACESTEP_ALLOW_PRIVATE_URLS=1"):
        BucketConfig.from_env({"BUCKET_ENDPOINT_URL": endpoint, "BUCKET_ACCESS_KEY_ID": "AK",
                               "BUCKET_SECRET_ACCESS_KEY": "secret", "BUCKET_NAME": "songs"})
    allowed = BucketConfig.from_job({**S3, "endpointUrl": endpoint}, allow_private=True)
    assert allowed.endpoint_url == endpoint and allowed.allow_private


def test_public_and_named_bucket_endpoints_are_accepted_and_bad_ones_refused():
    assert BucketConfig.from_job({**S3, "endpointUrl": "https://s3.us-west-2.amazonaws.com"}) is not None
    assert BucketConfig.from_job({**S3, "endpointUrl": "http://minio.example.com:9000"}).allow_private is False
    for endpoint in ("http://0177.0.0.1:9000", "https://\u2460\u2461\u2466.0.0.1", "ftp://example.com"):
        with pytest.raises(DeliveryError, match="must be an http"):
            BucketConfig.from_job({**S3, "endpointUrl": endpoint})

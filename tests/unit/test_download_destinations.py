"""Where downloads may go: public hosts, the configured hubs, and what [downloads] opens or narrows."""

from __future__ import annotations

import pytest

from core.errors import BadRequest
from core.models.downloads import Destinations, DownloadSettings


async def test_loopback_and_private_addresses_are_refused_by_default() -> None:
    destinations = Destinations(DownloadSettings())
    for url in ("http://127.0.0.1/m.gguf", "http://10.1.2.3/m.gguf", "http://[::ffff:192.168.1.1]/m.gguf"):
        with pytest.raises(BadRequest, match="non-public address"):
            await destinations.check(url)


async def test_the_configured_hubs_are_trusted_as_set() -> None:
    destinations = Destinations(DownloadSettings(huggingface_url="http://127.0.0.1:8999"))
    await destinations.check("http://127.0.0.1:8999/org/repo/resolve/main/m.gguf")
    with pytest.raises(BadRequest, match="non-public"):
        await destinations.check("http://127.0.0.1:9000/m.gguf")  # another port is another service


async def test_allow_private_addresses_and_allowed_hosts() -> None:
    await Destinations(DownloadSettings(allow_private_addresses=True)).check("http://192.168.1.5/m.gguf")
    narrowed = Destinations(DownloadSettings(allowed_hosts=["Mirror.Example"], allow_private_addresses=True))
    await narrowed.check("http://mirror.example/m.gguf")
    with pytest.raises(BadRequest, match=r"url: host 'other\.example' is not in \[downloads\] allowed_hosts"):
        await narrowed.check("http://other.example/m.gguf")

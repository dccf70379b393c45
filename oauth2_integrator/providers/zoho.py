"""Zoho: the callback names the data centre whose token endpoint takes the code.

Data is in ``catalog/zoho.toml``. Zoho keeps each account in one regional data
centre; the authorization response carries ``accounts-server`` (for example
``https://accounts.zoho.eu``) and the code must be exchanged there, and refreshes
go there too: https://www.zoho.com/accounts/protocol/oauth/multi-dc/client-authorization.html

The callback is untrusted: the code and the client secret are sent only to a host
of Zoho's documented accounts servers
(https://www.zoho.com/accounts/protocol/oauth/multi-dc.html); any other value is
refused and nothing is sent. A token endpoint the operator entered on the client
wins over the callback (a proxy or a fixed data centre).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..exceptions import CallbackError
from .base import ProviderProfile
from .registry import register

if TYPE_CHECKING:
    from .config import ClientConfig

#: Zoho's accounts servers, one per data centre (US, EU, IN, AU, JP, CA, SA, UK,
#: CN, AE).
ACCOUNTS_SERVERS = frozenset(
    {
        "accounts.zoho.com",
        "accounts.zoho.eu",
        "accounts.zoho.in",
        "accounts.zoho.com.au",
        "accounts.zoho.jp",
        "accounts.zohocloud.ca",
        "accounts.zoho.sa",
        "accounts.zoho.uk",
        "accounts.zoho.com.cn",
        "accounts.zoho.ae",
    }
)


def accounts_host(value: str) -> str | None:
    """The host of an ``accounts-server`` value when it is one of Zoho's, else None.

    Only ``https://<known host>`` (an optional trailing slash) passes: no port, no
    user name, no path, query or fragment.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if (
        parts.scheme != "https"
        or port is not None
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or host not in ACCOUNTS_SERVERS
        or parts.netloc.lower() != host
    ):
        return None
    return host


@register
class ZohoProfile(ProviderProfile):
    key = "zoho"
    catalog_key = "zoho"
    accounts_servers = ACCOUNTS_SERVERS

    def token_endpoint_from_callback(
        self, config: ClientConfig, params: Mapping[str, str]
    ) -> str | None:
        server = params.get("accounts-server")
        if not server or config.client.token_endpoint:
            return None
        host = accounts_host(server)
        if host is None or host not in self.accounts_servers:
            raise CallbackError(
                f"The callback for {config.client.label} names an accounts server "
                "that is not one of Zoho's data centres, so the code was not sent "
                "there. Nothing was changed; start again with Authorize. If Zoho "
                "opened a new data centre, enter its token endpoint on the client.",
                client=config.client.name,
                error="invalid_accounts_server",
            )
        return f"https://{host}/oauth/v2/token"

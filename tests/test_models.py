from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("extra_authorize_params", {"state": "x"}, "state cannot be set here"),
        (
            "extra_authorize_params",
            {"redirect_uri": "https://evil.test/"},
            "redirect_uri",
        ),
        (
            "extra_token_params",
            {"code_verifier": "x", "grant_type": "y"},
            "code_verifier, grant_type",
        ),
        ("extra_token_params", ["not", "an", "object"], "Enter a JSON object"),
        ("extra_authorize_params", {"nested": {"a": 1}}, "must be a string"),
    ],
)
def test_extra_params_that_would_break_the_flow_are_refused(
    oauth_client, field, value, says
):
    setattr(oauth_client, field, value)
    with pytest.raises(ValidationError) as caught:
        oauth_client.full_clean()
    assert says in str(caught.value.message_dict[field])


def test_provider_quirk_params_are_accepted(oauth_client):
    oauth_client.extra_authorize_params = {
        "access_type": "offline",
        "prompt": "consent",
    }
    oauth_client.extra_token_params = {"audience": "api.example.test"}
    oauth_client.full_clean()

from __future__ import annotations

import pytest
import responses

from oauth2_integrator import AuthorizationRequired, get_access_token
from oauth2_integrator.models import OAuth2Token, TokenStatus
from oauth2_integrator.testutils import connect_client


@pytest.mark.django_db
def test_connect_client_makes_get_access_token_work_without_a_provider():
    connect_client("crm", access_token="fake-crm-token")
    # Any HTTP request would raise here: no provider is reached.
    with responses.RequestsMock() as mock:
        assert get_access_token("crm") == "fake-crm-token"
    assert not mock.calls


@pytest.mark.django_db
def test_connect_client_again_replaces_the_token_and_reactivates_it():
    token = connect_client("crm", access_token="first")
    token.status = TokenStatus.REAUTHORIZATION_REQUIRED
    token.save()
    with pytest.raises(AuthorizationRequired):
        get_access_token("crm")
    again = connect_client("crm", access_token="second")
    assert get_access_token("crm") == "second"
    assert again.pk == token.pk  # replaced in place, not a second token
    assert OAuth2Token.objects.count() == 1

"""The PostgreSQL function that claims and reads a token for a refresh
(``refresh_read``): installed by ``migrate``, called instead of the plain
statement, and never a reason for a refresh to fail when it is missing or out of
date. What the claim takes and leaves is tested in ``test_refresh_claim.py``,
through the function.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth2_integrator import refresh_read
from oauth2_integrator.models import OAuth2Token

from .conftest import in_seconds

pytestmark = [pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the function exists on PostgreSQL only")


@pytest.fixture
def reinstalled() -> Iterator[None]:
    """Puts the function back as ``migrate`` left it (the test database keeps
    what a test does to its schema)."""
    yield
    refresh_read.install(using="default")
    assert "default" not in refresh_read._missing


def claim_functions() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname FROM pg_proc WHERE proname LIKE %s ORDER BY proname",
            ["oauth2\\_integrator\\_claim\\_%"],
        )
        return [name for (name,) in cursor.fetchall()]


def params(claim: str = "c") -> list[Any]:
    now = timezone.now()
    return [claim, in_seconds(60), "acme", "", "active", now, now]


def test_migrate_installs_the_function_this_code_calls(db):
    assert claim_functions() == [refresh_read.function_name("default")]


@pytest.mark.django_db(transaction=True)
def test_the_function_returns_what_the_plain_statement_returns(expired):
    same = params("first")
    through_function = refresh_read.claim("default", same)
    OAuth2Token.objects.update(refresh_claim="", refresh_claimed_until=None)
    with connection.cursor() as cursor:
        cursor.execute(refresh_read.statement("default"), same)
        through_statement = cursor.fetchone()
    assert through_function is not None and through_statement is not None
    updated_at = refresh_read.TOKEN_COLUMNS.index("updated_at")
    assert through_function[:updated_at] == through_statement[:updated_at]
    assert through_function[updated_at + 1 :] == through_statement[updated_at + 1 :]
    token = refresh_read.FULL_READ.convert("default", through_function)
    assert token[refresh_read.TOKEN_COLUMNS.index("refresh_token")] == (
        expired.refresh_token
    )


@pytest.mark.django_db(transaction=True)
def test_install_again_keeps_one_function_and_drops_older_versions(reinstalled):
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION oauth2_integrator_claim_0123456789ab(a int) "
            "RETURNS int LANGUAGE sql AS 'SELECT a'"
        )
    refresh_read.install(using="default")
    refresh_read.install(using="default")
    assert claim_functions() == [refresh_read.function_name("default")]


def function_oid() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regproc(%s)::oid", [refresh_read.function_name("default")]
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_install_leaves_a_function_as_it_should_be_and_renews_one_that_is_not(
    reinstalled,
):
    """``flush`` (run after every transactional test) sends ``post_migrate``
    too: nothing to rebuild then. One built from another definition (the
    tables' column types changed since, say) is rebuilt."""
    before = function_oid()
    refresh_read.install(using="default")
    assert function_oid() == before
    with connection.cursor() as cursor:
        cursor.execute(
            f'COMMENT ON FUNCTION "{refresh_read.function_name("default")}" '
            "IS 'the hash of another definition'"
        )
    refresh_read.install(using="default")
    assert function_oid() != before


@pytest.mark.django_db(transaction=True)
def test_install_without_the_tables_leaves_no_function(reinstalled, monkeypatch):
    """``migrate oauth2_integrator zero`` drops the tables: no function is left
    that names them."""
    monkeypatch.setattr(refresh_read, "_column_types", lambda cursor, alias: None)
    refresh_read.install(using="default")
    assert claim_functions() == []


def drop_the_function() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP FUNCTION "{refresh_read.function_name("default")}"')


def replace_with_one_for_other_column_types() -> None:
    """What a column type changed by migrations applied as SQL, without
    ``migrate``, leaves: the function's declared columns no longer match."""
    name = refresh_read.function_name("default")
    arguments = ", ".join(f"{p} {t}" for p, t in refresh_read._PARAMETERS)
    returns = ", ".join(f"out_{i} text" for i in range(len(refresh_read.TOKEN_COLUMNS)))
    with connection.cursor() as cursor:
        cursor.execute(f'DROP FUNCTION "{name}"')
        cursor.execute(
            f'CREATE FUNCTION "{name}"({arguments}) RETURNS TABLE({returns}) '
            "LANGUAGE plpgsql AS $claim$ BEGIN RETURN QUERY "
            f"{refresh_read._body('default')}; END $claim$"
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "break_it", [drop_the_function, replace_with_one_for_other_column_types]
)
def test_without_a_usable_function_the_plain_statement_claims(
    expired, reinstalled, caplog, break_it
):
    break_it()
    with caplog.at_level(logging.WARNING, logger="oauth2_integrator"):
        row = refresh_read.claim("default", params("fallback"))
    assert row is not None
    assert OAuth2Token.objects.get().refresh_claim == "fallback"
    assert "manage.py migrate" in caplog.text
    # From then on this process sends the plain statement alone.
    OAuth2Token.objects.update(refresh_claim="", refresh_claimed_until=None)
    with CaptureQueriesContext(connection) as captured:
        assert refresh_read.claim("default", params("again")) is not None
    assert [q["sql"].split()[0] for q in captured] == ["UPDATE"]
    # ``migrate`` puts it back, and this process uses it again.
    refresh_read.install(using="default")
    OAuth2Token.objects.update(refresh_claim="", refresh_claimed_until=None)
    with CaptureQueriesContext(connection) as captured:
        assert refresh_read.claim("default", params("restored")) is not None
    assert [q["sql"].split()[0] for q in captured] == ["SELECT"]


def test_inside_a_test_frameworks_transaction_a_missing_function_is_an_error(
    expired, monkeypatch
):
    """That transaction is aborted by the failed call: going on in it would fail
    with a message that hides the cause. (A refresh never claims inside a
    caller's transaction, so this happens in tests only.)"""
    from django.db import ProgrammingError

    monkeypatch.setattr(refresh_read, "_missing", set())
    monkeypatch.setattr(refresh_read, "_call", lambda alias: "SELECT * FROM nowhere()")
    with pytest.raises(ProgrammingError):
        refresh_read.claim("default", params())


@pytest.mark.django_db(transaction=True)
def test_migrate_goes_on_when_the_function_cannot_be_created(
    expired, reinstalled, caplog
):
    """A database user without the right to create functions (PostgreSQL 15 and
    newer give none on ``public`` to other roles): ``migrate`` must not fail, and
    refreshes claim with the plain statement."""
    import os

    role = f"oauth2_no_create_{os.getpid()}"
    drop_the_function()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", [role])
        if cursor.fetchone()[0]:  # PostgreSQL before 15: PUBLIC may create
            cursor.execute(f"DROP ROLE {role}")
            pytest.skip("every role may create functions in public here")
        try:
            cursor.execute(f"SET ROLE {role}")
            with caplog.at_level(logging.WARNING, logger="oauth2_integrator"):
                refresh_read.install(using="default")
        finally:
            cursor.execute("RESET ROLE")
            cursor.execute(f"DROP ROLE {role}")
    assert "Could not install" in caplog.text
    assert claim_functions() == []
    assert refresh_read.claim("default", params("plain")) is not None
    assert OAuth2Token.objects.get().refresh_claim == "plain"

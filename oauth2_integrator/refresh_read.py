"""How the refresh path reads a token with its client, and on PostgreSQL claims it
in the same statement.

The read is one join (``FULL_READ``). On PostgreSQL the read and the claim are one
``UPDATE ... FROM ... RETURNING`` (``claim``), which claims the row only when a
refresh can start right away.

Under Django's default PostgreSQL settings every statement is parsed and planned
again; for this 45-column join that costs more than running it (about 0.4 ms of
the server's time against 0.2 ms). Prepared statements would keep the plan, but
Django leaves them off because PgBouncer in transaction mode cannot route them. So
the claim runs inside a PL/pgSQL function, which keeps the plan of its statement
for the life of the database session, whatever pooler sits in front: the client
sends a short ``SELECT * FROM function(...)``. ``manage.py migrate`` installs the
function (``install``, a ``post_migrate`` receiver), named after a hash of what it
returns, so code never calls a function built for other columns; where it is
missing (migrations applied as SQL, say), the plain statement runs instead and
behaves alike.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any

from django.db import (
    DatabaseError,
    ProgrammingError,
    connections,
    router,
    transaction,
)
from django.db.models import QuerySet

from . import prepared
from .models import OAuth2Client, OAuth2Token

__all__ = [
    "CHUNK_READ",
    "CLIENT_COLUMNS",
    "FULL_READ",
    "TOKEN_COLUMNS",
    "claim",
    "install",
    "read_chunk",
    "token_from_row",
]

logger = logging.getLogger(__name__)

TOKEN_COLUMNS = [field.attname for field in OAuth2Token._meta.concrete_fields]
CLIENT_COLUMNS = [field.attname for field in OAuth2Client._meta.concrete_fields]

#: What the refresh path reads: the whole token row and its client, joined.
_FIELDS = [*TOKEN_COLUMNS, *(f"client__{c}" for c in CLIENT_COLUMNS)]

#: The refresh path's read of one token, by client name and account.
FULL_READ = prepared.Select(
    lambda alias, key: (
        OAuth2Token.objects.using(alias)
        .filter(client__name=prepared.slot("name"), account=prepared.slot("account"))
        .values_list(*_FIELDS)[:1]
    )
)


#: A sweep runner's read of its next tokens, by primary key: compiled once per
#: thread's connection and number of keys, where a ``select_related`` queryset was
#: compiled, and its model instances built through Django's iterator, every chunk.
def _chunk(alias: str, size: Any) -> QuerySet[Any]:
    slots: list[Any] = [prepared.slot(f"pk{n}") for n in range(size)]
    return OAuth2Token.objects.using(alias).filter(pk__in=slots).values_list(*_FIELDS)


CHUNK_READ = prepared.Select(_chunk)


def token_from_row(alias: str, row: tuple[Any, ...]) -> OAuth2Token:
    """The token and its client from a converted row of these reads' columns, as
    ``select_related("client")`` would build them."""
    split = len(TOKEN_COLUMNS)
    token = OAuth2Token.from_db(alias, TOKEN_COLUMNS, row[:split])
    token.client = OAuth2Client.from_db(alias, CLIENT_COLUMNS, row[split:])
    return token


def read_chunk(alias: str, pks: list[Any]) -> list[OAuth2Token]:
    """The tokens with these primary keys, with their clients, in one query."""
    values = {f"pk{n}": pk for n, pk in enumerate(pks)}
    return [
        token_from_row(alias, row) for row in CHUNK_READ.all(alias, values, len(pks))
    ]


#: The claim's parameters, in order: the claim id, its end, the client name, the
#: account, the active status, and "now" twice (a claim that ran out before it is
#: taken over; a back-off due by it is over).
_PARAMETERS = (
    ("p_claim", "text"),
    ("p_until", "timestamptz"),
    ("p_name", "text"),
    ("p_account", "text"),
    ("p_status", "text"),
    ("p_claims_ended_before", "timestamptz"),
    ("p_now", "timestamptz"),
)

#: Names of the functions this app installs: the prefix, then a hash.
_FUNCTION_PREFIX = "oauth2_integrator_claim_"

#: Aliases where the function turned out missing in this process.
_missing: set[str] = set()


def _update(alias: str, placeholders: list[str]) -> str:
    """The claiming ``UPDATE ... FROM ... RETURNING`` with ``placeholders`` for
    ``_PARAMETERS``.

    Its commit does not wait for the disk (``synchronous_commit`` off for this
    statement's own transaction; PostgreSQL's documented trade for writes that may
    be lost in a crash of the database server), so a refresh waits for one disk
    flush, its store's, as the plain save of a row does. The claim is visible to
    every other process at once all the same, and the store that ends the refresh
    commits durably, which also writes the claim to disk before it. A crash of the
    server itself can lose a claim, but it also ends the connection of the refresh
    that held it, whose store then fails, as it would with a durable claim.
    """
    quote = connections[alias].ops.quote_name
    token, client = OAuth2Token._meta, OAuth2Client._meta
    claim, until, name, account, active, ended_before, now = placeholders

    def column(meta: Any, field: str, *, table: bool = True) -> str:
        name = quote(meta.get_field(field).column)
        return f"{quote(meta.db_table)}.{name}" if table else name

    def t(field: str) -> str:
        return column(token, field)

    return (
        f"UPDATE {quote(token.db_table)} "  # noqa: S608 (quoted names)
        f"SET {column(token, 'refresh_claim', table=False)} = {claim}, "
        f"{column(token, 'refresh_claimed_until', table=False)} = {until} "
        f"FROM {quote(client.db_table)}, "
        "(SELECT set_config('synchronous_commit', 'off', true)) AS no_disk_wait "
        f"WHERE {t('client')} = {column(client, 'id')} "
        f"AND {column(client, 'name')} = {name} AND {t('account')} = {account} "
        f"AND {column(client, 'enabled')} AND {t('status')} = {active} "
        f"AND {t('refresh_token')} <> '' "
        f"AND ({t('refresh_claim')} = '' "
        f"OR {t('refresh_claimed_until')} < {ended_before}) "
        f"AND ({t('next_attempt_at')} IS NULL OR {t('next_attempt_at')} <= {now}) "
        f"RETURNING {FULL_READ.columns(alias)}"
    )


@functools.cache
def statement(alias: str) -> str:
    """The claim as a plain statement (``%s`` placeholders)."""
    return _update(alias, ["%s"] * len(_PARAMETERS))


def _body(alias: str) -> str:
    return _update(alias, [name for name, _ in _PARAMETERS])


@functools.cache
def function_name(alias: str) -> str:
    """The function for this code's claim: its name hashes the statement it runs
    (the columns it returns, in order, included), so after an upgrade that
    changes them the old function is never called."""
    digest = hashlib.sha256(_body(alias).encode()).hexdigest()[:12]
    return f"{_FUNCTION_PREFIX}{digest}"


@functools.cache
def _call(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    placeholders = ", ".join(["%s"] * len(_PARAMETERS))
    return f"SELECT * FROM {quote(function_name(alias))}({placeholders})"  # noqa: S608


def claim(alias: str, params: list[Any]) -> tuple[Any, ...] | None:
    """Claim and read (``_PARAMETERS``, in order): the raw row of ``FULL_READ``'s
    columns, or None when nothing was claimed. PostgreSQL only, in autocommit."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if alias not in _missing:
            try:
                cursor.execute(_call(alias), params)
                return cursor.fetchone()
            except ProgrammingError:
                # Not installed, or built for tables that changed since: the
                # failed statement changed nothing, and autocommit ended it (a
                # test framework's transaction, aborted now, cannot go on).
                _missing.add(alias)
                if connection.in_atomic_block:
                    raise
                logger.warning(
                    "The PostgreSQL function %s is missing or out of date; token "
                    "refreshes use a plain statement until this process restarts. "
                    "Run `manage.py migrate` to install it.",
                    function_name(alias),
                )
        cursor.execute(statement(alias), params)
        return cursor.fetchone()


# --- installing the function (manage.py migrate) -------------------------------------


def _column_types(cursor: Any, alias: str) -> list[str] | None:
    """The SQL types of ``FULL_READ``'s columns, as the database has them; None when
    the tables do not exist (the app's migrations are unapplied)."""
    types: dict[tuple[str, str], str] = {}
    for model in (OAuth2Token, OAuth2Client):
        table = model._meta.db_table
        cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
            [connections[alias].ops.quote_name(table)],
        )
        for column, sql_type in cursor.fetchall():
            types[table, column] = sql_type
    try:
        return [types[source] for source in FULL_READ.sources(alias)]
    except KeyError:
        return None


def _drop_others(cursor: Any, keep: str | None) -> None:
    """Drops this app's claim functions in the current schema but ``keep``."""
    cursor.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND p.proname LIKE %s "
        "AND p.proname <> %s",
        [_FUNCTION_PREFIX.replace("_", r"\_") + "%", keep or ""],
    )
    for (signature,) in cursor.fetchall():
        cursor.execute(f"DROP FUNCTION {signature}")


def install(using: str = "default", **kwargs: Any) -> None:
    """``post_migrate``: (re)creates the claim function on a PostgreSQL database
    that holds this app's tables, and drops the versions older code used (which
    then falls back to the plain statement). Runs after every ``migrate``, so the
    function always returns the columns the tables have. A function already as it
    should be is left alone (``flush``, which tests run often, sends
    ``post_migrate`` too): its comment holds a hash of its whole definition."""
    connection = connections[using]
    if connection.vendor != "postgresql" or not router.allow_migrate_model(
        using, OAuth2Token
    ):
        return
    try:
        _install(using)
    except DatabaseError as exc:
        # A database user without the right to create functions, say: refreshes
        # work without it, so ``migrate`` must not fail for it.
        logger.warning(
            "Could not install the PostgreSQL function %s (%s: %s); token "
            "refreshes use a plain statement instead, a little slower.",
            function_name(using),
            type(exc).__name__,
            exc,
        )
        return
    _missing.discard(using)


def _install(using: str) -> None:
    connection = connections[using]
    quoted = connection.ops.quote_name(function_name(using))
    arguments = ", ".join(f"{param} {sql_type}" for param, sql_type in _PARAMETERS)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        types = _column_types(cursor, using)
        _drop_others(cursor, keep=function_name(using) if types else None)
        if types is None:
            return
        returns = ", ".join(f"out_{i} {sql_type}" for i, sql_type in enumerate(types))
        definition = (
            f"CREATE FUNCTION {quoted}({arguments}) "
            f"RETURNS TABLE({returns}) LANGUAGE plpgsql AS $claim$ "
            f"BEGIN RETURN QUERY {_body(using)}; END $claim$"
        )
        version = hashlib.sha256(definition.encode()).hexdigest()
        cursor.execute("SELECT obj_description(to_regproc(%s), 'pg_proc')", [quoted])
        if cursor.fetchone()[0] != version:
            cursor.execute(f"DROP FUNCTION IF EXISTS {quoted}")
            cursor.execute(definition)
            cursor.execute(f"COMMENT ON FUNCTION {quoted} IS '{version}'")

"""Statements compiled once per thread's database connection and run many times.

Django compiles a queryset to SQL on every call. On the paths that run for every
token (the valid-token read, the refresh, the sweep) that compilation cost more
than the database itself: about 1 ms for the refresh's joined read and 0.5 to 1 ms
for each of its UPDATEs, all of it CPU under the GIL, which is what bounds a sweep
with many worker threads. So these statements are built with Django's own
querysets, once, with placeholder values (``slot``: a ``Value`` that Django passes
through untouched); the SQL is kept, and each call puts the real values where the
placeholders were, prepared by the same fields' ``get_db_prep_*`` Django would
have used. The SQL is Django's, for whatever backend the alias uses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from django.db import connections, transaction
from django.db.models import Field, Model, QuerySet, Value
from django.db.models.sql.subqueries import UpdateQuery

__all__ = ["Select", "Update", "slot"]

_MARK = "\x00oauth2-integrator-slot:"


def slot(name: str) -> Value:
    """A placeholder for the value ``name`` given at each call."""
    return Value(f"{_MARK}{name}\x00")


def _slots(params: Sequence[Any]) -> list[tuple[int, str]]:
    """(position, name) of the placeholders among compiled parameters."""
    found = []
    for position, param in enumerate(params):
        if isinstance(param, str) and param.startswith(_MARK):
            found.append((position, param[len(_MARK) : -1]))
    return found


class _PerConnection:
    """What was compiled for each alias and key, in this thread, for as long as the
    thread keeps the same connection object."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, alias: str, key: Hashable, build: Callable[[], Any]) -> Any:
        connection = connections[alias]
        cache = self._local.__dict__.setdefault("cache", {})
        entry = cache.get((alias, key))
        if entry is None or entry[0] is not connection:
            entry = (connection, build())
            cache[(alias, key)] = entry
        return entry[1]


class Select:
    """A ``values_list`` query: returns its rows with the columns' converters applied
    (so encrypted columns come back decrypted, as from the queryset)."""

    def __init__(self, build: Callable[[str, Hashable], QuerySet[Any]]) -> None:
        self._build = build
        self._compiled = _PerConnection()

    def _compile(self, alias: str, key: Hashable) -> tuple[Any, ...]:
        query = self._build(alias, key).query
        compiler = query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
        converters = compiler.get_converters(columns)
        return sql, list(params), _slots(params), compiler, converters

    def _compiled_for(self, alias: str, key: Hashable) -> tuple[Any, ...]:
        return self._compiled.get(alias, key, lambda: self._compile(alias, key))

    def first(
        self, alias: str, values: dict[str, Any], key: Hashable = None
    ) -> tuple[Any, ...] | None:
        """The first row, or None."""
        rows = self._fetch(alias, values, key, lambda cursor: [cursor.fetchone()])
        return None if rows[0] is None else self.convert(alias, rows[0], key)

    def all(
        self, alias: str, values: dict[str, Any], key: Hashable = None
    ) -> list[tuple[Any, ...]]:
        """Every row."""
        rows = self._fetch(alias, values, key, lambda cursor: cursor.fetchall())
        return [self.convert(alias, row, key) for row in rows]

    def _fetch(
        self,
        alias: str,
        values: dict[str, Any],
        key: Hashable,
        fetch: Callable[[Any], list[Any]],
    ) -> list[Any]:
        sql, params, slots = self._compiled_for(alias, key)[:3]
        params = list(params)
        for position, name in slots:
            params[position] = values[name]
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, params)
            return fetch(cursor)

    def columns(self, alias: str, key: Hashable = None) -> str:
        """The selected columns as SQL (``"table"."column", ...``): another
        statement that returns them (an ``UPDATE ... RETURNING``) gives rows that
        ``convert`` reads as this query's own."""
        compiler = self._compiled_for(alias, key)[3]
        return ", ".join(
            sql for _, (sql, _), _ in compiler.select[: compiler.col_count]
        )

    def sources(self, alias: str, key: Hashable = None) -> list[tuple[str, str]]:
        """(table, column) of each selected column, in order."""
        compiler = self._compiled_for(alias, key)[3]
        return [
            (col.alias, col.target.column)
            for col, _, _ in compiler.select[: compiler.col_count]
        ]

    def convert(
        self, alias: str, row: Sequence[Any], key: Hashable = None
    ) -> tuple[Any, ...]:
        """A raw row of these columns, with the columns' converters applied."""
        compiler, converters = self._compiled_for(alias, key)[3:]
        if converters:
            row = next(iter(compiler.apply_converters([row], converters)))
        return tuple(row)


class Update:
    """``queryset.update(**fields)``, where the filter's values and the new values are
    slots: returns the number of rows changed.

    ``build(alias, key)`` returns the filtered queryset and the fields to set (each
    set to ``slot(field name)``); a filter value is named ``where:<field>`` and is
    prepared as that field's lookup value, a new value as the field's saved value
    (``get_db_prep_save``: encrypted columns are encrypted).
    """

    def __init__(
        self,
        model: type[Model],
        build: Callable[[str, Hashable], tuple[QuerySet[Any], Sequence[str]]],
    ) -> None:
        self._model = model
        self._build = build
        self._compiled = _PerConnection()

    def _compile(self, alias: str, key: Hashable) -> tuple[Any, ...]:
        queryset, fields = self._build(alias, key)
        query = queryset.query.chain(UpdateQuery)
        assert isinstance(query, UpdateQuery)
        query.add_update_values({name: slot(name) for name in fields})
        query.annotations = {}  # as QuerySet.update
        sql, params = query.get_compiler(using=alias).as_sql()
        meta = self._model._meta
        prepared: list[tuple[int, str, Field[Any, Any], bool]] = []
        for position, name in _slots(params):
            where = name.startswith("where:")
            field = meta.get_field(name.removeprefix("where:"))
            assert isinstance(field, Field)
            prepared.append((position, name, field, where))
        return sql, list(params), prepared

    def run(
        self,
        alias: str,
        values: dict[str, Any],
        key: Hashable = None,
        *,
        and_insert: Model | None = None,
    ) -> int:
        """``and_insert``: a new row (an audit event) written only when the update
        changed a row, and atomically with it: nothing is recorded that did not
        happen, and nothing happens unrecorded. On PostgreSQL that is one
        statement (``_insert_if_changed``), so it costs no further round trip or
        commit; elsewhere both run in one transaction."""
        sql, params, slots = self._compiled.get(
            alias, key, lambda: self._compile(alias, key)
        )
        connection = connections[alias]
        params = list(params)
        for position, name, field, where in slots:
            value = values[name]
            params[position] = (
                field.get_db_prep_value(value, connection, prepared=False)
                if where
                else field.get_db_prep_save(value, connection)
            )
        if and_insert is not None and connection.vendor == "postgresql":
            insert_sql, insert_params = _insert_if_changed(and_insert, connection)
            sql = f"WITH changed AS ({sql} RETURNING 1) {insert_sql}"
            params.extend(insert_params)
        elif and_insert is not None:
            with transaction.atomic(using=alias):
                changed = self.run(alias, values, key)
                if changed:
                    and_insert.save(using=alias, force_insert=True)
                return changed
        with (
            transaction.mark_for_rollback_on_error(using=alias),  # as QuerySet.update
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
            return int(cursor.rowcount)


def _insert_if_changed(row: Model, connection: Any) -> tuple[str, list[Any]]:
    """``INSERT ... SELECT ... FROM changed``: ``row`` once per changed row (the
    ``changed`` of the enclosing ``WITH``), its values prepared as ``save()`` would.

    PostgreSQL types the SELECT's parameters by the columns they go into, as it
    does for VALUES, with client- and server-side binding alike: no casts (a cast
    to ``varchar(n)`` would cut a long string silently; the column refuses it).
    """
    meta = row._meta
    quote = connection.ops.quote_name
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    columns = ", ".join(quote(field.column) for field in fields)
    params = [
        field.get_db_prep_save(field.pre_save(row, True), connection)
        for field in fields
    ]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608 (quoted names)
        f"SELECT {', '.join(['%s'] * len(fields))} FROM changed"
    )
    return sql, params

"""Re-encrypting every stored secret with the first key of ENCRYPTION_KEYS.

Rotation is: put a new key first in ``ENCRYPTION_KEYS`` (keeping the old one
after it), run ``manage.py oauth2_rotate_keys``, then drop the old key. Until
every value has been rewritten the old key cannot go, so this reports what it did
per model and field and names every value it could not open instead of stopping.

Values are read from the raw column (cast to plain text, so the encrypted field's
``from_db_value`` never runs): a value no key opens must not abort the batch, and
a value already under the first key is left as it is, which makes a second run a
no-op.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import connections, models, transaction
from django.db.models.functions import Cast

from . import crypto
from .conf import app_settings
from .exceptions import ConfigurationError
from .fields import EncryptedTextField

__all__ = ["DEFAULT_BATCH_SIZE", "FieldReport", "RotationReport", "rotate_keys"]

DEFAULT_BATCH_SIZE = 500


@dataclass
class FieldReport:
    """Counts for one encrypted field of one model."""

    model: str
    field: str
    reencrypted: int = 0
    current: int = 0
    #: Empty strings and NULLs hold no ciphertext and need no key.
    empty: int = 0
    #: Primary keys of the rows whose value no configured key can decrypt.
    undecryptable: list[object] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model}.{self.field}"


@dataclass
class RotationReport:
    fields: list[FieldReport] = dataclasses.field(default_factory=list)

    @property
    def reencrypted(self) -> int:
        return sum(report.reencrypted for report in self.fields)

    @property
    def current(self) -> int:
        return sum(report.current for report in self.fields)

    @property
    def undecryptable(self) -> list[tuple[str, object, str]]:
        """(model, pk, field) of every value left as it was because no key opens it."""
        return [
            (report.model, pk, report.field)
            for report in self.fields
            for pk in report.undecryptable
        ]


def encrypted_fields() -> list[tuple[type[models.Model], list[EncryptedTextField]]]:
    """Every model of this app with its encrypted fields, found rather than listed,
    so a field added later is rotated too."""
    found = []
    for model in apps.get_app_config("oauth2_integrator").get_models():
        fields = [
            f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)
        ]
        if fields:
            found.append((model, fields))
    return found


def rotate_keys(*, batch_size: int = DEFAULT_BATCH_SIZE) -> RotationReport:
    """Rewrite every value not yet under the first key, ``batch_size`` rows per
    transaction; the rows of a batch are locked so a concurrent refresh cannot
    write a token between the read and the rewrite and have it overwritten."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    # Fail early, with the setting's own message, when the keys are unusable.
    crypto.parse_keys(app_settings.ENCRYPTION_KEYS)
    report = RotationReport()
    for model, fields in encrypted_fields():
        reports = {f.name: FieldReport(model._meta.label, f.name) for f in fields}
        report.fields.extend(reports.values())
        _rotate_model(model, fields, reports, batch_size)
    _record(report)
    return report


def _record(report: RotationReport) -> None:
    """One audit event for the run (about the installation, so no client)."""
    from .events import record
    from .models import EventKind, EventOutcome

    left = len(report.undecryptable)
    detail = (
        f"Re-encrypted {report.reencrypted} value(s) with the first key; "
        f"{report.current} already used it."
    )
    if left:
        detail += f" {left} value(s) could not be decrypted and were left as they were."
    record(
        None,
        EventKind.KEYS_ROTATED,
        outcome=EventOutcome.FAILED if left else EventOutcome.OK,
        detail=detail,
    )


def _rotate_model(
    model: type[models.Model],
    fields: list[EncryptedTextField],
    reports: dict[str, FieldReport],
    batch_size: int,
) -> None:
    raw_names = {f.name: f"_raw_{f.name}" for f in fields}
    # Cast to a plain TextField: its converters are the plain field's, so the
    # encrypted field's from_db_value (which decrypts, and raises) never runs.
    raw_columns = {
        raw_names[f.name]: Cast(f.name, output_field=models.TextField()) for f in fields
    }
    manager = model._default_manager
    last_pk: object = None
    while True:
        with transaction.atomic(using=manager.db):
            queryset = manager.select_for_update().order_by("pk")
            if last_pk is not None:
                queryset = queryset.filter(pk__gt=last_pk)
            rows = list(
                queryset.annotate(**raw_columns).values("pk", *raw_columns)[:batch_size]
            )
            # Rows grouped by the fields they need rewritten: one UPDATE per
            # group (usually one per batch) instead of one UPDATE per row.
            groups: dict[tuple[str, ...], list[tuple[object, dict[str, object]]]] = {}
            for row in rows:
                updates = {}
                for f in fields:
                    value = _rotated(f, row[raw_names[f.name]], row["pk"], reports)
                    if value is not _UNCHANGED:
                        updates[f.name] = value
                if updates:
                    groups.setdefault(tuple(updates), []).append((row["pk"], updates))
            for names, group in groups.items():
                _update_rows(model, [f for f in fields if f.name in names], group)
        if len(rows) < batch_size:
            return
        last_pk = rows[-1]["pk"]


def _update_rows(
    model: type[models.Model],
    fields: list[EncryptedTextField],
    rows: list[tuple[object, dict[str, object]]],
) -> None:
    """Write many rows' new ciphertexts with a few statements.

    PostgreSQL: one ``UPDATE ... FROM unnest(<arrays>)``, one array per column,
    so a batch of 500 rows sends a handful of parameters instead of thousands
    (client-side binding, Django's default, parses every placeholder of the
    statement in Python); elsewhere ``UPDATE ... SET f = CASE pk WHEN ... END
    WHERE pk IN (...)`` in chunks of at most ``CASE_CHUNK`` rows (a CASE is
    searched linearly for each row). Written here rather than with
    ``bulk_update``: building Django expressions for every value cost more than
    the encryption itself. Only these columns are written, so auto_now
    timestamps stay as they were: rotation is not an edit.
    """
    connection = connections[model._default_manager.db]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk_field = model._meta.pk
    assert pk_field is not None
    pk_column = quote(str(pk_field.column))

    if connection.vendor == "postgresql":
        pk_type = pk_field.rel_db_type(connection)
        names = ["pk", *(f"v{n}" for n in range(len(fields)))]
        columns = [[str(pk) for pk, _ in rows]]
        columns += [[str(values[f.name]) for _, values in rows] for f in fields]
        arrays: list[str] = []
        params: list[Any] = []
        for column in columns:
            # Fernet tokens (and integer keys) never hold a comma: each column
            # goes as one string that the server splits, which costs nothing
            # here; a list would be quoted element by element in Python.
            joined = ",".join(column)
            if joined.count(",") == len(column) - 1:
                arrays.append("string_to_array(%s, ',')")
                params.append(joined)
            else:
                arrays.append("%s::text[]")
                params.append(column)
        arrays[0] += f"::{pk_type}[]"
        assignments = ", ".join(
            f"{quote(str(f.column))} = v.v{n}" for n, f in enumerate(fields)
        )
        sql = (
            f"UPDATE {table} SET {assignments} "  # noqa: S608 (quoted names)
            f"FROM unnest({', '.join(arrays)}) AS v({', '.join(names)}) "
            f"WHERE {table}.{pk_column} = v.pk"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    per_row = 2 * len(fields) + 1
    limit = connection.features.max_query_params or CASE_CHUNK * per_row
    chunk = max(1, min(CASE_CHUNK, limit // per_row))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        assignments_list = []
        params = []
        for field in fields:
            whens = []
            for pk, values in part:
                whens.append("WHEN %s THEN %s")
                params += [pk, values[field.name]]
            assignments_list.append(
                f"{quote(str(field.column))} = CASE {pk_column} {' '.join(whens)} END"
            )
        params += [pk for pk, _ in part]
        placeholders = ", ".join(["%s"] * len(part))
        sql = (
            f"UPDATE {table} SET {', '.join(assignments_list)} "  # noqa: S608 (quoted names)
            f"WHERE {pk_column} IN ({placeholders})"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


#: Rows per ``UPDATE ... CASE`` statement on databases other than PostgreSQL.
CASE_CHUNK = 100


_UNCHANGED = object()


def _rotated(
    model_field: EncryptedTextField,
    raw: str | None,
    pk: object,
    reports: dict[str, FieldReport],
) -> object:
    """The new ciphertext to write back, or ``_UNCHANGED``.

    The value is written back as it was opened, byte for byte, under the first
    key; it is decoded only to check that the field can read it."""
    report = reports[model_field.name]
    if raw is None or raw == "":
        report.empty += 1
        return _UNCHANGED
    try:
        plain = crypto.open_for_rotation(raw)
        if plain is None:
            report.current += 1
            return _UNCHANGED
        model_field.decode(plain.decode())
    except (ConfigurationError, ValueError):
        # No key opens it (or it opens to something the field cannot read):
        # leave the stored bytes alone so nothing is lost, and report it.
        report.undecryptable.append(pk)
        return _UNCHANGED
    report.reencrypted += 1
    return crypto.encrypt_bytes(plain)

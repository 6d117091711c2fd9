"""The migrations build exactly the schema the code declares, and facts stay facts."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from accrual.services.tenants import CreatedTenant
from accrual.store import migrate, schema
from accrual.store.database import Database


def test_database_is_at_head(db: Database) -> None:
    assert migrate.current_revision(db) == migrate.head_revision()


def _not_a_partition(name: str | None, type_: str, _parent: object) -> bool:
    return not (type_ == "table" and name is not None and name.startswith(schema.PARTITION_PREFIX))


def test_migrations_match_declared_schema(db: Database) -> None:
    with db.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": _not_a_partition}
        )
        diff = compare_metadata(context, schema.metadata)
    assert diff == []


def test_upgrade_again_is_a_no_op(db: Database) -> None:
    before, after = migrate.upgrade(db)
    assert before == after == migrate.head_revision()


def test_every_table_leads_with_tenant_id_and_keys_include_it(db: Database) -> None:
    inspector = sa.inspect(db.engine)
    tables = [
        t
        for t in inspector.get_table_names()
        if t != "alembic_version" and not t.startswith(schema.PARTITION_PREFIX)
    ]
    assert set(tables) == set(schema.metadata.tables)
    for table in set(tables) - set(schema.GLOBAL_TABLES):
        columns = [c["name"] for c in inspector.get_columns(table)]
        assert columns[0] == "tenant_id", table
        assert "tenant_id" in inspector.get_pk_constraint(table)["constrained_columns"], table
        for unique in inspector.get_unique_constraints(table):
            assert "tenant_id" in unique["column_names"], (table, unique["name"])


def _refused(db: Database, statement: str) -> None:
    with pytest.raises(sa.exc.DBAPIError) as caught, db.transaction() as conn:
        conn.execute(sa.text(statement))
    assert getattr(caught.value.orig, "sqlstate", None) == "AC001"
    assert "append-only" in str(caught.value.orig)


@pytest.mark.parametrize("table", ["audit_log", "outbox_events"])
@pytest.mark.parametrize("statement", ["update {t} set tenant_id = tenant_id", "delete from {t}"])
def test_append_only_rows_refuse_changes(
    db: Database, tenant: CreatedTenant, table: str, statement: str
) -> None:
    # The tenant fixture has written rows to both tables; row triggers need rows to fire.
    _refused(db, statement.format(t=table))


@pytest.mark.parametrize("table", schema.APPEND_ONLY_TABLES)
def test_append_only_tables_refuse_truncate(db: Database, table: str) -> None:
    _refused(db, f"truncate {table} cascade")

"""The store's DDL on a ClickHouse cluster (`OODWATCH_CLICKHOUSE_CLUSTER`): golden-filed, every
statement parsed by the ClickHouse engine (chdb), and the local tables' part executed there with
the replication taken out (chdb has no Keeper and no cluster), so their columns, indices, version
columns and TTLs are known to be valid. Without a cluster the DDL is what runs today."""

from __future__ import annotations

import re
from pathlib import Path

import clickhouse_connect
import pytest

from pipeline.store.clickhouse import SCHEMA_MIGRATIONS_DDL, Store, _statements, migrations
from pipeline.store.cluster import for_cluster
from tests.helpers import REPO

GOLDEN = REPO / "tests" / "golden" / "clickhouse_cluster.sql"
CLUSTER = "oodwatch"


def single_server() -> list[str]:
    return [SCHEMA_MIGRATIONS_DDL] + [s for _, _, sql in migrations() for s in _statements(sql)]


def cluster_ddl() -> str:
    return ";\n\n".join(for_cluster(single_server(), CLUSTER)) + ";\n"


def test_cluster_ddl_matches_the_golden_file():
    """Regenerate on purpose with: OODWATCH_UPDATE_GOLDEN=1 pytest tests/integration/test_cluster_ddl.py"""
    import os

    if os.environ.get("OODWATCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(cluster_ddl())
    assert cluster_ddl() == GOLDEN.read_text()


def test_cluster_ddl_shape():
    statements = for_cluster(single_server(), CLUSTER)
    assert all(f"ON CLUSTER {CLUSTER}" in s for s in statements)
    creates = [s for s in statements if s.startswith("CREATE")]
    local = [s for s in creates if "_local ON CLUSTER" in s]
    distributed = [s for s in creates if "ENGINE = Distributed(" in s]
    assert len(local) == len(distributed) == len(creates) / 2
    assert all(re.search(r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}", s) for s in local)
    assert all("INDEX" not in s for s in distributed)
    # A column added to a table reaches both its local and its Distributed table.
    tenant = [s for s in statements if "ADD COLUMN IF NOT EXISTS tenant" in s]
    assert [s.split()[2] for s in tenant] == ["evidence_bundles_local", "evidence_bundles"]
    assert for_cluster(single_server(), "") == single_server()


@pytest.fixture
def engine(tmp_path: Path):
    """One embedded engine per test, closed after it: a process may hold only one chdb path at a time."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'chdb'}")
    yield client
    client.close()


def test_every_cluster_statement_parses_in_the_clickhouse_engine(engine):
    for statement in for_cluster(single_server(), CLUSTER):
        formatted = engine.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]
        assert "ON CLUSTER oodwatch" in formatted
    with pytest.raises(Exception, match="Syntax error"):
        engine.query("SELECT formatQuery({q:String})", parameters={"q": "CREATE TABLE t ON CLUSTER (a String"})


def unreplicated(statement: str) -> str:
    """A local table's statement as one server runs it: no ON CLUSTER, no Keeper path."""
    statement = statement.replace(f" ON CLUSTER {CLUSTER}", "")
    return re.sub(r"Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?", r"\1(", statement)


def test_the_local_tables_execute_in_the_clickhouse_engine(engine):
    local = [s for s in for_cluster(single_server(), CLUSTER) if "_local" in s.split("(")[0]]
    assert local
    for statement in local:
        engine.command(unreplicated(statement))
    tables = {row[0] for row in engine.query("SHOW TABLES").result_rows}
    assert {"screenings_local", "evidence_bundles_local", "reviews_local", "tool_registry_local"} <= tables
    columns = {row[0] for row in engine.query("DESCRIBE TABLE evidence_bundles_local").result_rows}
    assert {"tenant", "group_key", "revision"} <= columns


def test_a_store_without_a_cluster_migrates_as_before(tmp_path: Path):
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    try:
        assert store.cluster == "" and store.migrate() == max(v for v, _, _ in migrations())
        assert store.query("SELECT count() AS n FROM screenings")[0]["n"] == 0
    finally:
        store.close()

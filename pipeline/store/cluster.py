"""The cluster variant of the store's DDL (`OODWATCH_CLICKHOUSE_CLUSTER`).

The shipped migrations are written for one server (and the embedded engine). On a cluster each
table becomes two, both created `ON CLUSTER`:

- `<name>_local`: the data, `Replicated<Engine>` with the same version column, sort key, indices
  and TTL, replicated per shard through ClickHouse Keeper;
- `<name>`: a `Distributed` table over the locals, sharded by a hash of the whole sort key, so
  every query and insert in the code keeps its table name, and tables whose key starts with a
  time bucket still spread over the shards. Because every version of a row has the same sort
  key, it lands on the same shard, and `FINAL` (applied per shard) still folds replays and
  review revisions to one row.

A table made `AS` another copies the other's local table, and its Distributed table the other's
columns. `ALTER ... ADD COLUMN` goes to both tables; `ADD INDEX`, `MODIFY TTL` and `REMOVE TTL`
to the local ones only. Inserts through a Distributed table are made synchronous (the store's
client sets `insert_distributed_sync`), so a committed Kafka offset still means a stored row.
"""

from __future__ import annotations

import re

LOCAL_SUFFIX = "_local"
#: Keeper path of each replicated table, with the server's own macros.
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/%s', '{replica}'"

_CREATE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*\((?P<body>.*)\)\s*ENGINE\s*=\s*(?P<engine>\w*MergeTree)"
    r"(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$",
    re.S,
)
_CREATE_AS = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+) AS (?P<like>\w+)\s*ENGINE\s*=\s*(?P<engine>\w*MergeTree)"
    r"(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$",
    re.S,
)
_ALTER = re.compile(r"^ALTER TABLE (?P<name>\w+)\s+(?P<action>.*)$", re.S)
_ORDER_BY = re.compile(r"ORDER BY\s+(?P<key>\(.*?\)|\w+)\s*(?:\n|$)", re.S)


def _columns_only(body: str) -> str:
    """The column list of a CREATE body without its skip indices (a Distributed table has none)."""
    lines = [line.strip().rstrip(",") for line in body.strip().splitlines()]
    kept = [line for line in lines if line and not line.upper().startswith("INDEX ")]
    return ",\n".join("    " + line for line in kept)


def _sort_key(key: str) -> str:
    """The ORDER BY key as cityHash64's arguments: `(a, f(b))` -> `a, f(b)`."""
    key = key.strip()
    return key[1:-1].strip() if key.startswith("(") and key.endswith(")") else key


def cluster_statements(statement: str, cluster: str) -> list[str]:
    """One single-server statement as the statements that make it on `cluster`."""
    on = f"ON CLUSTER {cluster}"
    create = _CREATE.match(statement.strip()) or _CREATE_AS.match(statement.strip())
    if create:
        name, engine = create["name"], create["engine"]
        local = name + LOCAL_SUFFIX
        args = REPLICA_PATH % local + (
            f", {create['args'].strip()}" if create["args"] and create["args"].strip() else ""
        )
        order = _ORDER_BY.search(create["rest"])
        if order is None:
            raise ValueError(f"table {name} has no ORDER BY to shard by")
        if "like" in create.groupdict():  # `AS other`: the local copies other's local, the Distributed other's columns
            local_shape, shape = f" AS {create['like']}{LOCAL_SUFFIX}", f" AS {create['like']}"
        else:
            local_shape, shape = f"\n({create['body']})", f"\n(\n{_columns_only(create['body'])}\n)"
        return [
            f"CREATE TABLE IF NOT EXISTS {local} {on}{local_shape}\n"
            f"ENGINE = Replicated{engine}({args}){create['rest']}",
            f"CREATE TABLE IF NOT EXISTS {name} {on}{shape}\n"
            f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, cityHash64({_sort_key(order['key'])}))",
        ]
    alter = _ALTER.match(statement.strip())
    if alter:
        name, action = alter["name"], alter["action"]
        local = f"ALTER TABLE {name}{LOCAL_SUFFIX} {on} {action}"
        if action.upper().startswith("ADD COLUMN"):
            return [local, f"ALTER TABLE {name} {on} {action}"]
        return [local]
    raise ValueError(f"no cluster form for statement: {statement[:80]!r}")


def for_cluster(statements: list[str], cluster: str) -> list[str]:
    """Every statement in its cluster form; with no cluster, unchanged."""
    if not cluster:
        return list(statements)
    return [out for statement in statements for out in cluster_statements(statement, cluster)]

"""SQL from users and files, confined: one SELECT, on a connection that cannot reach anything else.

A mixture component, a `--sql` selection or `tandem catalog query` text is parsed by DuckDB's own
parser (`duckdb.extract_statements`) and must be exactly one SELECT; it then runs on a read-only
connection whose external access is disabled and whose configuration is locked, so neither
`COPY ... TO`, `read_text()`, `ATTACH` nor a `SET` inside the query can touch a file. (A read-only
connection alone stops none of these: docs of DuckDB, and /work/shared/ENVIRONMENT.md.)
"""

from __future__ import annotations

from pathlib import Path

import duckdb


def one_select(sql: object, where: str, error: type[Exception] = ValueError) -> str:
    """The text of the single SELECT statement `sql` holds (a trailing ';' allowed); `error`
    naming `where` for anything else: several statements, COPY, ATTACH, SET, PRAGMA, a syntax error."""
    if not isinstance(sql, str) or not sql.strip():
        raise error(f"{where}: the query is empty (expected one SELECT statement)")
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise error(f"{where}: query {sql!r} does not parse: {' '.join(str(e).split())}") from None
    if len(stmts) != 1:
        raise error(f"{where}: query {sql!r} holds {len(stmts)} statements; one SELECT is allowed")
    if stmts[0].type != duckdb.StatementType.SELECT:
        raise error(f"{where}: query {sql!r} is a {stmts[0].type.name} statement; only SELECT is allowed")
    q = stmts[0].query.strip()
    while q.endswith(";"):
        q = q[:-1].rstrip()
    # newlines around it when a caller nests it: a trailing `-- comment` cannot swallow the rest
    return f"\n{q}\n"


def confine(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """No file system or network from this connection on, and no SET to undo it."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def connect_confined(db: str | Path) -> duckdb.DuckDBPyConnection:
    """The catalog at `db`, read-only and confined."""
    return confine(duckdb.connect(str(db), read_only=True))

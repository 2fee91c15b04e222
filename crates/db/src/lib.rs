//! One SQL storage layer for the two databases Leakscope keeps its state in:
//! SQLite (a file in the data folder, the default for one machine) and
//! PostgreSQL (what a team runs its state on, shared by several hubs).
//!
//! Stores write each statement once, with `$1`-style parameters (both accept
//! them), through sqlx's `Any` driver; what differs between the two in a
//! table definition is written as a token (`{id}`) that [`Db::dialect`]
//! replaces. Every component's tables carry a schema version in
//! `leakscope_schema`, applied at start-up; a database that a newer Leakscope
//! migrated is refused with that reason rather than misread.
//!
//! The stores are synchronous and called from blocking threads (the server's
//! `spawn_blocking`, the command line), as they were over rusqlite: [`Db::run`]
//! blocks on a query's future while the pools' own tasks run on one small
//! runtime shared by every `Db`. Async code calls the stores on the blocking
//! pool (`spawn_blocking`); a call from a runtime's worker still works, at the
//! cost of that worker for its duration.

use std::future::Future;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

pub use sqlx;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::{Executor, Row};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("cannot open the database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the database's {component} tables are at schema version {found}, newer than this Leakscope knows ({known}): \
         a newer Leakscope has migrated it; run that version or a newer one"
    )]
    Newer { component: String, found: i64, known: i64 },
}

impl DbError {
    /// The database could not be reached or is busy right now (down, restarting, out of
    /// connections, locked by another writer): worth a retry, answered as 503, not a bug.
    pub fn is_unavailable(&self) -> bool {
        let sql = match self {
            DbError::Sql(e) | DbError::Open { source: e, .. } => e,
            DbError::Invalid(_) | DbError::Newer { .. } => return false,
        };
        match sql {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: class 08 (connection exception), 53 (insufficient resources),
                // 57P01-57P03 (shut down, starting up). SQLite: BUSY (5) and LOCKED (6), also
                // as extended codes (the low byte).
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
                    || code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            }
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One step of a component's schema; `sql` may hold several statements and the dialect tokens of [`Db::dialect`].
pub struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

/// A pool of connections to one database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// The URL without its password, for messages.
    shown: String,
}

/// The runtime the pools' tasks (and every blocked-on query) run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("leakscope-db")
            .enable_all()
            .build()
            .expect("a one-thread runtime for the database pools starts")
    })
}

/// Blocks this thread on `work`. From inside the server's own runtime (its
/// start-up code, say) the worker first hands its tasks over to another
/// thread (`block_in_place`), as a blocking call there must.
fn block_on<T>(work: impl Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| runtime().block_on(work))
        }
        _ => runtime().block_on(work),
    }
}

/// Work that must run in one process at a time among several sharing a database (automatic
/// captures, notifications): the process whose row in `leases` has not expired holds it,
/// renews it well before it expires, and gives it up when it stops; when a holder dies
/// without giving it up, another takes it once `ttl` has passed. Times are the database's
/// clock, so hosts whose clocks disagree still agree on who holds it. A table rather than
/// PostgreSQL's session advisory locks: those live on one pooled connection, which the pool
/// may close or replace at any time, and SQLite has none.
#[derive(Clone)]
pub struct Lease {
    db: Db,
    name: String,
    holder: String,
    ttl: Duration,
}

const LEASES: &[Migration] = &[Migration {
    version: 1,
    sql: "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms BIGINT NOT NULL);",
}];

impl Lease {
    /// `holder` names this process (host, pid and a random part, so a restarted one is new).
    pub fn new(db: &Db, name: &str, holder: &str, ttl: Duration) -> Result<Lease, DbError> {
        db.migrate("leases", LEASES)?;
        Ok(Lease { db: db.clone(), name: name.to_string(), holder: holder.to_string(), ttl })
    }

    /// Takes or renews the lease; `Ok(false)` when another process holds it.
    pub async fn try_hold(&self) -> Result<bool, DbError> {
        let now = self.db.now_ms_sql();
        let sql = format!(
            "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, {now} + $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
             WHERE leases.holder = excluded.holder OR leases.expires_ms < {now}
             RETURNING holder"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&self.name)
            .bind(&self.holder)
            .bind(self.ttl.as_millis() as i64)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Who holds it now (`None`: nobody, or the holder's time ran out).
    pub async fn holder(&self) -> Result<Option<String>, DbError> {
        let sql = format!("SELECT holder FROM leases WHERE name = $1 AND expires_ms >= {}", self.db.now_ms_sql());
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&self.name).fetch_optional(self.db.pool()).await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    /// Gives it up at once (a stopping server), so another takes it without waiting `ttl`.
    pub async fn release(&self) -> Result<(), DbError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(&self.name).bind(&self.holder).execute(self.db.pool()).await?;
        Ok(())
    }

    pub fn holder_name(&self) -> &str {
        &self.holder
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, String::new()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Db {
    /// `postgres://…` (or `postgresql://…`, TLS as libpq's `sslmode` says), `sqlite://PATH`, or a file path.
    pub fn open(url: &str) -> Result<Db, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect(url, Backend::Postgres)
        } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Self::open_sqlite(Path::new(path))
        } else if url.contains("://") {
            Err(DbError::Invalid(format!("{}: a database is postgres://… or a SQLite file (sqlite://PATH)", without_password(url))))
        } else {
            Self::open_sqlite(Path::new(url))
        }
    }

    /// The SQLite file at `path`, created when missing.
    pub fn open_sqlite(path: &Path) -> Result<Db, DbError> {
        let text = path
            .to_str()
            .ok_or_else(|| DbError::Invalid(format!("{}: the database's path must be UTF-8", path.display())))?;
        // The driver percent-decodes the path: keep '%', '?' and '#' in file names.
        let encoded = text.replace('%', "%25").replace('?', "%3F").replace('#', "%23");
        Self::connect(&format!("sqlite://{encoded}?mode=rwc"), Backend::Sqlite)
    }

    fn connect(url: &str, backend: Backend) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let shown = without_password(url);
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            // Connections to a restarted or failed-over server are replaced, not kept.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never wait for the writer. A bounded page cache per
                        // connection (the server's footprint stays flat; see leakscope_engine::store).
                        for pragma in [
                            // First: the steps after it wait for a lock instead of failing.
                            "PRAGMA busy_timeout=5000",
                            "PRAGMA journal_mode=WAL",
                            "PRAGMA synchronous=NORMAL",
                            "PRAGMA foreign_keys=ON",
                            "PRAGMA cache_size=-1024",
                        ] {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            });
        let url_owned = url.to_string();
        let pool = block_on(async move { options.connect(&url_owned).await }).map_err(|source| DbError::Open { url: shown.clone(), source })?;
        Ok(Db { pool, backend, shown })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL, password hidden.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that will write. On SQLite it takes the write lock at its
    /// start (`BEGIN IMMEDIATE`): a transaction that reads first and writes
    /// later fails at once with "database is locked" when another connection
    /// wrote in between, without waiting — the busy timeout cannot help it.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Runs a query's future to its end (from a blocking thread).
    pub fn run<T>(&self, work: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, DbError> {
        Ok(block_on(work)?)
    }

    /// A table definition for this database: `{id}` is an auto-numbered 64-bit primary key
    /// whose numbers are never reused (a stale link never reaches a newer row), `{bytes}` a byte
    /// string, and `{clustered}` after a table's closing parenthesis stores its rows in primary
    /// key order where the database can (SQLite's `WITHOUT ROWID`: one b-tree, not two).
    pub fn dialect(&self, sql: &str) -> String {
        match self.backend {
            Backend::Sqlite => {
                sql.replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT").replace("{bytes}", "BLOB").replace("{clustered}", " WITHOUT ROWID")
            }
            Backend::Postgres => sql
                .replace("{id}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                .replace("{bytes}", "BYTEA")
                .replace("{clustered}", ""),
        }
    }

    /// The database's clock in Unix milliseconds, as an SQL expression.
    fn now_ms_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The schema version of `component` (0: none of its tables yet).
    pub fn schema_version(&self, component: &str) -> Result<i64, DbError> {
        self.run(async {
            self.pool.execute("CREATE TABLE IF NOT EXISTS leakscope_schema (component TEXT PRIMARY KEY, version BIGINT NOT NULL)").await?;
            let row = sqlx::query("SELECT version FROM leakscope_schema WHERE component = $1").bind(component).fetch_optional(&self.pool).await?;
            row.map(|r| r.try_get::<i64, _>(0)).transpose().map(|v| v.unwrap_or(0))
        })
    }

    /// Applies the steps of `component` newer than its stored version, each in a
    /// transaction with its version; refuses a database a newer Leakscope migrated.
    /// Several servers starting at once on one PostgreSQL take turns (an advisory lock).
    pub fn migrate(&self, component: &str, migrations: &[Migration]) -> Result<(), DbError> {
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        self.schema_version(component)?;
        self.run(async {
            let mut tx = self.begin_write().await?;
            if self.backend == Backend::Postgres {
                // Any number will do as long as it is ours and fixed.
                sqlx::query("SELECT pg_advisory_xact_lock(7365231)").execute(&mut *tx).await?;
            }
            let found: i64 = sqlx::query("SELECT version FROM leakscope_schema WHERE component = $1")
                .bind(component)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .unwrap_or(0);
            if found > known {
                return Ok(Err(DbError::Newer { component: component.to_string(), found, known }));
            }
            for step in migrations.iter().filter(|m| m.version > found) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(self.dialect(step.sql))).execute(&mut *tx).await?;
            }
            if known > found {
                sqlx::query(
                    "INSERT INTO leakscope_schema (component, version) VALUES ($1, $2)
                     ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                )
                .bind(component)
                .bind(known)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Ok(()))
        })?
    }
}

impl Db {
    /// The rows in `table`.
    pub fn count(&self, table: &str) -> Result<i64, DbError> {
        self.run(async { sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(&self.pool).await?.try_get(0) })
    }
}

/// One value of a copied row.
enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Db {
    /// Copies every row of `table` into the same table of `to` (already migrated
    /// to the same schema), keeping rows `to` has already (a second run copies
    /// what is missing). `id`: the table's auto-numbered column, whose counter
    /// on PostgreSQL is moved past the copied numbers. Returns the rows in `to` afterwards.
    /// Rows are read as a stream and written many per statement: a data folder's
    /// samples run to millions of rows.
    pub fn copy_table(&self, to: &Db, table: &str, id: Option<&str>) -> Result<i64, DbError> {
        use futures::TryStreamExt;
        self.run(async {
            let select = format!("SELECT * FROM {table}");
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&self.pool);
            let mut batch = Batch::default();
            while let Some(row) = rows.try_next().await? {
                // Without a declared type per column: an integer where it decodes as one, else
                // text, else bytes; NULLs are left out (the column's default is NULL or what the schema says).
                let mut columns = Vec::new();
                let mut values = Vec::new();
                for (i, column) in row.columns().iter().enumerate() {
                    let value = match row.try_get::<Option<i64>, _>(i) {
                        Ok(v) => v.map(Value::Int),
                        Err(_) => match row.try_get::<Option<String>, _>(i) {
                            Ok(v) => v.map(Value::Text),
                            Err(_) => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
                        },
                    };
                    if let Some(value) = value {
                        columns.push(sqlx::Column::name(column).to_string());
                        values.push(value);
                    }
                }
                // One statement holds rows of one set of columns, under both databases' bound-value limits.
                if batch.columns != columns || (batch.rows.len() + 1) * columns.len().max(1) > 30_000 {
                    batch.flush(to, table).await?;
                    batch.columns = columns;
                }
                batch.rows.push(values);
            }
            batch.flush(to, table).await
        })?;
        if let (Some(id), Backend::Postgres) = (id, to.backend) {
            let bump = format!("SELECT setval(pg_get_serial_sequence('{table}', '{id}'), COALESCE((SELECT MAX({id}) FROM {table}), 0) + 1, false)");
            to.run(async { sqlx::query(sqlx::AssertSqlSafe(bump)).execute(&to.pool).await })?;
        }
        to.count(table)
    }
}

/// Rows waiting to be written by one INSERT.
#[derive(Default)]
struct Batch {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Batch {
    async fn flush(&mut self, to: &Db, table: &str) -> Result<(), sqlx::Error> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let width = self.columns.len();
        let tuples: Vec<String> = (0..self.rows.len())
            .map(|r| format!("({})", (1..=width).map(|c| format!("${}", r * width + c)).collect::<Vec<_>>().join(", ")))
            .collect();
        let insert = format!("INSERT INTO {table} ({}) VALUES {} ON CONFLICT DO NOTHING", self.columns.join(", "), tuples.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(insert));
        for value in self.rows.drain(..).flatten() {
            query = match value {
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Bytes(v) => query.bind(v),
            };
        }
        query.execute(&to.pool).await?;
        Ok(())
    }
}

/// For tests: a new, empty database on the PostgreSQL server at `admin_url`
/// (a role that may create databases), and its URL.
pub fn fresh_postgres_database(admin_url: &str) -> Result<String, DbError> {
    let admin = Db::open(admin_url)?;
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| DbError::Invalid(format!("no randomness: {e}")))?;
    let name = format!("leakscope_test_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    admin.run(async { admin.pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await })?;
    let (base, query) = admin_url.split_once('?').map(|(b, q)| (b, format!("?{q}"))).unwrap_or((admin_url, String::new()));
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    Ok(format!("{server}/{name}{query}"))
}

/// For tests of the stores: a new database on the PostgreSQL server that
/// `./dev test` starts (`LEAKSCOPE_TEST_POSTGRES`), and its URL.
pub fn test_postgres_url() -> String {
    let admin = std::env::var("LEAKSCOPE_TEST_POSTGRES")
        .unwrap_or_else(|_| panic!("LEAKSCOPE_TEST_POSTGRES names a PostgreSQL server for the tests (./dev test starts one)"));
    fresh_postgres_database(&admin).unwrap_or_else(|e| panic!("a test database on {}: {e}", without_password(&admin)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[Migration] = &[
        Migration { version: 1, sql: "CREATE TABLE things (id {id}, name TEXT NOT NULL UNIQUE, body {bytes});" },
        Migration { version: 2, sql: "ALTER TABLE things ADD COLUMN seen_ms BIGINT; CREATE INDEX things_by_seen ON things (seen_ms);" },
    ];

    /// Every test here runs on both: a SQLite file, and a new database on the
    /// PostgreSQL server `./dev test` starts (`LEAKSCOPE_TEST_POSTGRES`).
    pub(crate) fn both() -> Vec<(tempfile::TempDir, Db)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Db::open_sqlite(&dir.path().join("a file with spaces & a % sign.db")).unwrap();
        let postgres = Db::open(&test_postgres_url()).unwrap();
        vec![(dir, sqlite), (tempfile::tempdir().unwrap(), postgres)]
    }

    #[test]
    fn migrations_apply_once_in_order_and_a_newer_schema_is_refused() {
        for (_dir, db) in both() {
            assert_eq!(db.schema_version("things").unwrap(), 0);
            db.migrate("things", &STEPS[..1]).unwrap();
            assert_eq!(db.schema_version("things").unwrap(), 1);
            db.migrate("things", STEPS).unwrap();
            db.migrate("things", STEPS).unwrap();
            assert_eq!(db.schema_version("things").unwrap(), 2);
            let id: i64 = db
                .run(async {
                    sqlx::query("INSERT INTO things (name, body, seen_ms) VALUES ($1, $2, $3) RETURNING id")
                        .bind("a")
                        .bind(vec![0u8, 1, 2])
                        .bind(5i64)
                        .fetch_one(db.pool())
                        .await?
                        .try_get(0)
                })
                .unwrap();
            assert_eq!(id, 1, "{:?}", db.backend());
            // An older Leakscope on this database says why it stops.
            let refused = db.migrate("things", &STEPS[..1]).unwrap_err();
            assert!(matches!(refused, DbError::Newer { found: 2, known: 1, .. }), "{refused}");
            assert!(refused.to_string().contains("newer Leakscope"), "{refused}");
        }
    }

    #[test]
    fn a_wrong_url_or_an_unreachable_server_says_which_without_its_password() {
        let refused = Db::open("mysql://u:hunter2@h/db").err().unwrap().to_string();
        assert!(refused.contains("postgres://") && !refused.contains("hunter2"), "{refused}");
        let unreachable = Db::open("postgres://leakscope:hunter2@127.0.0.1:1/none?connect_timeout=2").err().unwrap().to_string();
        assert!(unreachable.contains("cannot open the database postgres://leakscope:***@127.0.0.1:1/none"), "{unreachable}");
        assert!(!unreachable.contains("hunter2"), "{unreachable}");
    }

    #[test]
    fn tables_copy_from_sqlite_into_postgres_once_and_new_rows_number_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let from = Db::open_sqlite(&dir.path().join("from.db")).unwrap();
        let to = Db::open(&test_postgres_url()).unwrap();
        for db in [&from, &to] {
            db.migrate("things", STEPS).unwrap();
        }
        from.run(async {
            for (name, seen) in [("a", Some(5i64)), ("b", None)] {
                sqlx::query("INSERT INTO things (name, seen_ms) VALUES ($1, $2)").bind(name).bind(seen).execute(from.pool()).await?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(from.copy_table(&to, "things", Some("id")).unwrap(), 2);
        assert_eq!(from.copy_table(&to, "things", Some("id")).unwrap(), 2, "a second run adds nothing");
        let (next, seen): (i64, Option<i64>) = to
            .run(async {
                let next = sqlx::query("INSERT INTO things (name) VALUES ('c') RETURNING id").fetch_one(to.pool()).await?.try_get(0)?;
                let seen = sqlx::query("SELECT seen_ms FROM things WHERE name = 'a'").fetch_one(to.pool()).await?.try_get(0)?;
                Ok((next, seen))
            })
            .unwrap();
        assert_eq!((next, seen), (3, Some(5)));
    }

    /// A server that is down, or that ends the session under a query, is "unavailable" (503,
    /// retry); a query that is wrong is not.
    #[test]
    fn an_unreachable_or_restarting_server_is_unavailable_and_a_bad_query_is_not() {
        let down = Db::open("postgres://leakscope@127.0.0.1:1/none?connect_timeout=2").err().unwrap();
        assert!(down.is_unavailable(), "{down}");
        let db = Db::open(&test_postgres_url()).unwrap();
        let admin = Db::open(&test_postgres_url()).unwrap();
        let ended = db
            .run(async {
                let mut session = db.pool().acquire().await?;
                let pid: i32 = sqlx::query("SELECT pg_backend_pid()").fetch_one(&mut *session).await?.try_get(0)?;
                sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(admin.pool()).await?;
                sqlx::query("SELECT 1").execute(&mut *session).await?;
                Ok(())
            })
            .unwrap_err();
        assert!(ended.is_unavailable(), "{ended:?}");
        let wrong = db.run(async { sqlx::query("SELECT * FROM no_such_table").execute(db.pool()).await.map(|_| ()) }).unwrap_err();
        assert!(!wrong.is_unavailable(), "{wrong}");
        assert!(!DbError::Invalid("x".into()).is_unavailable());
    }

    /// One holder at a time; renewals keep it; a release hands it over at once; a holder that
    /// stops renewing loses it once its time has run out.
    #[test]
    fn a_lease_has_one_holder_and_passes_on_when_released_or_expired() {
        for (_dir, db) in both() {
            let ttl = Duration::from_millis(1500);
            let a = Lease::new(&db, "background", "hub-a", ttl).unwrap();
            let b = Lease::new(&db, "background", "hub-b", ttl).unwrap();
            let other = Lease::new(&db, "other-work", "hub-b", ttl).unwrap();
            let hold = |lease: &Lease| db.run(async { Ok(lease.try_hold().await) }).unwrap().unwrap();
            let holder = |lease: &Lease| db.run(async { Ok(lease.holder().await) }).unwrap().unwrap();
            assert!(hold(&a), "{:?}", db.backend());
            assert!(!hold(&b));
            assert!(hold(&other), "leases of other names are separate");
            assert!(hold(&a), "renewed by its holder");
            assert_eq!(holder(&b).as_deref(), Some("hub-a"));
            db.run(async { Ok(a.release().await) }).unwrap().unwrap();
            assert_eq!(holder(&a), None);
            assert!(hold(&b), "released: taken at once");
            assert!(!hold(&a));
            std::thread::sleep(ttl + Duration::from_millis(300));
            assert_eq!(holder(&a), None, "b stopped renewing");
            assert!(hold(&a), "expired: taken over");
            assert!(!hold(&b));
        }
    }

    #[test]
    fn passwords_are_hidden_in_shown_urls() {
        assert_eq!(without_password("postgres://ann:s3cret@db.example:5432/ls?sslmode=require"), "postgres://ann:***@db.example:5432/ls?sslmode=require");
        assert_eq!(without_password("postgres://ann@db/ls"), "postgres://ann@db/ls");
        assert_eq!(without_password("/var/lib/leakscope/leakscope.db"), "/var/lib/leakscope/leakscope.db");
    }
}

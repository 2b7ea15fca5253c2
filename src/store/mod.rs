//! Database access: one pool over SQLite (the embedded default) or PostgreSQL, chosen by URL.
//!
//! Queries are runtime `sqlx` queries through the `Any` driver, written once in the dialect both
//! databases accept (`$1` placeholders, `RETURNING`, text timestamps in RFC 3339 UTC so they sort
//! as strings). Each aggregate has its own module; every function that reads or writes tenant
//! data takes the [`TenantId`](crate::domain::TenantId).

pub mod accounts;
pub mod agents;
pub mod billing;
pub mod bookings;
pub mod calls;
pub mod knowledge;
pub mod nodes;
pub mod outbox;
pub mod replays;
pub mod telephony;
pub mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which database the pool talks to; a few statements differ (transactions, leases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflicts with an existing row")]
    Conflict,
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(error),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A transaction on the pool.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The shared database handle: cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects to `url` (creating a SQLite file if missing) without migrating.
    pub async fn connect(url: &SecretString, max_connections: u32) -> StoreResult<Db> {
        sqlx::any::install_default_drivers();
        let url = url.expose_secret();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyConnectOptions::from_str(url).map_err(StoreError::Database)?;
        let pool_options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10));
        let pool = match backend {
            Backend::Sqlite => {
                pool_options
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL lets readers run beside the single writer; busy_timeout makes a
                            // second writer wait instead of failing at once.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => pool_options.connect_with(options).await?,
        };
        Ok(Db { pool, backend })
    }

    /// Applies the migrations for this backend.
    pub async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a read-then-write transaction cannot fail half-way with
    /// `SQLITE_BUSY` when another writer got in between.
    pub async fn begin_write(&self) -> StoreResult<Tx> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for checked-out connections to return, then closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The current time as stored: RFC 3339 UTC with milliseconds, which sorts as a string.
pub fn now() -> String {
    stamp(Utc::now())
}

/// An instant as stored (see [`now`]).
pub fn stamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

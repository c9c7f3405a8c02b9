//! The SCIM door's state: the users it handed ids to, their attributes, whether they are active.
//! An embedded SQLite database (WAL, one connection behind a lock, every call on a blocking
//! thread); the type's methods are all a later PostgreSQL store would need to offer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("SCIM database `{path}`: {source}")]
pub struct StoreError {
    path: String,
    source: Failure,
}

#[derive(Debug, Error)]
enum Failure {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot make it private (0600): {0}")]
    Permissions(#[from] std::io::Error),
}

/// The database and its `-wal` and `-shm` files hold who is active where: readable by the
/// intake's user alone. The file is created 0600 before SQLite opens it (SQLite gives the WAL
/// and shared-memory files the database's mode), and any of them found wider is narrowed.
fn private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::metadata(&name) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One stored user: the client's attributes (without `id`, `meta`, `schemas`) and ours.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub id: String,
    pub attrs: Map<String, Value>,
    pub active: bool,
    /// Bumped by every write; a write names the version it read (optimistic concurrency).
    pub version: i64,
    pub created: String,
    pub modified: String,
}

/// What a write found.
#[derive(Debug)]
pub enum Write {
    Done(StoredUser),
    /// Another user already has this userName (compared without case).
    Taken,
    NotFound,
    /// The user changed since it was read: read again.
    Stale,
}

/// What a delete found.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    NotFound,
    /// The user changed since it was read: read again.
    Stale,
}

/// An attribute the store keeps an index on.
#[derive(Debug, Clone, Copy)]
pub enum Indexed {
    UserName,
    ExternalId,
    Id,
}

#[derive(Clone)]
pub struct Store {
    path: Arc<str>,
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scim_users (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL COLLATE NOCASE UNIQUE,
    external_id TEXT,
    active      INTEGER NOT NULL,
    attrs       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created     TEXT NOT NULL,
    modified    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scim_users_external_id ON scim_users (external_id);
";

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn text(attrs: &Map<String, Value>, name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredUser> {
    let attrs: String = r.get(2)?;
    Ok(StoredUser {
        id: r.get(0)?,
        active: r.get::<_, i64>(1)? != 0,
        attrs: serde_json::from_str(&attrs).unwrap_or_default(),
        version: r.get(3)?,
        created: r.get(4)?,
        modified: r.get(5)?,
    })
}

const COLUMNS: &str = "id, active, attrs, version, created, modified";

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: PathBuf) -> Result<Store, StoreError> {
        let name: Arc<str> = path.display().to_string().into();
        let err = {
            let name = name.clone();
            move |source| StoreError {
                path: name.to_string(),
                source,
            }
        };
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, Failure> {
            private(&path)?;
            let conn = Connection::open(&path)?;
            // First: two processes opening the store at once (two workers serving the intake)
            // would otherwise see "database is locked" switching it to WAL.
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(SCHEMA)?;
            private(&path)?;
            Ok(conn)
        })
        .await
        .expect("opening does not panic")
        .map_err(err)?;
        Ok(Store {
            path: name,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().expect("store lock")))
            .await
            .expect("a store call does not panic")
            .map_err(|source| StoreError {
                path: self.path.to_string(),
                source: source.into(),
            })
    }

    /// Stores a new user under a fresh id; [`Write::Taken`] if its userName is another's.
    pub async fn create(
        &self,
        attrs: Map<String, Value>,
        active: bool,
    ) -> Result<Write, StoreError> {
        self.with(move |c| {
            let id = uuid::Uuid::new_v4().to_string();
            let at = now();
            let user_name = text(&attrs, "userName").unwrap_or_default();
            let done = c.execute(
                "INSERT INTO scim_users (id, user_name, external_id, active, attrs, version, created, modified)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
                params![
                    id,
                    user_name,
                    text(&attrs, "externalId"),
                    active as i64,
                    Value::Object(attrs.clone()).to_string(),
                    at
                ],
            );
            match done {
                Ok(_) => Ok(Write::Done(StoredUser {
                    id,
                    attrs,
                    active,
                    version: 1,
                    created: at.clone(),
                    modified: at,
                })),
                Err(e) if is_unique_violation(&e) => Ok(Write::Taken),
                Err(e) => Err(e),
            }
        })
        .await
    }

    pub async fn get(&self, id: String) -> Result<Option<StoredUser>, StoreError> {
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM scim_users WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
        })
        .await
    }

    /// The users whose indexed attribute equals `value` (userName without case).
    pub async fn find(&self, by: Indexed, value: String) -> Result<Vec<StoredUser>, StoreError> {
        let column = match by {
            Indexed::UserName => "user_name",
            Indexed::ExternalId => "external_id",
            Indexed::Id => "id",
        };
        self.with(move |c| {
            let mut q = c.prepare(&format!(
                "SELECT {COLUMNS} FROM scim_users WHERE {column} = ?1 ORDER BY created, id"
            ))?;
            q.query_map([value], row)?.collect()
        })
        .await
    }

    /// The users `keep` accepts, in creation order: how many there are, and those from
    /// `skip` on, at most `count`.
    pub async fn page(
        &self,
        keep: impl Fn(&StoredUser) -> bool + Send + 'static,
        skip: usize,
        count: usize,
    ) -> Result<(usize, Vec<StoredUser>), StoreError> {
        self.with(move |c| {
            let mut q = c.prepare(&format!(
                "SELECT {COLUMNS} FROM scim_users ORDER BY created, id"
            ))?;
            let mut total = 0;
            let mut out = Vec::new();
            for user in q.query_map([], row)? {
                let user = user?;
                if keep(&user) {
                    if total >= skip && out.len() < count {
                        out.push(user);
                    }
                    total += 1;
                }
            }
            Ok((total, out))
        })
        .await
    }

    /// Replaces a user's attributes, if it is still at `version`.
    pub async fn replace(
        &self,
        id: String,
        version: i64,
        attrs: Map<String, Value>,
        active: bool,
    ) -> Result<Write, StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM scim_users WHERE id = ?1"),
                    [&id],
                    row,
                )
                .optional()?;
            let Some(current) = current else {
                return Ok(Write::NotFound);
            };
            if current.version != version {
                return Ok(Write::Stale);
            }
            let at = now();
            let done = tx.execute(
                "UPDATE scim_users SET user_name = ?2, external_id = ?3, active = ?4, attrs = ?5,
                 version = version + 1, modified = ?6 WHERE id = ?1",
                params![
                    id,
                    text(&attrs, "userName").unwrap_or_default(),
                    text(&attrs, "externalId"),
                    active as i64,
                    Value::Object(attrs.clone()).to_string(),
                    at
                ],
            );
            match done {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Ok(Write::Taken),
                Err(e) => return Err(e),
            }
            tx.commit()?;
            Ok(Write::Done(StoredUser {
                id,
                attrs,
                active,
                version: version + 1,
                created: current.created,
                modified: at,
            }))
        })
        .await
    }

    /// Deletes a user, if it is still at `version`.
    pub async fn delete(&self, id: String, version: i64) -> Result<Deleted, StoreError> {
        self.with(move |c| {
            let n = c.execute(
                "DELETE FROM scim_users WHERE id = ?1 AND version = ?2",
                params![id, version],
            )?;
            if n == 1 {
                return Ok(Deleted::Yes);
            }
            let exists: Option<i64> = c
                .query_row("SELECT version FROM scim_users WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(if exists.is_some() {
                Deleted::Stale
            } else {
                Deleted::NotFound
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn the_database_and_its_wal_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scim.db");
        // One left world-readable by an earlier version, say.
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(path.clone()).await.unwrap();
        let mut attrs = Map::new();
        attrs.insert("userName".into(), Value::from("ann@acme.example"));
        store.create(attrs, true).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
    }
}

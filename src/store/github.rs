//! What a `github-deployments` sink must remember (schema 4): for each deployment key
//! of a hook, that a create was sent and, once GitHub answered 201, GitHub's deployment
//! id — so a restart never creates a second deployment, and statuses go to the first.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, q};
use crate::model::Timestamp;

pub(super) const MIGRATE_4: &str = "BEGIN;
    CREATE TABLE github_deployments (
        hook TEXT NOT NULL,
        key TEXT NOT NULL,
        github_id INTEGER,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (hook, key)
    );
    PRAGMA user_version = 4;
    COMMIT;";

/// What is known of one deployment key at GitHub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GithubState {
    /// No create was ever sent.
    Unknown,
    /// A create was sent; whether GitHub made it is not known (a crash, a timeout).
    CreateSent,
    /// GitHub's deployment id.
    Created(i64),
}

impl Store {
    pub fn github_state(&self, hook: &str, key: &str) -> Result<GithubState, StoreError> {
        let row: Option<Option<i64>> = self
            .read_conn()
            .query_row(
                "SELECT github_id FROM github_deployments WHERE hook = ?1 AND key = ?2",
                params![hook, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("read a GitHub deployment"))?;
        Ok(match row {
            None => GithubState::Unknown,
            Some(None) => GithubState::CreateSent,
            Some(Some(id)) => GithubState::Created(id),
        })
    }

    /// Notes, before it is sent, that a create for `key` is going out.
    pub fn github_create_sent(
        &self,
        hook: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "INSERT OR IGNORE INTO github_deployments (hook, key, github_id, created_at)
                 VALUES (?1, ?2, NULL, ?3)",
                params![hook, key, now.0],
            )
            .map(|_| ())
            .map_err(q("note a GitHub create"))
        })
    }

    /// Stores GitHub's id for `key` (the first one wins).
    pub fn github_created(
        &self,
        hook: &str,
        key: &str,
        id: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO github_deployments (hook, key, github_id, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (hook, key) DO UPDATE SET github_id = excluded.github_id
                 WHERE github_id IS NULL",
                params![hook, key, id, now.0],
            )
            .map(|_| ())
            .map_err(q("store a GitHub deployment id"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_goes_from_unknown_to_sent_to_created_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let state = |s: &Store| {
            s.github_state("gh", "h/shop/1")
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(state(&store), GithubState::Unknown);
        store
            .github_create_sent("gh", "h/shop/1", Timestamp(1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state(&store), GithubState::CreateSent);
        store
            .github_created("gh", "h/shop/1", 42, Timestamp(2))
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .github_created("gh", "h/shop/1", 43, Timestamp(3))
            .unwrap_or_else(|e| panic!("{e}"));
        drop(store);
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            state(&store),
            GithubState::Created(42),
            "the first id stays"
        );
    }
}

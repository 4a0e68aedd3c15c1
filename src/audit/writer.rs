//! The append path: a group-commit writer task and the [`DisclosureLog`] handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::VerifyingKey;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Any, AnyConnection, Connection as _, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::CheckpointSigner;
use super::db::{self, ChainConn, Head};
use super::entry::{AppendedEntry, NewEntry};
use super::{LogError, SubjectKey, SubjectPseudonym};
use crate::config::AuditSettings;
use crate::domain::SubjectIdentifier;
use crate::store::{Backend, Store};

struct Job {
    entry: NewEntry,
    done: oneshot::Sender<Result<AppendedEntry, LogError>>,
}

/// Counters of the group-commit writer since start.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    entries: AtomicU64,
    failed_commits: AtomicU64,
}

/// What the group-commit writer has done since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Transactions committed by the writer.
    pub commits: u64,
    /// Entries committed by the writer.
    pub entries: u64,
    /// Transactions that failed (their callers got an error).
    pub failed_commits: u64,
}

struct Inner {
    counters: Arc<Counters>,
    queue: mpsc::Sender<Job>,
    store: Store,
    subjects: SubjectKey,
    signer: Option<Arc<CheckpointSigner>>,
    settings: AuditSettings,
}

/// The handle to the disclosure log. Cheap to clone; every clone feeds the same writer task.
#[derive(Clone)]
pub struct DisclosureLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DisclosureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisclosureLog")
            .field("signer", &self.inner.signer)
            .finish_non_exhaustive()
    }
}

impl DisclosureLog {
    /// Starts the writer task. `subjects` pseudonymizes subject identifiers; `signer` signs
    /// checkpoints (none: no checkpoints are made, and a retention purge is impossible). Must
    /// be called inside a Tokio runtime.
    pub fn start(
        store: Store,
        subjects: SubjectKey,
        signer: Option<CheckpointSigner>,
        settings: AuditSettings,
    ) -> Self {
        let (queue, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let signer = signer.map(Arc::new);
        let counters = Arc::new(Counters::default());
        tokio::spawn(run_writer(
            rx,
            store.clone(),
            signer.clone(),
            settings.clone(),
            counters.clone(),
        ));
        Self {
            inner: Arc::new(Inner {
                counters,
                queue,
                store,
                subjects,
                signer,
                settings,
            }),
        }
    }

    /// Appends an entry and returns once it is durably committed (group commit: concurrent
    /// appends share one transaction and one flush). On any error nothing may be disclosed.
    pub async fn append(&self, entry: NewEntry) -> Result<AppendedEntry, LogError> {
        let entry = normalize(entry);
        entry.validate()?;
        let (done, wait) = oneshot::channel();
        self.inner
            .queue
            .send(Job { entry, done })
            .await
            .map_err(|_| LogError::Closed)?;
        wait.await.map_err(|_| LogError::Closed)?
    }

    /// Begins a transaction that holds the chain lock from its first statement, for a record
    /// change that must commit atomically with its entry ([`DisclosureLog::append_in_tx`]).
    /// Other appends wait until it commits or rolls back: keep it short.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, LogError> {
        let mut tx = self.inner.store.pool().begin().await?;
        tx.lock_head().await?;
        Ok(tx)
    }

    /// Appends an entry inside the caller's transaction: the entry commits if and only if the
    /// transaction does. Start the transaction with [`DisclosureLog::begin`] (on SQLite a
    /// transaction that has already read before its first write may be refused).
    pub async fn append_in_tx(
        &self,
        tx: &mut Transaction<'static, Any>,
        entry: NewEntry,
    ) -> Result<AppendedEntry, LogError> {
        let entry = normalize(entry);
        entry.validate()?;
        let conn: &mut AnyConnection = tx;
        let head = conn.lock_head().await?;
        let (_, mut out) = db::append_locked(conn, head, &[&entry]).await?;
        out.pop()
            .ok_or_else(|| LogError::Invalid("nothing was appended".into()))
    }

    /// The subject's pseudonym under the log's key, from the identifier's canonical form.
    pub fn pseudonym(&self, subject: &SubjectIdentifier) -> SubjectPseudonym {
        self.inner
            .subjects
            .pseudonym(subject.system(), subject.value())
    }

    /// The checkpoint public key, if checkpoints are signed.
    pub fn checkpoint_key(&self) -> Option<VerifyingKey> {
        self.inner.signer.as_ref().map(|s| s.verifying_key())
    }

    /// What the group-commit writer has done since start.
    pub fn stats(&self) -> LogStats {
        let c = &self.inner.counters;
        LogStats {
            commits: c.commits.load(Ordering::Relaxed),
            entries: c.entries.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
        }
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The audit settings.
    pub fn settings(&self) -> &AuditSettings {
        &self.inner.settings
    }

    /// Signs a checkpoint at the current head now if the head moved since the last one
    /// (returns its sequence number).
    pub async fn checkpoint_now(&self) -> Result<Option<u64>, LogError> {
        match &self.inner.signer {
            None => Ok(None),
            Some(s) => checkpoint_if_due(&self.inner.store, s, 1, Duration::ZERO).await,
        }
    }
}

/// Truncates the time to the microsecond the log keeps, so the returned hash is the stored one.
fn normalize(mut entry: NewEntry) -> NewEntry {
    if let Some(t) = chrono::DateTime::from_timestamp_micros(entry.at_us()) {
        entry.at = t;
    }
    entry
}

async fn run_writer(
    mut rx: mpsc::Receiver<Job>,
    store: Store,
    signer: Option<Arc<CheckpointSigner>>,
    settings: AuditSettings,
    counters: Arc<Counters>,
) {
    let every = Duration::from_secs(settings.checkpoint_every_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_batch = settings.max_batch.max(1);
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut conn = WriterConn::default();
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { break };
                batch.push(job);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                commit_batch(&store, &mut conn, signer.as_deref(), &settings, &counters, &mut batch)
                    .await;
            }
            _ = tick.tick() => {
                if let Some(s) = &signer
                    && let Err(e) = checkpoint_if_due(&store, s, u64::MAX, every).await
                {
                    tracing::error!(error = %e, "cannot write a timed checkpoint");
                }
            }
        }
    }
}

async fn commit_batch(
    store: &Store,
    conn: &mut WriterConn,
    signer: Option<&CheckpointSigner>,
    settings: &AuditSettings,
    counters: &Counters,
    batch: &mut Vec<Job>,
) {
    let result = write_batch(store, conn, signer, settings, batch).await;
    match result {
        Ok(appended) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters
                .entries
                .fetch_add(appended.len() as u64, Ordering::Relaxed);
            for (job, a) in batch.drain(..).zip(appended) {
                let _ = job.done.send(Ok(a));
            }
        }
        Err(e) => {
            counters.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, entries = batch.len(), "disclosure log write failed");
            let msg = e.to_string();
            for job in batch.drain(..) {
                let _ = job.done.send(Err(LogError::WriteFailed(msg.clone())));
            }
        }
    }
}

/// The group-commit writer's connection. On SQLite the writer keeps one native connection of
/// its own: it binds values without the generic driver's conversions and with anonymous
/// placeholders, and its page cache stays warm between commits (a pooled connection's cache
/// is discarded whenever another connection wrote). On PostgreSQL it takes a pooled
/// connection per commit.
#[derive(Default)]
struct WriterConn {
    sqlite: Option<SqliteConnection>,
}

/// WAL size, in pages, at which the SQLite writer connection folds the WAL back into the
/// database (SQLite's default is 1,000 pages). Appends rewrite the same index pages commit
/// after commit; a longer WAL folds each of them back once instead of every few commits.
const SQLITE_WRITER_WAL_PAGES: u32 = 10_000;

async fn write_batch(
    store: &Store,
    conn: &mut WriterConn,
    signer: Option<&CheckpointSigner>,
    settings: &AuditSettings,
    batch: &[Job],
) -> Result<Vec<AppendedEntry>, LogError> {
    let entries: Vec<&NewEntry> = batch.iter().map(|j| &j.entry).collect();
    if store.backend() == Backend::Sqlite {
        if conn.sqlite.is_none() {
            conn.sqlite = store
                .sqlite_connection(&[("wal_autocheckpoint", SQLITE_WRITER_WAL_PAGES.to_string())])
                .await
                .map_err(|e| LogError::WriteFailed(e.to_string()))?;
        }
        if let Some(c) = conn.sqlite.as_mut() {
            let result = write_in(c, signer, settings, &entries).await;
            if result.is_err() {
                // Start the next batch on a fresh connection, whatever state this one is in.
                if let Some(c) = conn.sqlite.take() {
                    let _ = c.close().await;
                }
            }
            return result;
        }
    }
    let mut c = store.pool().acquire().await?;
    write_in(&mut *c, signer, settings, &entries).await
}

/// One group commit on `conn`: lock the head, append, maybe checkpoint, commit durably.
async fn write_in<C>(
    conn: &mut C,
    signer: Option<&CheckpointSigner>,
    settings: &AuditSettings,
    entries: &[&NewEntry],
) -> Result<Vec<AppendedEntry>, LogError>
where
    C: ChainConn + sqlx::Connection,
    C::Database: sqlx::Database<Connection = C>,
{
    let mut tx = conn.begin().await?;
    let head = tx.lock_head().await?;
    let (new_head, appended) = db::append_locked(&mut *tx, head, entries).await?;
    if let Some(s) = signer {
        checkpoint_locked(
            &mut *tx,
            s,
            new_head,
            settings.checkpoint_every_entries,
            None,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(appended)
}

/// Inside a transaction holding the head lock: signs a checkpoint at `head` if at least
/// `every_entries` entries, or (with `every_time`) that much time, passed since the last one.
async fn checkpoint_locked<C: ChainConn>(
    conn: &mut C,
    signer: &CheckpointSigner,
    head: Head,
    every_entries: u64,
    every_time: Option<Duration>,
) -> Result<Option<u64>, LogError> {
    if head.seq == 0 {
        return Ok(None);
    }
    let now = Utc::now().timestamp_micros();
    let (last_seq, last_at) = conn.last_checkpoint().await?.unwrap_or((0, i64::MIN));
    if head.seq <= last_seq {
        return Ok(None);
    }
    let by_count = head.seq - last_seq >= every_entries.max(1);
    let by_time = every_time.is_some_and(|t| {
        let t = i64::try_from(t.as_micros()).unwrap_or(i64::MAX);
        now.saturating_sub(last_at) >= t
    });
    if !by_count && !by_time {
        return Ok(None);
    }
    let c = signer.sign(head.seq, head.hash, now);
    conn.insert_checkpoint(&c).await?;
    Ok(Some(head.seq))
}

async fn checkpoint_if_due(
    store: &Store,
    signer: &CheckpointSigner,
    every_entries: u64,
    every_time: Duration,
) -> Result<Option<u64>, LogError> {
    let mut tx = store.pool().begin().await?;
    let head = tx.lock_head().await?;
    let done = checkpoint_locked(&mut *tx, signer, head, every_entries, Some(every_time)).await?;
    tx.commit().await?;
    Ok(done)
}

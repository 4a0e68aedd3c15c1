//! The append path: a group-commit writer task, the [`DisclosureLog`] handle, transactions
//! that commit a change with its entry ([`LogTx`]) and the [`Receipt`] of a durable entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::VerifyingKey;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::CheckpointSigner;
use super::db::{self, ChainConn, Head};
use super::entry::{AppendedEntry, Entry, NewEntry, RecordRef};
use super::sealed::{LogTextKey, SealedEntry};
use super::{LogError, SubjectKey, SubjectPseudonym};
use crate::config::AuditSettings;
use crate::domain::SubjectIdentifier;
use crate::store::{Conn, Store, Tx};

/// Proof that an entry is in the log and durable: only the log makes one, once the
/// transaction holding the entry has committed. It names what the entry records (the decision
/// and the record), so a receipt for one disclosure cannot open another record's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    seq: u64,
    hash: super::ChainHash,
    leaf_index: u64,
    decision_id: Option<String>,
    record: Option<RecordRef>,
}

/// Where an entry is in the log, as its recipient is told: the sequence number
/// (`Disclosure-Id`), the Merkle leaf index and the leaf hash (`Log-Leaf-Index`,
/// `Log-Leaf-Hash`). Shown, it is the sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRef {
    /// The entry's sequence number.
    pub seq: u64,
    /// Its leaf index in the Merkle tree.
    pub leaf_index: u64,
    /// Its leaf hash.
    pub leaf_hash: super::ChainHash,
}

impl std::fmt::Display for LogRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.seq)
    }
}

impl LogRef {
    /// The leaf hash in base64, as the checkpoints and proofs give hashes.
    pub fn leaf_hash_b64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.leaf_hash.0)
    }
}

impl Receipt {
    /// Where the entry is in the log.
    pub fn log_ref(&self) -> LogRef {
        LogRef {
            seq: self.seq,
            leaf_index: self.leaf_index,
            leaf_hash: self.hash,
        }
    }

    fn new(appended: AppendedEntry, entry: &NewEntry) -> Self {
        Self {
            seq: appended.seq,
            hash: appended.hash,
            leaf_index: appended.leaf_index,
            decision_id: entry.decision_id.clone(),
            record: entry.record.clone(),
        }
    }

    /// The entry's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The entry's hash, which is also its Merkle leaf hash.
    pub fn hash(&self) -> super::ChainHash {
        self.hash
    }

    /// The entry's leaf index in the Merkle tree (what an inclusion proof is asked for).
    pub fn leaf_index(&self) -> u64 {
        self.leaf_index
    }

    /// The decision the entry records, if any.
    pub fn decision_id(&self) -> Option<&str> {
        self.decision_id.as_deref()
    }

    /// The record the entry is about, as `(kind, id)`, if any.
    pub fn record(&self) -> Option<(&str, &str)> {
        self.record
            .as_ref()
            .map(|r| (r.kind.as_str(), r.id.as_str()))
    }
}

struct Job {
    entry: SealedEntry,
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
    metrics: Arc<super::metrics::LogMetrics>,
    queue: mpsc::Sender<Job>,
    store: Store,
    subjects: SubjectKey,
    text: LogTextKey,
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
    /// Starts the writer task. `subjects` pseudonymizes subject identifiers; `text` seals the
    /// entries' free text; `signer` signs checkpoints (none: no checkpoints are made, and a
    /// retention purge is impossible). Must be called inside a Tokio runtime.
    pub fn start(
        store: Store,
        subjects: SubjectKey,
        text: LogTextKey,
        signer: Option<CheckpointSigner>,
        settings: AuditSettings,
    ) -> Self {
        let (queue, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let signer = signer.map(Arc::new);
        let counters = Arc::new(Counters::default());
        let metrics = Arc::new(super::metrics::LogMetrics::default());
        tokio::spawn(run_writer(
            rx,
            store.clone(),
            signer.clone(),
            settings.clone(),
            counters.clone(),
            metrics.clone(),
        ));
        Self {
            inner: Arc::new(Inner {
                counters,
                metrics,
                queue,
                store,
                subjects,
                text,
                signer,
                settings,
            }),
        }
    }

    /// Appends an entry and returns its receipt once it is durably committed (group commit:
    /// concurrent appends share one transaction and one flush). On any error nothing may be
    /// disclosed.
    pub async fn append(&self, entry: NewEntry) -> Result<Receipt, LogError> {
        let entry = normalize(entry);
        entry.validate()?;
        let (decision_id, record) = (entry.decision_id.clone(), entry.record.clone());
        let started = std::time::Instant::now();
        // Labels come from the entry as given, before its free text is sealed.
        let counted = super::metrics::LogMetrics::labels(&entry);
        let entry = self.inner.text.seal(entry)?;
        let (done, wait) = oneshot::channel();
        self.inner
            .queue
            .send(Job { entry, done })
            .await
            .map_err(|_| LogError::Closed)?;
        let appended = wait.await.map_err(|_| LogError::Closed)??;
        self.inner.metrics.appended(started.elapsed().as_secs_f64());
        if let Some(e) = &counted {
            self.inner.metrics.count(e);
        }
        Ok(Receipt {
            seq: appended.seq,
            hash: appended.hash,
            leaf_index: appended.leaf_index,
            decision_id,
            record,
        })
    }

    /// Opens the sealed free text of an entry read from the log (for compliance officers and
    /// the `audit entries` command only).
    pub fn open(&self, entry: &mut Entry) -> Result<(), LogError> {
        self.inner.text.open(entry)
    }

    /// Seals a free-text value kept beside the log (see [`LogTextKey::seal_field`]).
    pub fn seal_field(&self, label: &str, id: &str, text: &str) -> Result<String, LogError> {
        self.inner.text.seal_field(label, id, text)
    }

    /// Opens a value sealed by [`DisclosureLog::seal_field`] (legacy clear text passes).
    pub fn open_field(&self, label: &str, id: &str, stored: &str) -> Result<String, LogError> {
        self.inner.text.open_field(label, id, stored)
    }

    /// Begins a transaction that holds the chain lock from its first statement, for a change
    /// that must commit atomically with its entry ([`LogTx::append`], [`LogTx::commit`]).
    /// Other appends wait until it commits or rolls back: keep it short.
    pub async fn begin(&self) -> Result<LogTx, LogError> {
        let mut tx = self.inner.store.begin().await?;
        lock_head(&mut tx.conn()).await?;
        Ok(LogTx {
            tx,
            text: self.inner.text.clone(),
            appended: Vec::new(),
            counted: Vec::new(),
            metrics: self.inner.metrics.clone(),
        })
    }

    /// The subject's pseudonym under the log's key, from the identifier's canonical form.
    pub fn pseudonym(&self, subject: &SubjectIdentifier) -> SubjectPseudonym {
        self.inner
            .subjects
            .pseudonym(subject.system(), subject.value())
    }

    /// The checkpoint signer, if checkpoints are signed.
    pub fn checkpoint_signer(&self) -> Option<&CheckpointSigner> {
        self.inner.signer.as_deref()
    }

    /// The checkpoint public key, if checkpoints are signed.
    pub fn checkpoint_key(&self) -> Option<VerifyingKey> {
        self.inner.signer.as_ref().map(|s| s.verifying_key())
    }

    /// The append path's instruments, for the metrics endpoint.
    pub fn metrics(&self) -> &super::metrics::LogMetrics {
        &self.inner.metrics
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

/// A database transaction that holds the chain lock, for a change that commits together with
/// its log entries: make the change through [`LogTx::conn`], append its entries, then
/// [`LogTx::commit`], which returns their receipts once everything is durable. Dropped
/// without committing, the change and the entries roll back together.
#[derive(Debug)]
pub struct LogTx {
    tx: Tx,
    text: LogTextKey,
    appended: Vec<Receipt>,
    /// Disclosure entries to count once committed.
    counted: Vec<super::metrics::DisclosureLabels>,
    metrics: Arc<super::metrics::LogMetrics>,
}

impl LogTx {
    /// The transaction's connection, for the change itself.
    pub fn conn(&mut self) -> Conn<'_> {
        self.tx.conn()
    }

    /// Appends an entry inside the transaction: it commits if and only if the transaction
    /// does. Returns its sequence number (the receipt comes with [`LogTx::commit`]).
    pub async fn append(&mut self, entry: NewEntry) -> Result<u64, LogError> {
        let entry = normalize(entry);
        entry.validate()?;
        // Labels come from the entry as given, before its free text is sealed.
        let counted = super::metrics::LogMetrics::labels(&entry);
        let sealed = self.text.seal(entry)?;
        let mut c = self.tx.conn();
        let head = lock_head(&mut c).await?;
        let appended = append_locked(&mut c, head, &sealed).await?;
        let seq = appended.seq;
        self.appended.push(Receipt::new(appended, &sealed.data));
        if let Some(l) = counted {
            self.counted.push(l);
        }
        Ok(seq)
    }

    /// Commits durably; returns the receipts of the entries appended, in order.
    pub async fn commit(self) -> Result<Vec<Receipt>, LogError> {
        self.tx.commit().await?;
        for e in &self.counted {
            self.metrics.count(e);
        }
        Ok(self.appended)
    }
}

async fn lock_head(c: &mut Conn<'_>) -> Result<Head, LogError> {
    match c {
        Conn::Sqlite(c) => c.lock_head().await,
        Conn::Postgres(c) => c.lock_head().await,
    }
}

async fn append_locked(
    c: &mut Conn<'_>,
    head: Head,
    entry: &SealedEntry,
) -> Result<AppendedEntry, LogError> {
    let (_, mut out) = match c {
        Conn::Sqlite(c) => db::append_locked(&mut **c, head, &[entry]).await?,
        Conn::Postgres(c) => db::append_locked(&mut **c, head, &[entry]).await?,
    };
    out.pop()
        .ok_or_else(|| LogError::Invalid("nothing was appended".into()))
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
    metrics: Arc<super::metrics::LogMetrics>,
) {
    let every = Duration::from_secs(settings.checkpoint_every_secs.max(1));
    // The first timed checkpoint comes one period after start, not at once: a checkpoint
    // signed while start-up is still writing would race what start-up (or a test preparing
    // the database) does next, and the entry-count trigger covers a busy start.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
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
                metrics.batch(batch.len());
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

/// The group-commit writer's own connection, kept between commits (its statements stay
/// prepared and, on SQLite, its page cache warm; a pooled connection's cache is discarded
/// whenever another connection wrote). After a failed commit it is closed and the next batch
/// opens a fresh one, whatever state the old one was in.
#[derive(Default)]
struct WriterConn {
    db: WriterDb,
    /// The newest checkpoint this writer has seen (its own, or another replica's).
    last_checkpoint: Option<u64>,
}

#[derive(Default)]
enum WriterDb {
    #[default]
    None,
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

async fn write_batch(
    store: &Store,
    conn: &mut WriterConn,
    signer: Option<&CheckpointSigner>,
    settings: &AuditSettings,
    batch: &[Job],
) -> Result<Vec<AppendedEntry>, LogError> {
    let entries: Vec<&SealedEntry> = batch.iter().map(|j| &j.entry).collect();
    if matches!(conn.db, WriterDb::None) {
        conn.db = if let Some(c) = store.sqlite_connection(&[]).await? {
            WriterDb::Sqlite(c)
        } else if let Some(c) = store.postgres_connection().await? {
            WriterDb::Postgres(c)
        } else {
            return Err(LogError::WriteFailed(
                "the database is open read-only: the log cannot be written".into(),
            ));
        };
    }
    let last = &mut conn.last_checkpoint;
    let result = match &mut conn.db {
        WriterDb::Sqlite(c) => write_in(c, signer, settings, &entries, last).await,
        WriterDb::Postgres(c) => write_in(c, signer, settings, &entries, last).await,
        WriterDb::None => Err(LogError::Closed),
    };
    if result.is_err() {
        conn.last_checkpoint = None;
        match std::mem::take(&mut conn.db) {
            WriterDb::Sqlite(c) => {
                let _ = c.close().await;
            }
            WriterDb::Postgres(c) => {
                let _ = c.close().await;
            }
            WriterDb::None => {}
        }
    }
    result
}

/// One group commit on `conn`: lock the head, append, maybe checkpoint, commit durably.
/// `last_checkpoint` is the newest checkpoint this writer knows of: while fewer than
/// `checkpoint_every_entries` entries follow it, no checkpoint can be due (another replica's
/// checkpoints are only newer), so the commit asks the database nothing more.
async fn write_in<C>(
    conn: &mut C,
    signer: Option<&CheckpointSigner>,
    settings: &AuditSettings,
    entries: &[&SealedEntry],
    last_checkpoint: &mut Option<u64>,
) -> Result<Vec<AppendedEntry>, LogError>
where
    C: ChainConn + sqlx::Connection,
    C::Database: sqlx::Database<Connection = C>,
{
    let mut tx = conn.begin().await?;
    let head = tx.lock_head().await?;
    let (new_head, appended) = db::append_locked(&mut *tx, head, entries).await?;
    let every = settings.checkpoint_every_entries.max(1);
    let due = last_checkpoint.is_none_or(|last| new_head.seq.saturating_sub(last) >= every);
    let mut seen = *last_checkpoint;
    if let Some(s) = signer
        && due
    {
        seen = checkpoint_locked(&mut *tx, s, &new_head, every, None).await?;
    }
    tx.commit().await?;
    *last_checkpoint = seen;
    Ok(appended)
}

/// Inside a transaction holding the head lock: signs a checkpoint at `head` if at least
/// `every_entries` entries, or (with `every_time`) that much time, passed since the last one.
/// Returns the newest checkpoint's sequence number afterwards (`None`: there is none).
async fn checkpoint_locked<C: ChainConn>(
    conn: &mut C,
    signer: &CheckpointSigner,
    head: &Head,
    every_entries: u64,
    every_time: Option<Duration>,
) -> Result<Option<u64>, LogError> {
    let last = conn.last_checkpoint().await?;
    if head.seq == 0 {
        return Ok(last.map(|(s, _)| s));
    }
    let now = Utc::now().timestamp_micros();
    let (last_seq, last_at) = last.unwrap_or((0, i64::MIN));
    if head.seq <= last_seq {
        return Ok(Some(last_seq));
    }
    let by_count = head.seq - last_seq >= every_entries.max(1);
    let by_time = every_time.is_some_and(|t| {
        let t = i64::try_from(t.as_micros()).unwrap_or(i64::MAX);
        now.saturating_sub(last_at) >= t
    });
    if !by_count && !by_time {
        return Ok(last.map(|(s, _)| s));
    }
    let c = signer.sign(head.seq, head.hash, now);
    conn.insert_checkpoint(&c).await?;
    if head.tree.size() > 0 {
        let t = signer.sign_tree(head.tree.size(), head.tree.root(), now);
        conn.insert_tree_checkpoint(&t).await?;
    }
    Ok(Some(head.seq))
}

async fn checkpoint_if_due(
    store: &Store,
    signer: &CheckpointSigner,
    every_entries: u64,
    every_time: Duration,
) -> Result<Option<u64>, LogError> {
    let mut tx = store.begin().await?;
    let done = match &mut tx.conn() {
        Conn::Sqlite(c) => {
            let head = c.lock_head().await?;
            checkpoint_locked(&mut **c, signer, &head, every_entries, Some(every_time)).await?
        }
        Conn::Postgres(c) => {
            let head = c.lock_head().await?;
            checkpoint_locked(&mut **c, signer, &head, every_entries, Some(every_time)).await?
        }
    };
    tx.commit().await?;
    Ok(done)
}

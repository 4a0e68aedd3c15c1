//! Verification of the stored chain, on every core.
//!
//! The entries to check are split into ranges of sequence numbers, one per core (half of them
//! on a serving gateway, see [`Cores`]). Each range is
//! read in one ordered scan ([`super::scan`]: rows checked and encoded from their column
//! values on the scan's thread) and hashed on a thread of its own, and checked on its own:
//! every entry's hash, the links inside the range, the signed checkpoints it covers. The
//! ranges are then joined in order, each range's first entry linking to the last entry of the
//! range before it. The first entry that fails is read again in full and given, with the
//! entry after it, to the [`Verifier`], which says how it fails exactly as a verification one
//! entry after the other would.
//!
//! Entries appended while the ranges were read are picked up by further scans until the head
//! is reached; a scan that finds nothing new ends it (a truncated tail is then named by the
//! head check).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::canonical::{ChainHash, encode_head, hash_parts};
use super::checkpoint::{self, Checkpoint, CheckpointExport};
use super::db;
use super::entry::EntryFormat;
use super::scan::{self, EncodedEntries, Scanned as _};
use super::verify::{Anchor, ChainFailure, FailureKind, Verifier, VerifySummary};
use super::{LogError, StoreVerification};
use crate::store::{Backend, Store};

/// Entries per range below which a log is not split further (one batch of the scan).
const MIN_RANGE: u64 = 2048;

/// Ranges read at the same time, at most.
const MAX_RANGES: usize = 8;

/// How far a verification of the stored chain has come, readable from another task while it
/// runs (`audit verify` prints it on a terminal). Clones share one count.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<ProgressCounts>);

#[derive(Debug, Default)]
struct ProgressCounts {
    read: AtomicU64,
    head: AtomicU64,
}

impl Progress {
    /// Entries read and checked so far.
    pub fn entries_read(&self) -> u64 {
        self.0.read.load(Ordering::Relaxed)
    }

    /// The head when the verification last read it (0 before it has): about how many entries
    /// there are to read.
    pub fn head(&self) -> u64 {
        self.0.head.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0
            .read
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn set_head(&self, head: u64) {
        self.0.head.store(head, Ordering::Relaxed);
    }
}

/// How many of the machine's cores a verification of the stored chain may keep busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cores {
    /// Every core: an offline `audit verify`, or a purge.
    All,
    /// Half of them, at least one: a serving gateway keeps the rest for its requests.
    Half,
}

impl Cores {
    /// Ranges of the chain read at the same time on a machine with `cores` cores (each range
    /// is a scan thread and a hashing thread).
    fn ranges(self, cores: usize) -> usize {
        let n = match self {
            Self::All => cores,
            Self::Half => cores / 2,
        };
        n.clamp(1, MAX_RANGES)
    }
}

/// The chain verification; also returns the tree's leaf hashes read on the way (the first
/// leaf index of the stored entries, and their hashes in order).
pub(super) async fn verify_chain(
    store: &Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    partner_checkpoints: Option<&CheckpointExport>,
    cores: Cores,
    progress: Progress,
) -> Result<(StoreVerification, (u64, Vec<[u8; 32]>)), LogError> {
    let mut pooled = store.acquire().await?;
    let mut c = pooled.conn();
    let stored = db::checkpoints(&mut c).await?;
    let sig_fail = |c: &Checkpoint, source: &str| StoreVerification {
        summary: VerifySummary {
            entries_checked: 0,
            last_seq: 0,
            last_hash: String::new(),
            failure: Some(ChainFailure {
                seq: c.seq,
                kind: FailureKind::CheckpointSignature,
                message: format!(
                    "the {source} checkpoint at entry {} does not carry a valid signature",
                    c.seq
                ),
            }),
        },
        first_seq: None,
        checkpoints_checked: 0,
        signatures_checked: key.is_some(),
        tree: None,
    };
    if let Some(k) = key {
        for c in &stored {
            if !checkpoint::verify_checkpoint(k, c) {
                return Ok((sig_fail(c, "stored"), (0, Vec::new())));
            }
        }
    }
    let mut partner: Vec<Checkpoint> = Vec::new();
    if let Some(p) = partner_checkpoints {
        let pk = p.verifying_key()?;
        if let Some(k) = key
            && pk != *k
        {
            return Err(LogError::Key(
                "the partner's checkpoints are signed by another key than the configured \
                 checkpoint key"
                    .into(),
            ));
        }
        for c in &p.checkpoints {
            if !checkpoint::verify_checkpoint(&pk, c) {
                return Ok((sig_fail(c, "partner's"), (0, Vec::new())));
            }
        }
        partner = p.checkpoints.clone();
    }

    let first = db::first_seq(&mut c).await?;
    let anchor = match first {
        None | Some(1) => Anchor::GENESIS,
        Some(f) => {
            // After a purge the chain starts from a signed checkpoint at `f - 1`.
            let at = f - 1;
            let cp = key
                .and_then(|_| stored.iter().find(|c| c.seq == at))
                .or_else(|| partner.iter().find(|c| c.seq == at));
            match cp {
                Some(c) => Anchor {
                    seq: c.seq,
                    hash: c.head_hash,
                },
                None => Anchor::GENESIS,
            }
        }
    };
    let mut v = Verifier::new(anchor);
    v.expect_checkpoints("log", stored.iter().filter(|c| c.seq > anchor.seq));
    v.expect_checkpoints(
        "partner copy",
        partner.iter().filter(|c| c.seq > anchor.seq),
    );
    // Checkpoints at or before the anchor must agree with each other.
    for p in partner.iter().filter(|c| c.seq <= anchor.seq) {
        if let Some(s) = stored.iter().find(|s| s.seq == p.seq)
            && s.head_hash != p.head_hash
        {
            let mut out = sig_fail(p, "partner's");
            if let Some(f) = out.summary.failure.as_mut() {
                f.kind = FailureKind::CheckpointMismatch;
                f.message = format!(
                    "the partner's checkpoint at entry {} names another hash than the log's \
                     checkpoint: the log was rewritten",
                    p.seq
                );
            }
            return Ok((out, (0, Vec::new())));
        }
    }

    // The tree's base (a head row whose tree does not match its chain fails the tree check,
    // after the chain's own, which names what was changed).
    let (base, tree_error) = match db::read_full_head(&mut c).await {
        Ok(h) => (Some(h.tree_base), None),
        Err(e @ LogError::Corrupt { .. }) => (None, Some(e)),
        Err(e) => return Err(e),
    };
    drop(pooled);
    let mut pass = ChainPass {
        cores,
        ranges: RangeRules {
            checkpoints: Arc::new(v.checkpoint_hashes()),
            base,
            progress,
        },
        v,
        leaves: Vec::new(),
        unreadable: None,
        tree_error,
    };
    // Scans until the head read after a scan is covered: a head read after a scan names at
    // least every entry the scan saw (an entry and the head commit together), so the head
    // check below names a truncated tail and nothing that was merely appended meanwhile.
    let mut head = read_head(store).await?;
    let mut scanned_to = None;
    loop {
        pass.ranges.progress.set_head(head.0);
        pass.run(store, head.0).await?;
        let last = pass.v.last_seq();
        if pass.stopped() || scanned_to == Some(last) {
            break;
        }
        scanned_to = Some(last);
        head = read_head(store).await?;
        if head.0 <= last {
            break;
        }
    }
    let checkpoints_checked = stored.len() + partner.len();
    let summary = match pass.unreadable {
        Some((seq, why)) => VerifySummary {
            entries_checked: 0,
            last_seq: pass.v.last_seq(),
            last_hash: String::new(),
            failure: Some(pass.v.failure().cloned().unwrap_or(ChainFailure {
                seq,
                kind: FailureKind::Altered,
                message: format!("entry {seq} holds values no entry can have: {why}"),
            })),
        },
        None => pass.v.finish(Some(head)),
    };
    if summary.failure.is_none()
        && let Some(e) = pass.tree_error
    {
        return Err(e);
    }
    let first_leaf = base.map_or(0, |base| first.unwrap_or(base + 1).max(base + 1) - base - 1);
    Ok((
        StoreVerification {
            summary,
            first_seq: first,
            checkpoints_checked,
            signatures_checked: key.is_some(),
            tree: None,
        },
        (first_leaf, pass.leaves),
    ))
}

async fn read_head(store: &Store) -> Result<(u64, ChainHash), LogError> {
    let mut pooled = store.acquire().await?;
    db::read_head(&mut pooled.conn()).await
}

/// What every range is checked against: the signed checkpoints' hashes, and the sequence
/// number before the tree's first leaf (`None` if the head is unreadable).
#[derive(Clone)]
struct RangeRules {
    checkpoints: Arc<BTreeMap<u64, ChainHash>>,
    base: Option<u64>,
    progress: Progress,
}

/// The chain verification so far: the verifier (which has accepted every entry up to its
/// last sequence number), and the tree's leaf hashes collected on the way.
struct ChainPass {
    cores: Cores,
    ranges: RangeRules,
    v: Verifier,
    leaves: Vec<[u8; 32]>,
    /// The first row that could not be read as an entry, and why.
    unreadable: Option<(u64, String)>,
    /// An entry in the tree's range that was not written as a leaf (reported if the chain
    /// verifies).
    tree_error: Option<LogError>,
}

impl ChainPass {
    fn stopped(&self) -> bool {
        self.unreadable.is_some() || self.v.failed()
    }

    /// Checks every entry after the verifier's last, up to `head` and beyond it (entries
    /// stored beyond the head are read too, and named), in ranges read at the same time.
    async fn run(&mut self, store: &Store, head: u64) -> Result<(), LogError> {
        let from = self.v.last_seq();
        // Each range's scan reads on a connection of its own (SQLite: the file, read-only;
        // PostgreSQL: outside the pool), so requests served meanwhile keep the whole pool. An
        // in-memory SQLite database is read on a pooled connection, in one range.
        let parts = match (store.sqlite_file(), store.backend()) {
            (None, Backend::Sqlite) => 1,
            _ => self
                .cores
                .ranges(std::thread::available_parallelism().map_or(1, |n| n.get())),
        };
        let bounds = split(from, head, parts);
        let checks = bounds.into_iter().map(|(after, upto)| {
            let rules = self.ranges.clone();
            let rx = match (i64::try_from(after), i64::try_from(upto)) {
                (Ok(after), Ok(upto)) => Ok(scan::scan_range::<EncodedEntries>(store, after, upto)),
                _ => Err(LogError::Invalid("sequence number out of range".into())),
            };
            async move {
                let mut rx = rx?;
                tokio::task::spawn_blocking(move || {
                    let progress = rules.progress.clone();
                    let mut range = RangeCheck::new(rules);
                    while let Some(batch) = rx.blocking_recv() {
                        match batch {
                            Ok(entries) => {
                                range.feed(&entries);
                                progress.add(entries.len());
                            }
                            Err(LogError::Corrupt { seq, why }) => {
                                range.unreadable = Some((seq, why));
                            }
                            Err(e) => return Err(e),
                        }
                        if range.stopped() {
                            break;
                        }
                    }
                    Ok(range)
                })
                .await
                .map_err(|e| LogError::Scan(format!("the verification thread failed: {e}")))?
            }
        });
        let ranges = futures_util::future::try_join_all(checks).await?;
        if let Some(suspect) = self.join(ranges) {
            self.classify(store, suspect).await?;
        }
        Ok(())
    }

    /// Joins checked ranges in order: the verifier accepts each range whose first entry links
    /// to the last accepted one, up to the first entry that fails (returned) or the first row
    /// that is unreadable.
    fn join(&mut self, ranges: Vec<RangeCheck>) -> Option<u64> {
        for r in ranges {
            let Some((first_seq, first_prev)) = r.first else {
                if let Some(u) = r.unreadable {
                    self.unreadable = Some(u);
                    return None;
                }
                // An empty range: whatever follows must link across it.
                continue;
            };
            if !self.v.links(first_seq, &first_prev) {
                return Some(first_seq);
            }
            if let Some((seq, hash)) = r.last {
                self.v.accept_checked(r.checked, seq, hash);
            }
            self.leaves.extend(r.leaves);
            if self.tree_error.is_none() {
                self.tree_error = r.tree_error;
            }
            if let Some(bad) = r.bad {
                return Some(bad);
            }
            if let Some(u) = r.unreadable {
                self.unreadable = Some(u);
                return None;
            }
        }
        None
    }

    /// Says how entry `suspect` fails: the verifier reads it, and the entry after it, in full
    /// (a swap or a renumbering shows only with both in view).
    async fn classify(&mut self, store: &Store, suspect: u64) -> Result<(), LogError> {
        let mut pooled = store.acquire().await?;
        let rows = db::rows_after(&mut pooled.conn(), self.v.last_seq(), 2).await?;
        for (i, row) in rows.into_iter().enumerate() {
            match db::row_to_entry(row) {
                Ok(e) => self.v.push(&e),
                Err(LogError::Corrupt { seq, why }) if i == 0 => {
                    self.unreadable = Some((seq, why));
                    break;
                }
                // The entry after the one that failed is unreadable: classified without it.
                Err(LogError::Corrupt { .. }) => break,
                Err(other) => return Err(other),
            }
            if self.v.failed() {
                break;
            }
        }
        if !self.v.failed() && self.unreadable.is_none() {
            if self.v.last_seq() >= suspect {
                // The scan failed the entry and the full read passes it: it was rewritten
                // while the log was read, or the two readers disagree. Going on would re-scan
                // from just past it, again and again; the verification stops instead.
                return Err(LogError::Scan(format!(
                    "entry {suspect} fails the verification scan's check but passes when read \
                     in full: it changed while the log was read, or the scan misread it; \
                     verify again"
                )));
            }
            // The entry is gone (removed while the log was read): what the verifier read is
            // checked, and the next scan goes on from there.
            tracing::warn!(seq = suspect, "log entry changed during verification");
        }
        Ok(())
    }
}

/// Splits the entries after `from` into at most `parts` ranges `(after, upto]` of at least
/// [`MIN_RANGE`] entries up to `head`; the last range is open-ended (entries stored beyond the
/// head are read, and named).
fn split(from: u64, head: u64, parts: usize) -> Vec<(u64, u64)> {
    let n = head.saturating_sub(from);
    let parts = (n / MIN_RANGE).clamp(1, parts.max(1) as u64);
    let size = n.div_ceil(parts).max(1);
    let mut out = Vec::new();
    let mut after = from;
    for _ in 1..parts {
        let upto = after.saturating_add(size).min(head);
        out.push((after, upto));
        after = upto;
    }
    out.push((after, i64::MAX as u64));
    out
}

/// One range of entries checked on its own: each entry's hash, its link to the entry before
/// it in the range, and the signed checkpoints the range covers.
struct RangeCheck {
    rules: RangeRules,
    /// The first entry read: its sequence number and stored previous hash.
    first: Option<(u64, ChainHash)>,
    /// The last entry that passed, and how many passed.
    last: Option<(u64, ChainHash)>,
    checked: u64,
    leaves: Vec<[u8; 32]>,
    tree_error: Option<LogError>,
    /// The first entry that failed a check.
    bad: Option<u64>,
    /// The first row that could not be read as an entry, and why.
    unreadable: Option<(u64, String)>,
    /// Scratch space for the start of an entry's encoding.
    head: Vec<u8>,
}

impl RangeCheck {
    fn new(rules: RangeRules) -> Self {
        Self {
            rules,
            first: None,
            last: None,
            checked: 0,
            leaves: Vec::new(),
            tree_error: None,
            bad: None,
            unreadable: None,
            head: Vec::with_capacity(128),
        }
    }

    fn stopped(&self) -> bool {
        self.bad.is_some() || self.unreadable.is_some()
    }

    /// Hashes and links a batch of entries; stops at the first that fails.
    fn feed(&mut self, batch: &EncodedEntries) {
        for (e, body) in batch.iter() {
            if self.first.is_none() {
                self.first = Some((e.seq, e.prev));
            }
            encode_head(&mut self.head, e.format, e.seq, &e.prev);
            let ok = hash_parts(e.format, &self.head, body) == e.hash
                && self
                    .last
                    .is_none_or(|(seq, hash)| e.seq == seq.saturating_add(1) && e.prev == hash)
                && self
                    .rules
                    .checkpoints
                    .get(&e.seq)
                    .is_none_or(|want| *want == e.hash);
            if !ok {
                self.bad = Some(e.seq);
                return;
            }
            self.last = Some((e.seq, e.hash));
            self.checked += 1;
            if self.rules.base.is_some_and(|base| e.seq > base) && self.tree_error.is_none() {
                if e.format == EntryFormat::V2 {
                    self.leaves.push(e.hash.0);
                } else {
                    self.tree_error = Some(LogError::Corrupt {
                        seq: e.seq,
                        why: "an entry in the tree's range was not written as a tree leaf".into(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_gateway_verifies_on_half_the_cores() {
        assert_eq!(Cores::All.ranges(1), 1);
        assert_eq!(Cores::Half.ranges(1), 1);
        assert_eq!(Cores::All.ranges(2), 2);
        assert_eq!(Cores::Half.ranges(2), 1);
        assert_eq!(Cores::Half.ranges(6), 3);
        assert_eq!(Cores::All.ranges(64), MAX_RANGES);
        assert_eq!(Cores::Half.ranges(64), MAX_RANGES);
    }

    /// The scan fails an entry that a full read passes (here by a misread the test arranges;
    /// in life, a rewrite during the read or a decoder defect): the verification stops with
    /// an error naming the entry. Without that, the chain would be reported verified past it,
    /// the tree's leaves would come out short (a tree failure naming the wrong cause), and a
    /// decoder defect would re-scan the log from each entry in turn.
    #[tokio::test]
    async fn an_entry_the_scan_fails_and_a_full_read_passes_ends_the_verification() {
        let (_dir, store, hashes) = log_of(5).await;
        let verify = || async {
            tokio::time::timeout(
                std::time::Duration::from_secs(60),
                crate::audit::verify_store(&store, None, None),
            )
            .await
            .expect("the verification ends")
        };
        assert!(verify().await.unwrap().ok());

        scan::MISREAD.lock().unwrap().push(hashes[2]);
        let outcome = verify().await;
        scan::MISREAD.lock().unwrap().retain(|h| *h != hashes[2]);
        match outcome {
            Err(LogError::Scan(m)) => assert!(
                m.starts_with(
                    "entry 3 fails the verification scan's check but passes when read in full"
                ),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(verify().await.unwrap().ok());
    }

    /// A log of `n` entries in a SQLite file (read by the file scan, as in production), and
    /// the entries' hashes.
    async fn log_of(n: usize) -> (tempfile::TempDir, Store, Vec<ChainHash>) {
        use crate::audit::{DisclosureLog, EntryKind, LogTextKey, NewEntry, Outcome, SubjectKey};
        use crate::config::{AuditSettings, StorageSettings};

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let store = Store::open(&StorageSettings::new(url)).await.unwrap();
        let log = DisclosureLog::start(
            store.clone(),
            SubjectKey::derive(&[7; 32]),
            LogTextKey::new(&[8; 32]),
            None,
            AuditSettings::default(),
        );
        let appends = (0..n).map(|_| {
            let e = NewEntry::new(EntryKind::LogRead, chrono::Utc::now(), Outcome::Permit);
            log.append(e)
        });
        let hashes = futures_util::future::try_join_all(appends)
            .await
            .unwrap()
            .iter()
            .map(|r| r.hash())
            .collect();
        (dir, store, hashes)
    }

    #[tokio::test]
    async fn progress_counts_every_entry_read_over_every_range() {
        // Enough entries for one range per core (ranges are at least MIN_RANGE entries).
        let n = usize::try_from(MIN_RANGE).unwrap() * 2 + 5;
        let (_dir, store, _) = log_of(n).await;
        let progress = Progress::default();
        let v = crate::audit::verify_store_reporting(&store, None, None, &[], &[], &progress)
            .await
            .unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!(progress.entries_read(), n as u64);
        assert_eq!(progress.head(), n as u64);
        assert_eq!(v.summary.entries_checked, n as u64);
    }

    #[test]
    fn ranges_cover_every_entry_once_and_the_last_is_open() {
        assert_eq!(split(0, 0, 4), vec![(0, i64::MAX as u64)]);
        assert_eq!(split(10, 5, 4), vec![(10, i64::MAX as u64)]);
        assert_eq!(split(0, 4095, 4), vec![(0, i64::MAX as u64)]);
        assert_eq!(split(0, 4096, 4), vec![(0, 2048), (2048, i64::MAX as u64)]);
        assert_eq!(split(0, 5000, 8), vec![(0, 2500), (2500, i64::MAX as u64)]);
        assert_eq!(
            split(7, 1_000_007, 2),
            vec![(7, 500_007), (500_007, i64::MAX as u64)]
        );
        for (from, head, parts) in [(0, 123_457, 3), (1, 10_000_000, 8), (5, 400_001, 8)] {
            let r = split(from, head, parts);
            assert!(r.len() <= parts);
            assert_eq!(r.first().map(|r| r.0), Some(from));
            assert!(r.windows(2).all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1));
            assert!(r[..r.len() - 1].iter().all(|(a, b)| b - a >= MIN_RANGE));
        }
    }
}

//! Chain verification: recomputes every hash and link, in sequence order, and names the first
//! entry that fails and how (altered, deleted, inserted, reordered).
//!
//! The [`Verifier`] is fed entries in ascending sequence order (from memory or streamed from
//! the database) and keeps one entry of look-ahead so that it can tell a swap of two entries
//! from a deletion followed by renumbering.

use std::collections::BTreeMap;

use serde::Serialize;

use super::canonical::ChainHash;
use super::checkpoint::Checkpoint;
use super::entry::Entry;

/// How an entry fails verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The entry's content no longer matches its hash.
    Altered,
    /// The entry is missing (a gap, a renumbering, or a truncated tail).
    Deleted,
    /// The entry was not written by the log (extra, beyond the head, or shifting others).
    Inserted,
    /// The entry and the next one have swapped places.
    Reordered,
    /// The entry is intact but does not link to its predecessor: the predecessor (or an
    /// earlier entry) was rewritten and re-hashed.
    BrokenLink,
    /// A signed checkpoint names a different hash for this sequence number: entries up to it
    /// were rewritten.
    CheckpointMismatch,
    /// A checkpoint's signature does not verify.
    CheckpointSignature,
}

impl FailureKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Altered => "altered",
            Self::Deleted => "deleted",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::BrokenLink => "broken_link",
            Self::CheckpointMismatch => "checkpoint_mismatch",
            Self::CheckpointSignature => "checkpoint_signature",
        }
    }
}

/// The first failure found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("entry {seq} {}: {message}", kind.as_str())]
pub struct ChainFailure {
    /// The sequence number of the first failing entry.
    pub seq: u64,
    /// How it fails.
    pub kind: FailureKind,
    /// What was found, in words.
    pub message: String,
}

impl ChainFailure {
    fn new(seq: u64, kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            seq,
            kind,
            message: message.into(),
        }
    }
}

/// Where a chain starts: the genesis (sequence 0, zero hash) or, after a retention purge, a
/// verified signed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The sequence number of the last entry before the chain (0 at genesis).
    pub seq: u64,
    /// Its hash.
    pub hash: ChainHash,
}

impl Anchor {
    /// The start of a log that was never purged.
    pub const GENESIS: Anchor = Anchor {
        seq: 0,
        hash: ChainHash::GENESIS,
    };
}

/// The state of a verification in progress.
#[derive(Debug)]
pub struct Verifier {
    prev_seq: u64,
    prev_hash: ChainHash,
    checked: u64,
    buf: Vec<u8>,
    suspect: Option<Entry>,
    failure: Option<ChainFailure>,
    checkpoints: BTreeMap<u64, (ChainHash, &'static str)>,
}

/// The outcome of a whole verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifySummary {
    /// Entries whose hash and link were checked.
    pub entries_checked: u64,
    /// Sequence number of the last entry checked (the anchor's if none).
    pub last_seq: u64,
    /// Hash of the last entry checked.
    pub last_hash: String,
    /// The first failure, if any.
    pub failure: Option<ChainFailure>,
}

impl Verifier {
    /// Starts a verification after `anchor`.
    pub fn new(anchor: Anchor) -> Self {
        Self {
            prev_seq: anchor.seq,
            prev_hash: anchor.hash,
            checked: 0,
            buf: Vec::with_capacity(1024),
            suspect: None,
            failure: None,
            checkpoints: BTreeMap::new(),
        }
    }

    /// Also checks that the entry at each checkpoint's sequence number has the checkpoint's
    /// hash. `source` names where the checkpoints come from (`log`, `partner copy`). The
    /// signatures must have been checked by the caller. Two signed checkpoints that name
    /// different hashes for one entry are a failure at once: the log was rewritten after one
    /// of them was signed (or the signer forked it).
    pub fn expect_checkpoints<'a>(
        &mut self,
        source: &'static str,
        checkpoints: impl IntoIterator<Item = &'a Checkpoint>,
    ) {
        for c in checkpoints {
            if let Some((other, other_source)) = self.checkpoints.get(&c.seq)
                && *other != c.head_hash
                && self.failure.is_none()
            {
                self.failure = Some(ChainFailure::new(
                    c.seq,
                    FailureKind::CheckpointMismatch,
                    format!(
                        "two signed checkpoints name different hashes for entry {} ({other_source}: \
                         {other}; {source}: {}): the log was rewritten or forked",
                        c.seq, c.head_hash
                    ),
                ));
            }
            self.checkpoints.insert(c.seq, (c.head_hash, source));
        }
    }

    /// The first failure found so far.
    pub fn failure(&self) -> Option<&ChainFailure> {
        self.failure.as_ref()
    }

    /// Whether verification has failed (further entries are ignored).
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The sequence number of the last entry that verified.
    pub fn last_seq(&self) -> u64 {
        self.prev_seq
    }

    fn self_ok(&mut self, e: &Entry, seq: u64) -> bool {
        e.compute_hash(&mut self.buf, seq) == e.hash
    }

    /// The hash each signed checkpoint expects, by sequence number.
    pub fn checkpoint_hashes(&self) -> BTreeMap<u64, ChainHash> {
        self.checkpoints
            .iter()
            .map(|(s, (h, _))| (*s, *h))
            .collect()
    }

    /// Whether an entry numbered `seq` whose stored previous hash is `prev` comes next and
    /// links to the last accepted entry.
    pub fn links(&self, seq: u64, prev: &ChainHash) -> bool {
        self.failure.is_none()
            && self.suspect.is_none()
            && seq == self.prev_seq.saturating_add(1)
            && *prev == self.prev_hash
    }

    /// Accepts `count` entries checked elsewhere by the rules of [`Verifier::push`] (each
    /// entry's hash, links, checkpoints), the first of which [`Verifier::links`] here, ending
    /// with entry `seq` of hash `hash`.
    pub fn accept_checked(&mut self, count: u64, seq: u64, hash: ChainHash) {
        self.prev_seq = seq;
        self.prev_hash = hash;
        self.checked += count;
    }

    /// Checks the next entry (entries must come in ascending sequence order).
    pub fn push(&mut self, e: &Entry) {
        if self.failure.is_some() {
            return;
        }
        if let Some(r0) = self.suspect.take() {
            self.failure = Some(self.classify(&r0, Some(e)));
            return;
        }
        let expected = self.prev_seq.saturating_add(1);
        if e.seq != expected {
            let f = if e.seq > expected {
                ChainFailure::new(
                    expected,
                    FailureKind::Deleted,
                    format!(
                        "entries {expected} to {} are missing (the next stored entry is {})",
                        e.seq - 1,
                        e.seq
                    ),
                )
            } else {
                ChainFailure::new(
                    e.seq,
                    FailureKind::Inserted,
                    format!(
                        "entry {} appears again after entry {}",
                        e.seq, self.prev_seq
                    ),
                )
            };
            self.failure = Some(f);
            return;
        }
        if !self.self_ok(e, e.seq) {
            if e.hash == self.prev_hash {
                self.failure = Some(ChainFailure::new(
                    e.seq,
                    FailureKind::Inserted,
                    format!("entry {} is a copy of entry {}", e.seq, self.prev_seq),
                ));
                return;
            }
            if e.seq > 1 && self.self_ok(e, e.seq - 1) {
                // This entry was written as `seq - 1`: the entry now stored before it was not
                // written by the log.
                self.failure = Some(ChainFailure::new(
                    e.seq - 1,
                    FailureKind::Inserted,
                    format!(
                        "entry {} was not written by the log: the entries after it were \
                         renumbered to make room",
                        e.seq - 1
                    ),
                ));
                return;
            }
            // Decide with the next entry in view.
            self.suspect = Some(e.clone());
            return;
        }
        if e.prev_hash != self.prev_hash {
            self.failure = Some(ChainFailure::new(
                e.seq,
                FailureKind::BrokenLink,
                format!(
                    "entry {} is intact but does not link to entry {}: entry {} or an earlier \
                     one was rewritten and re-hashed",
                    e.seq, self.prev_seq, self.prev_seq
                ),
            ));
            return;
        }
        if let Some((want, source)) = self.checkpoints.get(&e.seq)
            && *want != e.hash
        {
            let after = self
                .checkpoints
                .range(..e.seq)
                .next_back()
                .map_or(0, |(s, _)| *s);
            self.failure = Some(ChainFailure::new(
                e.seq,
                FailureKind::CheckpointMismatch,
                format!(
                    "the signed checkpoint ({source}) at entry {} names hash {want} but the log \
                     holds {}: the log was rewritten between entries {} and {}",
                    e.seq,
                    e.hash,
                    after + 1,
                    e.seq
                ),
            ));
            return;
        }
        self.prev_seq = e.seq;
        self.prev_hash = e.hash;
        self.checked += 1;
    }

    fn classify(&mut self, r0: &Entry, r1: Option<&Entry>) -> ChainFailure {
        let s = r0.seq;
        let next_belongs_here = r1.is_some_and(|r1| r1.seq == s + 1 && self.self_ok(r1, s));
        let this_belongs_next = self.self_ok(r0, s + 1);
        if next_belongs_here && this_belongs_next {
            ChainFailure::new(
                s,
                FailureKind::Reordered,
                format!("entries {s} and {} have swapped places", s + 1),
            )
        } else if next_belongs_here {
            ChainFailure::new(
                s,
                FailureKind::Inserted,
                format!(
                    "entry {s} was not written by the log: the entries after it were \
                     renumbered to make room"
                ),
            )
        } else if this_belongs_next {
            ChainFailure::new(
                s,
                FailureKind::Deleted,
                format!(
                    "entry {s} is missing: the entries after it were renumbered to close the gap"
                ),
            )
        } else {
            ChainFailure::new(
                s,
                FailureKind::Altered,
                format!("entry {s}'s content does not match its hash"),
            )
        }
    }

    /// Ends the verification. `head` is the log's recorded head (sequence number and hash),
    /// when known, so that a truncated tail or entries appended behind the log's back are
    /// found.
    pub fn finish(mut self, head: Option<(u64, ChainHash)>) -> VerifySummary {
        if self.failure.is_none()
            && let Some(r0) = self.suspect.take()
        {
            self.failure = Some(self.classify(&r0, None));
        }
        if self.failure.is_none()
            && let Some((head_seq, head_hash)) = head
        {
            if head_seq > self.prev_seq {
                self.failure = Some(ChainFailure::new(
                    self.prev_seq + 1,
                    FailureKind::Deleted,
                    format!(
                        "the log's head is entry {head_seq} but the last stored entry is {}",
                        self.prev_seq
                    ),
                ));
            } else if head_seq < self.prev_seq {
                self.failure = Some(ChainFailure::new(
                    head_seq + 1,
                    FailureKind::Inserted,
                    format!(
                        "entries after the log's head ({head_seq}) were not written by the log"
                    ),
                ));
            } else if head_hash != self.prev_hash {
                self.failure = Some(ChainFailure::new(
                    head_seq,
                    FailureKind::BrokenLink,
                    format!(
                        "the log's head names hash {head_hash} for entry {head_seq}, which holds \
                         {}: the tail was rewritten",
                        self.prev_hash
                    ),
                ));
            }
        }
        if self.failure.is_none()
            && let Some((seq, _)) = self.checkpoints.range(self.prev_seq + 1..).next()
        {
            self.failure = Some(ChainFailure::new(
                self.prev_seq + 1,
                FailureKind::Deleted,
                format!(
                    "a signed checkpoint covers entry {seq} but the log ends at entry {}",
                    self.prev_seq
                ),
            ));
        }
        VerifySummary {
            entries_checked: self.checked,
            last_seq: self.prev_seq,
            last_hash: self.prev_hash.to_hex(),
            failure: self.failure,
        }
    }
}

/// Verifies entries held in memory (ascending sequence order) after `anchor`.
pub fn verify_entries(
    anchor: Anchor,
    entries: &[Entry],
    head: Option<(u64, ChainHash)>,
) -> VerifySummary {
    verify_entries_parallel(anchor, entries, head, 1)
}

/// The index of the first entry of `chunk` (starting at global index `start`) that fails the
/// per-entry checks: sequence number, own hash, and link to the entry before it.
fn first_bad(anchor: Anchor, entries: &[Entry], start: usize, chunk: &[Entry]) -> Option<usize> {
    let mut buf = Vec::with_capacity(1024);
    let mut prev = match start.checked_sub(1) {
        None => anchor.hash,
        Some(i) => entries.get(i).map_or(anchor.hash, |e| e.hash),
    };
    for (i, e) in chunk.iter().enumerate() {
        let expected = anchor.seq + 1 + (start + i) as u64;
        if e.seq != expected || e.prev_hash != prev || e.compute_hash(&mut buf, e.seq) != e.hash {
            return Some(start + i);
        }
        prev = e.hash;
    }
    None
}

/// Like [`verify_entries`], hashing on `threads` threads. Entries are checked independently
/// (own hash and link to the previous entry); the first failure, if any, is then classified
/// sequentially, so the result is the same as a sequential verification.
pub fn verify_entries_parallel(
    anchor: Anchor,
    entries: &[Entry],
    head: Option<(u64, ChainHash)>,
    threads: usize,
) -> VerifySummary {
    let threads = threads.clamp(1, 64);
    let size = entries.len().div_ceil(threads).max(1);
    let bad = if threads == 1 {
        first_bad(anchor, entries, 0, entries)
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = entries
                .chunks(size)
                .enumerate()
                .map(|(n, chunk)| scope.spawn(move || first_bad(anchor, entries, n * size, chunk)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .min()
        })
    };
    let good = bad.unwrap_or(entries.len());
    let start = match good.checked_sub(1).and_then(|i| entries.get(i)) {
        None => anchor,
        Some(e) => Anchor {
            seq: e.seq,
            hash: e.hash,
        },
    };
    let mut v = Verifier::new(start);
    for e in entries.get(good..).unwrap_or_default() {
        v.push(e);
        if v.failed() {
            break;
        }
    }
    let mut summary = v.finish(head);
    summary.entries_checked += good as u64;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canonical::entry_hash;
    use crate::audit::entry::{EntryKind, NewEntry, Outcome};
    use chrono::TimeZone;

    /// A well-formed chain of `n` entries.
    pub(crate) fn chain(n: u64) -> Vec<Entry> {
        let mut prev = ChainHash::GENESIS;
        (1..=n)
            .map(|seq| {
                let mut data = NewEntry::new(
                    EntryKind::LogRead,
                    chrono::Utc
                        .timestamp_micros(1_700_000_000_000_000 + seq as i64)
                        .unwrap(),
                    Outcome::Permit,
                );
                data.detail = Some(format!("entry {seq}"));
                let hash = entry_hash(seq, &prev, &data);
                let e = Entry {
                    format: crate::audit::EntryFormat::V1,
                    sealed: None,
                    seq,
                    data,
                    prev_hash: prev,
                    hash,
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn head(c: &[Entry]) -> Option<(u64, ChainHash)> {
        c.last().map(|e| (e.seq, e.hash))
    }

    fn fail(c: &[Entry], h: Option<(u64, ChainHash)>) -> (u64, FailureKind) {
        let f = verify_entries(Anchor::GENESIS, c, h)
            .failure
            .expect("tampering must be detected");
        for threads in [2, 3, 7] {
            let p = verify_entries_parallel(Anchor::GENESIS, c, h, threads);
            assert_eq!(p.failure.as_ref(), Some(&f), "{threads} threads");
        }
        // The sequential verifier streaming entry by entry agrees.
        let mut v = Verifier::new(Anchor::GENESIS);
        for e in c {
            v.push(e);
        }
        assert_eq!(v.finish(h).failure.as_ref(), Some(&f));
        (f.seq, f.kind)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(50);
        let s = verify_entries(Anchor::GENESIS, &c, head(&c));
        assert_eq!(s.failure, None);
        assert_eq!(s.entries_checked, 50);
        assert_eq!(s.last_seq, 50);
        assert_eq!(verify_entries_parallel(Anchor::GENESIS, &c, head(&c), 4), s);
        assert_eq!(
            verify_entries(Anchor::GENESIS, &[], Some((0, ChainHash::GENESIS))).failure,
            None
        );
    }

    #[test]
    fn an_altered_entry_is_named() {
        let mut c = chain(10);
        let h = head(&c);
        c[4].data.detail = Some("changed".into());
        assert_eq!(fail(&c, h), (5, FailureKind::Altered));
        let mut c = chain(10);
        c[9].data.fields_withheld = 3;
        assert_eq!(fail(&c, h), (10, FailureKind::Altered));
    }

    #[test]
    fn an_altered_and_rehashed_entry_breaks_the_next_link() {
        let mut c = chain(10);
        let h = head(&c);
        c[4].data.detail = Some("changed".into());
        c[4].hash = entry_hash(5, &c[4].prev_hash, &c[4].data);
        assert_eq!(fail(&c, h), (6, FailureKind::BrokenLink));
    }

    #[test]
    fn a_deleted_entry_is_named_with_or_without_renumbering() {
        let c = chain(10);
        let h = head(&c);
        let mut gap = c.clone();
        gap.remove(3);
        assert_eq!(fail(&gap, h), (4, FailureKind::Deleted));
        let mut renumbered = gap.clone();
        for e in renumbered.iter_mut().skip(3) {
            e.seq -= 1;
        }
        assert_eq!(fail(&renumbered, h), (4, FailureKind::Deleted));
        let mut tail = c.clone();
        tail.pop();
        assert_eq!(fail(&tail, h), (10, FailureKind::Deleted));
        let mut first = c.clone();
        first.remove(0);
        assert_eq!(fail(&first, h), (1, FailureKind::Deleted));
    }

    #[test]
    fn swapped_entries_are_named() {
        let mut c = chain(10);
        let h = head(&c);
        c.swap(5, 6);
        c[5].seq = 6;
        c[6].seq = 7;
        assert_eq!(fail(&c, h), (6, FailureKind::Reordered));
        let mut last = chain(10);
        last.swap(8, 9);
        last[8].seq = 9;
        last[9].seq = 10;
        assert_eq!(fail(&last, h), (9, FailureKind::Reordered));
    }

    #[test]
    fn inserted_entries_are_named() {
        let c = chain(10);
        let h = head(&c);
        // A forged entry at 4 (correctly chained to 3), the rest renumbered.
        let mut forged = c[..3].to_vec();
        let mut data = c[3].data.clone();
        data.detail = Some("forged".into());
        let hash = entry_hash(4, &c[2].hash, &data);
        forged.push(Entry {
            format: crate::audit::EntryFormat::V1,
            sealed: None,
            seq: 4,
            data: data.clone(),
            prev_hash: c[2].hash,
            hash,
        });
        for e in &c[3..] {
            let mut e = e.clone();
            e.seq += 1;
            forged.push(e);
        }
        assert_eq!(fail(&forged, h), (4, FailureKind::Inserted));
        // The same with a garbage hash on the forged entry.
        let mut garbage = forged.clone();
        garbage[3].hash = ChainHash([9; 32]);
        assert_eq!(fail(&garbage, h), (4, FailureKind::Inserted));
        // An entry appended behind the log's back (the head still says 10).
        let mut appended = c.clone();
        let hash = entry_hash(11, &c[9].hash, &data);
        appended.push(Entry {
            format: crate::audit::EntryFormat::V1,
            sealed: None,
            seq: 11,
            data,
            prev_hash: c[9].hash,
            hash,
        });
        assert_eq!(fail(&appended, h), (11, FailureKind::Inserted));
    }

    #[test]
    fn a_checkpoint_catches_a_fully_rewritten_tail() {
        let c = chain(10);
        let cp = Checkpoint {
            seq: 8,
            head_hash: c[7].hash,
            at_us: 0,
            key_id: String::new(),
            signature: String::new(),
        };
        // Rewrite entries 6..=10 and recompute every hash and the head.
        let mut r = c[..5].to_vec();
        let mut prev = c[4].hash;
        for e in &c[5..] {
            let mut data = e.data.clone();
            data.detail = Some("rewritten".into());
            let hash = entry_hash(e.seq, &prev, &data);
            r.push(Entry {
                format: crate::audit::EntryFormat::V1,
                sealed: None,
                seq: e.seq,
                data,
                prev_hash: prev,
                hash,
            });
            prev = hash;
        }
        assert_eq!(verify_entries(Anchor::GENESIS, &r, head(&r)).failure, None);
        let mut v = Verifier::new(Anchor::GENESIS);
        v.expect_checkpoints("partner copy", [&cp]);
        for e in &r {
            v.push(e);
        }
        let f = v.finish(head(&r)).failure.unwrap();
        assert_eq!((f.seq, f.kind), (8, FailureKind::CheckpointMismatch));
        // A checkpoint beyond the end of a truncated log.
        let mut v = Verifier::new(Anchor::GENESIS);
        v.expect_checkpoints("partner copy", [&cp]);
        for e in &c[..6] {
            v.push(e);
        }
        let f = v.finish(Some((6, c[5].hash))).failure.unwrap();
        assert_eq!((f.seq, f.kind), (7, FailureKind::Deleted));
    }

    #[test]
    fn two_checkpoints_naming_different_hashes_for_one_entry_fail() {
        let c = chain(10);
        let at = |seq: u64, hash: ChainHash| Checkpoint {
            seq,
            head_hash: hash,
            at_us: 0,
            key_id: String::new(),
            signature: String::new(),
        };
        // The log's copy agrees with the entries, the partner's names another hash.
        let (log, partner) = (at(8, c[7].hash), at(8, ChainHash([5; 32])));
        for (first, second) in [(&log, &partner), (&partner, &log)] {
            let mut v = Verifier::new(Anchor::GENESIS);
            v.expect_checkpoints("log", [first]);
            v.expect_checkpoints("partner copy", [second]);
            for e in &c {
                v.push(e);
            }
            let f = v.finish(head(&c)).failure.unwrap();
            assert_eq!(
                (f.seq, f.kind),
                (8, FailureKind::CheckpointMismatch),
                "{}",
                f.message
            );
        }
        // Two copies of one checkpoint are not a failure.
        let mut v = Verifier::new(Anchor::GENESIS);
        v.expect_checkpoints("log", [&log]);
        v.expect_checkpoints("partner copy", [&log]);
        for e in &c {
            v.push(e);
        }
        assert_eq!(v.finish(head(&c)).failure, None);
    }

    #[test]
    fn a_purged_log_verifies_from_its_anchor() {
        let c = chain(10);
        let anchor = Anchor {
            seq: 4,
            hash: c[3].hash,
        };
        assert_eq!(verify_entries(anchor, &c[4..], head(&c)).failure, None);
        let f = verify_entries(Anchor::GENESIS, &c[4..], head(&c))
            .failure
            .unwrap();
        assert_eq!((f.seq, f.kind), (1, FailureKind::Deleted));
    }
}

//! The transparency side of the log: signed tree heads with their witnesses' cosignatures,
//! inclusion and consistency proofs served from the stored tree, and the storage of
//! cosignatures.
//!
//! Security role: everything here is hashes and signatures, never entry content, so it can be
//! given to any partner: with it a partner proves, on its own machine, that the log it sees
//! extends the log it saw before and that the disclosures made to it are in that log. A
//! cosignature is accepted only for a checkpoint the gateway itself issued and only from the
//! witness key `policies/partners.toml` names for the partner whose certificate posts it.

use std::collections::HashMap;

use serde::Serialize;

use super::LogError;
use super::checkpoint::TreeCheckpoint;
use super::db::{self, Head};
use super::scan;
use super::tree::{self, Hash};
use crate::crypto::note::{Note, VerifierKey, parse_checkpoint};
use crate::store::{Conn, Store, on_conn};

/// A proof request that cannot be answered as asked (the caller's mistake).
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// A parameter is out of range; names the parameter.
    #[error("{message}")]
    Invalid {
        /// The parameter at fault.
        parameter: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<sqlx::Error> for ProofError {
    fn from(e: sqlx::Error) -> Self {
        Self::Log(e.into())
    }
}

impl From<crate::store::StoreError> for ProofError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Log(e.into())
    }
}

impl From<crate::store::StoreError> for CosignError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Log(e.into())
    }
}

fn invalid(parameter: &'static str, message: impl Into<String>) -> ProofError {
    ProofError::Invalid {
        parameter,
        message: message.into(),
    }
}

/// An inclusion proof (RFC 6962 audit path), hashes in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The leaf hash (base64).
    pub leaf_hash: String,
    /// The audit path, from the leaf up (base64).
    pub hashes: Vec<String>,
}

/// A consistency proof (RFC 6962), hashes in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The proof (base64).
    pub hashes: Vec<String>,
}

fn b64(h: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

fn corrupt(why: impl Into<String>) -> LogError {
    LogError::Corrupt {
        seq: 0,
        why: why.into(),
    }
}

fn i64_of(n: u64) -> Result<i64, LogError> {
    i64::try_from(n).map_err(|_| LogError::Invalid("index out of range".into()))
}

/// Stored tree hashes by index.
pub(super) async fn nodes(c: &mut Conn<'_>, idx: &[u64]) -> Result<HashMap<u64, Hash>, LogError> {
    let mut out = HashMap::with_capacity(idx.len());
    for chunk in idx.chunks(256) {
        let mut sql = String::from("SELECT idx, hash FROM audit_tree WHERE idx IN (");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", i + 1));
        }
        sql.push(')');
        let binds: Vec<i64> = chunk.iter().map(|i| i64_of(*i)).collect::<Result<_, _>>()?;
        // Built from constant fragments and numbered placeholders only; values are bound.
        let rows: Vec<(i64, Vec<u8>)> = on_conn!(c, |c| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for b in &binds {
                q = q.bind(*b);
            }
            q.fetch_all(c).await
        })?;
        for (i, h) in rows {
            let i = u64::try_from(i).map_err(|_| corrupt("negative tree index"))?;
            let h: Hash = h
                .as_slice()
                .try_into()
                .map_err(|_| corrupt(format!("tree hash {i} is malformed")))?;
            out.insert(i, h);
        }
    }
    Ok(out)
}

async fn ranges_hashes(c: &mut Conn<'_>, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, LogError> {
    let found = nodes(c, &tree::indexes_for(ranges)).await?;
    let get = |i: u64| found.get(&i).copied();
    ranges
        .iter()
        .map(|(lo, hi)| {
            tree::range_hash(*lo, *hi, &get).ok_or_else(|| {
                corrupt(format!("the stored tree lacks hashes of leaves {lo}..{hi}"))
            })
        })
        .collect()
}

/// The current tree size.
pub async fn tree_size(store: &Store) -> Result<u64, LogError> {
    let mut pooled = store.acquire().await?;
    Ok(db::read_full_head(&mut pooled.conn()).await?.tree.size())
}

/// The sequence number before the tree's first leaf: leaf `i` is entry `tree_base + 1 + i`.
pub async fn tree_base(store: &Store) -> Result<u64, LogError> {
    let mut pooled = store.acquire().await?;
    Ok(db::read_full_head(&mut pooled.conn()).await?.tree_base)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (a size the log has
/// reached; take it from a signed checkpoint).
pub async fn inclusion_proof(
    store: &Store,
    index: u64,
    size: u64,
) -> Result<InclusionProof, ProofError> {
    let mut pooled = store.acquire().await?;
    let mut c = pooled.conn();
    let head = db::read_full_head(&mut c).await?;
    check_size("size", size, &head)?;
    if index >= size {
        return Err(invalid(
            "index",
            format!("leaf index {index} is not in a tree of {size} leaves (indexes start at 0)"),
        ));
    }
    let ranges = tree::inclusion_ranges(index, size);
    let mut all = ranges.clone();
    all.push((index, index + 1));
    let hashes = ranges_hashes(&mut c, &all).await?;
    let (leaf, path) = hashes.split_last().ok_or_else(|| corrupt("empty proof"))?;
    Ok(InclusionProof {
        index,
        size,
        leaf_hash: b64(leaf),
        hashes: path.iter().map(b64).collect(),
    })
}

fn check_size(parameter: &'static str, size: u64, head: &Head) -> Result<(), ProofError> {
    if size == 0 {
        return Err(invalid(parameter, "a tree size is at least 1"));
    }
    if size > head.tree.size() {
        return Err(invalid(
            parameter,
            format!(
                "the log's tree has {} leaves; ask for a size it has reached (from a signed \
                 checkpoint)",
                head.tree.size()
            ),
        ));
    }
    Ok(())
}

/// The consistency proof from the tree of `from` leaves to the tree of `to` leaves.
pub async fn consistency_proof(
    store: &Store,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, ProofError> {
    let mut pooled = store.acquire().await?;
    let mut c = pooled.conn();
    let head = db::read_full_head(&mut c).await?;
    check_size("to", to, &head)?;
    if from == 0 || from > to {
        return Err(invalid(
            "from",
            format!("`from` must be 1 to `to` ({to}): the size of the older checkpoint"),
        ));
    }
    let hashes = ranges_hashes(&mut c, &tree::consistency_ranges(from, to)).await?;
    Ok(ConsistencyProof {
        from,
        to,
        hashes: hashes.iter().map(b64).collect(),
    })
}

/// The root of the stored tree of `size` leaves.
pub async fn root_at(store: &Store, size: u64) -> Result<Hash, LogError> {
    let mut pooled = store.acquire().await?;
    let mut c = pooled.conn();
    if size == 0 {
        return Ok(tree::empty_root());
    }
    ranges_hashes(&mut c, &[(0, size)])
        .await?
        .pop()
        .ok_or_else(|| corrupt("empty root"))
}

type CheckpointRow = (i64, Vec<u8>, i64, String);

fn to_checkpoint(r: CheckpointRow) -> Result<TreeCheckpoint, LogError> {
    Ok(TreeCheckpoint {
        size: u64::try_from(r.0).map_err(|_| corrupt("negative checkpoint size"))?,
        root: r
            .1
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("malformed checkpoint root"))?,
        at_us: r.2,
        note: r.3,
    })
}

/// Every signed tree head, ascending by size.
pub async fn tree_checkpoints(c: &mut Conn<'_>) -> Result<Vec<TreeCheckpoint>, LogError> {
    let rows: Vec<CheckpointRow> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT tree_size, root_hash, at_us, note FROM audit_tree_checkpoints \
             ORDER BY tree_size",
        )
        .fetch_all(c)
        .await
    })?;
    rows.into_iter().map(to_checkpoint).collect()
}

/// The newest signed tree head.
pub async fn latest_tree_checkpoint(c: &mut Conn<'_>) -> Result<Option<TreeCheckpoint>, LogError> {
    let row: Option<CheckpointRow> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT tree_size, root_hash, at_us, note FROM audit_tree_checkpoints \
             ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(c)
        .await
    })?;
    row.map(to_checkpoint).transpose()
}

/// The signed tree head of `size` leaves, if one was issued.
pub async fn tree_checkpoint(
    c: &mut Conn<'_>,
    size: u64,
) -> Result<Option<TreeCheckpoint>, LogError> {
    let size = i64_of(size)?;
    let row: Option<CheckpointRow> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT tree_size, root_hash, at_us, note FROM audit_tree_checkpoints \
             WHERE tree_size = $1",
        )
        .bind(size)
        .fetch_optional(c)
        .await
    })?;
    row.map(to_checkpoint).transpose()
}

/// A stored cosignature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCosignature {
    /// The tree size of the checkpoint cosigned.
    pub size: u64,
    /// The witness (partner id).
    pub witness: String,
    /// The cosignature's timestamp (POSIX seconds).
    pub cosigned_at: u64,
    /// The signature line, with its final newline.
    pub line: String,
}

/// The cosignatures of the checkpoint of `size` leaves, by witness.
pub async fn cosignatures(c: &mut Conn<'_>, size: u64) -> Result<Vec<StoredCosignature>, LogError> {
    let s = i64_of(size)?;
    let rows: Vec<(String, i64, String)> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT witness, cosigned_at, line FROM audit_cosignatures WHERE tree_size = $1 \
             ORDER BY witness",
        )
        .bind(s)
        .fetch_all(c)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(witness, at, line)| StoredCosignature {
            size,
            witness,
            cosigned_at: u64::try_from(at).unwrap_or(0),
            line,
        })
        .collect())
}

/// Every cosignature, ascending by tree size.
pub async fn all_cosignatures(c: &mut Conn<'_>) -> Result<Vec<StoredCosignature>, LogError> {
    let rows: Vec<(i64, String, i64, String)> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT tree_size, witness, cosigned_at, line FROM audit_cosignatures \
             ORDER BY tree_size, witness",
        )
        .fetch_all(c)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(size, witness, at, line)| StoredCosignature {
            size: u64::try_from(size).unwrap_or(0),
            witness,
            cosigned_at: u64::try_from(at).unwrap_or(0),
            line,
        })
        .collect())
}

/// A checkpoint's note with every cosignature the gateway holds for it appended.
pub fn with_cosignatures(checkpoint: &TreeCheckpoint, cosigs: &[StoredCosignature]) -> String {
    let mut text = checkpoint.note.clone();
    for c in cosigs {
        text.push_str(&c.line);
    }
    text
}

/// The newest signed tree head and its cosignatures.
pub async fn latest(
    store: &Store,
) -> Result<Option<(TreeCheckpoint, Vec<StoredCosignature>)>, LogError> {
    let mut pooled = store.acquire().await?;
    let mut c = pooled.conn();
    let Some(cp) = latest_tree_checkpoint(&mut c).await? else {
        return Ok(None);
    };
    let cosigs = cosignatures(&mut c, cp.size).await?;
    Ok(Some((cp, cosigs)))
}

/// Why a cosignature was refused.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// The body is not a signed note or not a checkpoint.
    #[error("{0}")]
    Malformed(String),
    /// The checkpoint was never issued by this gateway (or names another log).
    #[error("{0}")]
    UnknownCheckpoint(String),
    /// The note carries no valid cosignature by the witness's registered key.
    #[error("{0}")]
    NoCosignature(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What an accepted cosignature was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// The tree size cosigned.
    pub size: u64,
    /// The root hash cosigned (base64).
    pub root_hash: String,
    /// The cosignature's timestamp.
    pub cosigned_at: u64,
}

/// Checks a cosigned checkpoint posted by `witness` (a partner id) whose registered witness
/// key is `key`, and stores its cosignature: the checkpoint body must be exactly the body of a
/// checkpoint this gateway issued, and the note must carry a valid cosignature by `key`.
pub async fn accept_cosignature(
    store: &Store,
    origin: &str,
    witness: &str,
    key: &VerifierKey,
    note_text: &str,
    received_at_us: i64,
) -> Result<Accepted, CosignError> {
    let note = Note::parse(note_text).map_err(|e| CosignError::Malformed(e.to_string()))?;
    let (found_origin, head) =
        parse_checkpoint(&note.body).map_err(|e| CosignError::Malformed(e.to_string()))?;
    if found_origin != origin {
        return Err(CosignError::UnknownCheckpoint(format!(
            "the checkpoint names the log `{found_origin}`; this gateway's log is `{origin}`"
        )));
    }
    let mut pooled = store.acquire().await?;
    let mut c = pooled.conn();
    let issued = tree_checkpoint(&mut c, head.size).await?;
    let issued_body = issued
        .as_ref()
        .and_then(|cp| Note::parse(&cp.note).ok())
        .map(|n| n.body);
    if issued_body.as_deref() != Some(note.body.as_str()) {
        return Err(CosignError::UnknownCheckpoint(format!(
            "this gateway never issued a checkpoint of size {} with that root hash: only \
             cosign checkpoints fetched from GET /v1/audit/checkpoint",
            head.size
        )));
    }
    let Some(ts) = note.cosigned_by(key) else {
        return Err(CosignError::NoCosignature(format!(
            "the note carries no valid cosignature by `{}` (key id {:08x}), the witness key \
             registered for partner `{witness}`",
            key.name,
            key.id()
        )));
    };
    let line = note
        .signatures
        .iter()
        .find(|s| s.name == key.name && s.id == key.id())
        .map(|s| s.to_line())
        .unwrap_or_default();
    let size = i64_of(head.size)?;
    let ts_i = i64::try_from(ts).map_err(|_| LogError::Invalid("timestamp".into()))?;
    on_conn!(&mut c, |c| {
        sqlx::query(
            "INSERT INTO audit_cosignatures (tree_size, witness, cosigned_at, line, \
             received_at_us) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size, witness) \
             DO UPDATE SET cosigned_at = excluded.cosigned_at, line = excluded.line, \
             received_at_us = excluded.received_at_us \
             WHERE excluded.cosigned_at > audit_cosignatures.cosigned_at",
        )
        .bind(size)
        .bind(witness)
        .bind(ts_i)
        .bind(line.as_str())
        .bind(received_at_us)
        .execute(c)
        .await
        .map(|_| ())
    })
    .map_err(LogError::from)?;
    Ok(Accepted {
        size: head.size,
        root_hash: b64(&head.root),
        cosigned_at: ts,
    })
}

/// The result of checking the stored tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TreeVerification {
    /// The sequence number before the first leaf.
    pub tree_base: u64,
    /// Leaves checked.
    pub leaves: u64,
    /// Signed tree heads whose signature and root were checked.
    pub checkpoints_checked: usize,
    /// The newest tree size cosigned by every required witness, if any was required.
    pub witnessed_size: Option<u64>,
    /// The first problem found.
    pub failure: Option<String>,
    /// Tree heads a partner saved that were compared with the stored tree.
    #[serde(skip)]
    pub partner_heads_checked: usize,
}

/// Compares tree heads a partner saved (signatures already checked) with the stored tree,
/// which `tree` (a passed [`verify_tree`]) rebuilt and found consistent: the first problem, if
/// any. A head larger than the tree means entries the partner saw are gone (a rollback or a
/// truncation); another root at its size means the log was rewritten or forked.
pub(super) async fn check_partner_heads(
    c: &mut Conn<'_>,
    tree: &TreeVerification,
    heads: &[crate::crypto::note::TreeHead],
) -> Result<Option<String>, LogError> {
    let size = tree.leaves;
    for h in heads {
        if h.size > size {
            return Ok(Some(format!(
                "rolled back: a partner's signed checkpoint covers {} leaves (entry {}) but the \
                 tree has {size} (the log ends at entry {}): entries the partner saw are missing",
                h.size,
                tree.tree_base + h.size,
                tree.tree_base + size,
            )));
        }
        let root = if h.size == 0 {
            tree::empty_root()
        } else {
            ranges_hashes(c, &[(0, h.size)])
                .await?
                .pop()
                .ok_or_else(|| corrupt("empty root"))?
        };
        if root != h.root {
            return Ok(Some(format!(
                "a partner's signed checkpoint of {} leaves names another root than the stored \
                 tree: the log was rewritten or forked",
                h.size
            )));
        }
    }
    Ok(None)
}

fn fail_once(out: &mut TreeVerification, why: String) {
    if out.failure.is_none() {
        out.failure = Some(why);
    }
}

/// The stored tree rebuilt hash by hash, in index order: each leaf must be its entry's hash,
/// each interior hash the hash of its children, and each signed root the rebuilt one.
struct NodeCheck {
    out: TreeVerification,
    /// Signed roots not yet reached, by tree size.
    want: HashMap<u64, Hash>,
    frontier: tree::Frontier,
    next_idx: u64,
    /// Interior hashes completed by the last leaf, expected next in index order.
    pending: std::collections::VecDeque<(u64, Hash)>,
    /// The stored leaves, in order (compared with the entries' hashes once both are read).
    leaves: Vec<Hash>,
    /// The stored index at which the rebuild failed.
    failed_at: Option<u64>,
}

impl NodeCheck {
    /// Checks the next stored hash; `false` once a failure is found.
    fn feed(&mut self, idx: u64, hash: Hash) -> bool {
        if idx != self.next_idx {
            self.failed_at = Some(self.next_idx);
            fail_once(
                &mut self.out,
                format!("tree hash {} is missing", self.next_idx),
            );
            return false;
        }
        self.next_idx += 1;
        if let Some((want_idx, want_hash)) = self.pending.pop_front() {
            // An interior hash completed by the previous leaf.
            if want_idx != idx || want_hash != hash {
                self.failed_at = Some(idx);
                fail_once(
                    &mut self.out,
                    format!("stored tree hash {idx} is not the hash of its children"),
                );
                return false;
            }
            return true;
        }
        // A leaf.
        self.leaves.push(hash);
        let pending = &mut self.pending;
        self.frontier.push(hash, |i, h| {
            if i != idx {
                pending.push_back((i, h));
            }
        });
        self.out.leaves += 1;
        if let Some(root) = self.want.remove(&self.frontier.size()) {
            self.out.checkpoints_checked += 1;
            if root != self.frontier.root() {
                self.failed_at = Some(idx);
                fail_once(
                    &mut self.out,
                    format!(
                        "the signed checkpoint of size {} names another root than the stored \
                         tree: the log was rewritten",
                        self.frontier.size()
                    ),
                );
                return false;
            }
        }
        true
    }
}

/// Rebuilds the tree from its stored leaves and checks every stored interior hash, that the
/// leaves of the entries still stored are their entry hashes (`entry_leaves`: the first
/// leaf index they start at, and their hashes in order), every
/// signed tree head's signature (with `key`, under the name of the checkpoint's origin) and
/// root, and that the head's right edge is the
/// rebuilt one. `witnesses` are the required witnesses and their keys: the newest checkpoint
/// cosigned by all of them is reported, and none is a failure.
pub(super) async fn verify_tree(
    store: &Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    witnesses: &[(String, VerifierKey)],
) -> Result<TreePass, LogError> {
    let (head, checkpoints) = {
        let mut pooled = store.acquire().await?;
        let c = &mut pooled.conn();
        (db::read_full_head(c).await?, tree_checkpoints(c).await?)
    };
    let mut out = TreeVerification {
        tree_base: head.tree_base,
        ..TreeVerification::default()
    };
    let fail = fail_once;
    for cp in &checkpoints {
        let Ok(note) = Note::parse(&cp.note) else {
            fail(
                &mut out,
                format!("the signed checkpoint of size {} is malformed", cp.size),
            );
            continue;
        };
        let origin = note.body.split('\n').next().unwrap_or_default().to_owned();
        if let Some(k) = key
            && !note.signed_by(&VerifierKey {
                name: origin,
                kind: super::note::TYPE_ED25519,
                key: *k,
            })
        {
            fail(
                &mut out,
                format!(
                    "the signed checkpoint of size {} does not carry a valid signature of the \
                     log key",
                    cp.size
                ),
            );
        }
        match parse_checkpoint(&note.body) {
            Ok((_, h)) if h.size == cp.size && h.root == cp.root => {}
            _ => fail(
                &mut out,
                format!(
                    "the checkpoint of size {} does not state its own size and root",
                    cp.size
                ),
            ),
        }
    }
    let want: HashMap<u64, Hash> = checkpoints.iter().map(|c| (c.size, c.root)).collect();
    let check = NodeCheck {
        out,
        want,
        frontier: tree::Frontier::default(),
        next_idx: 0,
        pending: std::collections::VecDeque::new(),
        leaves: Vec::new(),
        failed_at: None,
    };
    let failed_before = check.out.failure.is_some();
    // The stored hashes of the head's tree (appends while it is read add hashes after them)
    // are read in one scan on one thread and rebuilt on another.
    let upto = i64::try_from(tree::stored_index(0, head.tree.size()))
        .map_err(|_| corrupt("tree size out of range"))?
        - 1;
    let mut rx = scan::scan_range::<scan::Nodes>(store, -1, upto);
    let check = tokio::task::spawn_blocking(move || {
        let mut check = check;
        while let Some(batch) = rx.blocking_recv() {
            for (idx, hash) in batch?.0 {
                if !check.feed(idx, hash) {
                    return Ok(check);
                }
            }
        }
        Ok::<_, LogError>(check)
    })
    .await
    .map_err(|e| LogError::Scan(format!("the verification thread failed: {e}")))??;
    let NodeCheck {
        mut out,
        want,
        frontier,
        pending,
        leaves,
        failed_at,
        ..
    } = check;
    if out.failure.is_none() {
        if !pending.is_empty() {
            fail(
                &mut out,
                "the stored tree ends in the middle of a subtree".into(),
            );
        } else if frontier != head.tree {
            fail(
                &mut out,
                format!(
                    "the head records a tree of {} leaves that the stored tree ({} leaves) \
                     does not give",
                    head.tree.size(),
                    frontier.size()
                ),
            );
        } else if let Some(size) = want.keys().min() {
            fail(
                &mut out,
                format!(
                    "a signed checkpoint covers {size} leaves but the tree has {}: the log was \
                     truncated",
                    frontier.size()
                ),
            );
        }
    }
    if !witnesses.is_empty() {
        let mut pooled = store.acquire().await?;
        let cosigs = all_cosignatures(&mut pooled.conn()).await?;
        let witnessed = checkpoints
            .iter()
            .rev()
            .find(|cp| {
                let Ok(note) = Note::parse(&with_cosignatures(
                    cp,
                    &cosigs
                        .iter()
                        .filter(|s| s.size == cp.size)
                        .cloned()
                        .collect::<Vec<_>>(),
                )) else {
                    return false;
                };
                witnesses.iter().all(|(_, k)| note.cosigned_by(k).is_some())
            })
            .map(|cp| cp.size);
        out.witnessed_size = witnessed;
        if witnessed.is_none() {
            let names: Vec<&str> = witnesses.iter().map(|(n, _)| n.as_str()).collect();
            fail(
                &mut out,
                format!(
                    "no signed checkpoint carries valid cosignatures of every required witness \
                     ({})",
                    names.join(", ")
                ),
            );
        }
    }
    Ok(TreePass {
        out,
        failed_before,
        failed_at,
        leaves,
    })
}

/// A verified stored tree whose leaves are still to be compared with the entries' hashes
/// (the chain is read at the same time, on other threads).
pub(super) struct TreePass {
    out: TreeVerification,
    /// Whether a signed tree head failed before the stored hashes were read.
    failed_before: bool,
    /// The stored index at which the rebuild failed.
    failed_at: Option<u64>,
    /// The stored leaves, in order.
    leaves: Vec<Hash>,
}

impl TreePass {
    /// The tree's verification once each stored leaf is compared with its entry's hash
    /// (`entry_leaves`: the leaf index of the first stored entry and the stored entries'
    /// hashes in order, from the chain's verification). A leaf that is not its entry's hash
    /// is the failure if it comes before whatever else failed, in the order of the stored
    /// hashes.
    pub(super) fn with_entries(self, entry_leaves: (u64, &[Hash])) -> TreeVerification {
        let TreePass {
            mut out,
            failed_before,
            failed_at,
            leaves,
        } = self;
        let (first_leaf, entries) = entry_leaves;
        let stored = usize::try_from(first_leaf)
            .ok()
            .and_then(|k| leaves.get(k..))
            .unwrap_or_default();
        let mismatch = stored
            .iter()
            .zip(entries)
            .position(|(leaf, entry)| leaf != entry)
            .map(|k| first_leaf + k as u64);
        if let Some(leaf) = mismatch
            && !failed_before
            && failed_at.is_none_or(|at| tree::stored_index(0, leaf) < at)
        {
            out.leaves = leaf;
            out.failure = Some(format!(
                "leaf {leaf} (entry {}) is not that entry's hash",
                out.tree_base + 1 + leaf
            ));
        }
        out
    }
}

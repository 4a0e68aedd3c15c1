//! Retention: removing entries older than the retention period, never beyond a verified
//! signed checkpoint.
//!
//! A purge first verifies the whole log (hashes, links, checkpoint signatures). It then picks
//! the newest checkpoint `C` such that every entry up to `C` is older than the cutoff, deletes
//! entries up to `C` and appends a `log_purged` entry, in one transaction holding the chain
//! lock. The remaining chain is anchored at checkpoint `C`, whose signature proves the hash
//! the first remaining entry links to.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::entry::{EntryKind, NewEntry, Outcome};
use super::{DisclosureLog, LogError, checkpoint, db, verify_store};
use crate::store::on_conn;

/// What a purge did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Entries older than this were eligible (RFC 3339).
    pub cutoff: String,
    /// The checkpoint the chain is anchored at after the purge.
    pub anchor_checkpoint: Option<u64>,
    /// First and last sequence number removed.
    pub removed: Option<(u64, u64)>,
    /// Sequence number of the `log_purged` entry.
    pub purge_entry: Option<u64>,
    /// Why nothing was removed, if nothing was.
    pub note: Option<String>,
}

/// Purges entries older than the configured retention period at `now`.
pub async fn purge(
    log: &DisclosureLog,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PurgeReport, LogError> {
    let days = i64::from(log.settings().retention_days);
    let cutoff = now - chrono::Duration::days(days);
    let cutoff_us = cutoff.timestamp_micros();
    let mut report = PurgeReport {
        cutoff: super::query::rfc3339(&cutoff),
        anchor_checkpoint: None,
        removed: None,
        purge_entry: None,
        note: None,
    };
    let Some(key) = log.checkpoint_key() else {
        report.note = Some("no checkpoint key is configured: nothing can be purged".into());
        return Ok(report);
    };
    let mut pooled = log.store().acquire().await?;
    let mut c = pooled.conn();
    let Some(first) = db::first_seq(&mut c).await? else {
        report.note = Some("the log is empty".into());
        return Ok(report);
    };
    // Every entry up to `last_old` is older than the cutoff.
    let newer: (Option<i64>,) = on_conn!(&mut c, |c| {
        sqlx::query_as("SELECT MIN(seq) FROM audit_log WHERE at_us >= $1")
            .bind(cutoff_us)
            .fetch_one(c)
            .await
    })?;
    let last_old = match newer.0 {
        Some(s) => u64::try_from(s).unwrap_or(0).saturating_sub(1),
        None => db::read_head(&mut c).await?.0,
    };
    let anchor = db::checkpoints(&mut c)
        .await?
        .into_iter()
        .filter(|c| c.seq >= first && c.seq <= last_old)
        .filter(|c| checkpoint::verify_checkpoint(&key, c))
        .max_by_key(|c| c.seq);
    let Some(anchor) = anchor else {
        report.note = Some(
            "no verified checkpoint covers entries older than the cutoff: nothing purged".into(),
        );
        return Ok(report);
    };
    let verification = verify_store(log.store(), Some(&key), None).await?;
    if let Some(f) = &verification.summary.failure {
        return Err(LogError::Corrupt {
            seq: f.seq,
            why: format!("purge refused, the log does not verify: {f}"),
        });
    }
    report.anchor_checkpoint = Some(anchor.seq);
    report.removed = Some((first, anchor.seq));
    drop(pooled);
    if dry_run {
        return Ok(report);
    }
    let anchor_seq = i64::try_from(anchor.seq).unwrap_or(i64::MAX);
    let mut tx = log.begin().await?;
    // The checkpoint must still name the stored entry (checked under the chain lock).
    let at: Option<(Vec<u8>,)> = on_conn!(&mut tx.conn(), |c| {
        sqlx::query_as("SELECT entry_hash FROM audit_log WHERE seq = $1")
            .bind(anchor_seq)
            .fetch_optional(c)
            .await
    })?;
    if at.map(|r| r.0).as_deref() != Some(&anchor.head_hash.0[..]) {
        return Err(LogError::Corrupt {
            seq: anchor.seq,
            why: "purge refused: the checkpoint no longer matches its entry".into(),
        });
    }
    on_conn!(&mut tx.conn(), |c| {
        sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(anchor_seq)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    let mut entry = NewEntry::new(EntryKind::LogPurged, now, Outcome::Permit);
    entry.detail = Some(format!(
        "retention of {days} days: removed entries {first} to {}, older than {}; the chain is \
         anchored at signed checkpoint {}",
        anchor.seq, report.cutoff, anchor.seq
    ));
    let seq = tx.append(entry).await?;
    tx.commit().await?;
    report.purge_entry = Some(seq);
    Ok(report)
}

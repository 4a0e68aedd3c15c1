//! Policy changes (CJIS AU-2): every policy set the gateway loads, at start-up and on `SIGHUP`,
//! is recorded with what it changes, and compliance officers read the changes.
//!
//! Recording a load, in one transaction of the disclosure log:
//!
//! 1. the new set's files go to `policy_sets` under its hash (once per hash);
//! 2. the set it replaces is the one this gateway was running (on reload), or the one the
//!    database last recorded (at start-up, so a set edited while the gateway was stopped is
//!    compared with the set it ran before); the two are compared over every flow
//!    ([`crate::policy::diff`]);
//! 3. a `policy_reloaded` entry records the old and new hashes, the counts by change type and
//!    the SHA-256 of the full diff, and the diff is kept in `policy_changes` under the entry's
//!    sequence number.
//!
//! Only after that commits is the new set put in force: a set whose change cannot be recorded
//! is not used (start-up fails; a reload is refused and the running set kept). Reading a change
//! checks the stored diff against the digest in its hash-chained entry.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::instrument;

use super::{Caller, Error, Services, log_error};
use crate::audit::{EntryKind, NewEntry, Outcome, query};
use crate::domain::Code;
use crate::policy::diff::{self, PolicyDiff, ReportChange, Summary};
use crate::policy::{PolicyFiles, PolicySet};
use crate::store::policy_changes::{self, PolicyChangeRow};

/// What made the gateway load a policy set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadTrigger {
    /// The gateway started.
    StartUp,
    /// `SIGHUP` (or an operator's reload).
    Reload,
}

impl LoadTrigger {
    /// `start-up` or `reload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartUp => "start-up",
            Self::Reload => "reload",
        }
    }
}

/// The summary kept with a change (and its counts in the log entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    /// Counts by change type (all zero when nothing changed or nothing could be compared).
    #[serde(flatten)]
    pub counts: Summary,
    /// Whether the two sets were compared.
    pub compared: bool,
    /// Why they were not, or that they are the same set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The report definitions added, removed or changed (the full diff says how).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ReportBrief>,
}

/// A report definition that a change added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportBrief {
    /// The report's id.
    pub report: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// Whether the change widens the report (more runners, published, reads more, weaker
    /// privacy protection).
    pub widens: bool,
    /// What differs: `runners`, `release`, `privacy`, `reads`, `basis`, `table <id>`, ...
    pub aspects: Vec<String>,
}

impl ReportBrief {
    fn of(c: &ReportChange) -> Self {
        Self {
            report: c.report.clone(),
            change: c.change.as_str().to_owned(),
            widens: c.widens,
            aspects: c.aspects.iter().map(|a| a.aspect.clone()).collect(),
        }
    }
}

/// A recorded policy change.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyChange {
    /// The sequence number of its `policy_reloaded` entry.
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// `start-up` or `reload`.
    pub trigger: String,
    /// The hash of the set before.
    pub previous_hash: Option<String>,
    /// The hash of the set loaded.
    pub new_hash: String,
    /// Counts by change type.
    pub summary: ChangeSummary,
    /// The full diff (only when one change is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<serde_json::Value>,
}

fn change_from_row(row: PolicyChangeRow) -> Result<PolicyChange, Error> {
    let summary: ChangeSummary = serde_json::from_str(&row.summary)
        .map_err(|e| Error::internal(format!("policy change {}: summary: {e}", row.seq)))?;
    let diff = row
        .diff
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| Error::internal(format!("policy change {}: diff: {e}", row.seq)))?;
    Ok(PolicyChange {
        seq: u64::try_from(row.seq).unwrap_or_default(),
        at: DateTime::from_timestamp_micros(row.at_us).unwrap_or_default(),
        trigger: row.trigger,
        previous_hash: row.previous_hash,
        new_hash: row.new_hash,
        summary,
        diff,
    })
}

/// `report definitions: engagement changed (runners; widens), ...`, or `None`.
fn report_line(reports: &[ReportBrief]) -> Option<String> {
    if reports.is_empty() {
        return None;
    }
    let parts: Vec<String> = reports
        .iter()
        .map(|r| {
            let mut s = format!("{} {}", r.report, r.change);
            match (r.aspects.is_empty() || r.change != "changed", r.widens) {
                (true, true) => s.push_str(" (widens)"),
                (true, false) => {}
                (false, w) => {
                    s.push_str(&format!(
                        " ({}{})",
                        r.aspects.join(", "),
                        if w { "; widens" } else { "" }
                    ));
                }
            }
            s
        })
        .collect();
    Some(format!("report definitions: {}", parts.join(", ")))
}

/// The digest of a stored diff, as its log entry names it.
fn digest(diff_json: &str) -> String {
    hex::encode(Sha256::digest(diff_json.as_bytes()))
}

impl Services {
    /// Records that `new` is being loaded (see the module documentation), comparing it with
    /// `running` (on reload) or with the set the database recorded last (at start-up, `None`).
    /// The caller puts `new` in force only if this succeeds.
    #[instrument(skip_all, fields(trigger = trigger.as_str()))]
    pub async fn record_policy_load(
        &self,
        new: &Arc<PolicySet>,
        running: Option<Arc<PolicySet>>,
        trigger: LoadTrigger,
    ) -> Result<PolicyChange, Error> {
        let now = self.now();
        let previous: Option<(String, Result<Arc<PolicySet>, String>)> = match running {
            Some(set) => Some((set.hash.clone(), Ok(set))),
            None => {
                let mut pooled = self.store.acquire().await?;
                let mut c = pooled.conn();
                match policy_changes::latest(&mut c).await? {
                    None => None,
                    Some(last) if last.new_hash == new.hash => {
                        Some((last.new_hash, Ok(Arc::clone(new))))
                    }
                    Some(last) => {
                        let files = policy_changes::get_set(&mut c, &last.new_hash).await?;
                        let set = match files {
                            None => Err("the database holds no copy of it".to_owned()),
                            Some(json) => {
                                PolicyFiles::from_json(&json, &last.new_hash).and_then(|f| {
                                    PolicySet::from_files(f, now)
                                        .map(|(s, _)| Arc::new(s))
                                        .map_err(|e| format!("this build cannot read it: {e}"))
                                })
                            }
                        };
                        Some((last.new_hash, set))
                    }
                }
            }
        };
        let (previous_hash, summary, diff_json) = match previous {
            None => (
                None,
                ChangeSummary {
                    counts: Summary::default(),
                    compared: false,
                    note: Some("the first policy set recorded in this database".into()),
                    reports: Vec::new(),
                },
                None,
            ),
            Some((hash, Ok(old))) if old.hash == new.hash => (
                Some(hash),
                ChangeSummary {
                    counts: Summary::default(),
                    compared: true,
                    note: Some("the same policy set as before".into()),
                    reports: Vec::new(),
                },
                None,
            ),
            Some((hash, Ok(old))) => {
                let new_set = Arc::clone(new);
                let computed = tokio::task::spawn_blocking(move || diff::diff(&old, &new_set, now))
                    .await
                    .map_err(|e| Error::internal(format!("policy diff: {e}")))?;
                match computed {
                    Ok(d) => {
                        let json = serde_json::to_string(&d)
                            .map_err(|e| Error::internal(format!("policy diff: {e}")))?;
                        (
                            Some(hash),
                            ChangeSummary {
                                counts: d.summary,
                                compared: true,
                                note: None,
                                reports: d.reports.iter().map(ReportBrief::of).collect(),
                            },
                            Some(json),
                        )
                    }
                    Err(e) => (
                        Some(hash),
                        ChangeSummary {
                            counts: Summary::default(),
                            compared: false,
                            note: Some(format!("the sets could not be compared: {e}")),
                            reports: Vec::new(),
                        },
                        None,
                    ),
                }
            }
            Some((hash, Err(why))) => (
                Some(hash),
                ChangeSummary {
                    counts: Summary::default(),
                    compared: false,
                    note: Some(format!("the previous set could not be compared: {why}")),
                    reports: Vec::new(),
                },
                None,
            ),
        };
        let mut detail = format!(
            "{}: policy set {} -> {}; ",
            trigger.as_str(),
            previous_hash.as_deref().unwrap_or("none"),
            new.hash
        );
        if summary.compared && summary.note.is_none() {
            detail.push_str(&summary.counts.line());
            if let Some(line) = report_line(&summary.reports) {
                detail.push_str("; ");
                detail.push_str(&line);
            }
        } else if let Some(note) = &summary.note {
            detail.push_str(note);
        }
        if let Some(json) = &diff_json {
            detail.push_str(&format!("; full diff sha256 {}", digest(json)));
        }
        let mut entry = NewEntry::new(EntryKind::PolicyReloaded, now, Outcome::Permit);
        entry.policy_hash = Some(new.hash.clone());
        entry.detail = Some(detail);
        let summary_json = serde_json::to_string(&summary)
            .map_err(|e| Error::internal(format!("policy change summary: {e}")))?;
        let mut tx = self.log.begin().await.map_err(log_error)?;
        policy_changes::insert_set(
            &mut tx.conn(),
            &new.hash,
            &new.files.to_json(),
            now.timestamp_micros(),
        )
        .await?;
        let seq = tx.append(entry).await.map_err(log_error)?;
        policy_changes::insert_change(
            &mut tx.conn(),
            &PolicyChangeRow {
                seq: crate::store::to_i64(seq, "sequence number")?,
                at_us: now.timestamp_micros(),
                trigger: trigger.as_str().to_owned(),
                previous_hash: previous_hash.clone(),
                new_hash: new.hash.clone(),
                summary: summary_json,
                diff: diff_json,
            },
        )
        .await?;
        tx.commit().await.map_err(log_error)?;
        tracing::info!(
            target: "policy",
            seq,
            previous = previous_hash.as_deref().unwrap_or("none"),
            new = %new.hash,
            newly_revealed = summary.counts.newly_revealed,
            newly_withheld = summary.counts.newly_withheld,
            transform_changed = summary.counts.transform_changed,
            "policy set loaded and recorded"
        );
        Ok(PolicyChange {
            seq,
            at: now,
            trigger: trigger.as_str().to_owned(),
            previous_hash,
            new_hash: new.hash.clone(),
            summary,
            diff: None,
        })
    }

    /// Recorded policy changes, newest first: `GET /v1/policy/changes`.
    #[instrument(skip_all)]
    pub async fn policy_changes(
        &self,
        caller: &Caller<'_>,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<PolicyChange>, Error> {
        self.authorize_compliance(caller, "list policy changes")
            .await?;
        let rows = {
            let mut pooled = self.store.acquire().await?;
            let before = before
                .map(|b| crate::store::to_i64(b, "cursor"))
                .transpose()?;
            policy_changes::list(&mut pooled.conn(), before, i64::from(limit)).await?
        };
        let list = rows
            .into_iter()
            .map(change_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut e = self.read_entry(
            caller,
            Outcome::Permit,
            format!("listed {} policy change(s)", list.len()),
        );
        e.kind = EntryKind::DirectiveRead;
        self.log.append(e).await.map_err(log_error)?;
        Ok(list)
    }

    /// One policy change with its full diff: `GET /v1/policy/changes/{seq}`. The stored diff
    /// must match the digest its hash-chained log entry names.
    #[instrument(skip_all)]
    pub async fn policy_change(
        &self,
        caller: &Caller<'_>,
        seq: u64,
    ) -> Result<PolicyChange, Error> {
        self.authorize_compliance(caller, "read a policy change")
            .await?;
        let (row, entry) = {
            let mut pooled = self.store.acquire().await?;
            let mut c = pooled.conn();
            let row =
                policy_changes::get(&mut c, crate::store::to_i64(seq, "sequence number")?).await?;
            let entry = query::get(&mut c, seq).await?;
            (row, entry)
        };
        // The digest is in the entry's detail, which is sealed.
        let mut entry = entry;
        if let Some(e) = entry.as_mut() {
            self.open_entries(std::slice::from_mut(e))?;
        }
        let mut e = self.read_entry(
            caller,
            Outcome::Permit,
            format!(
                "read policy change {seq}{}",
                if row.is_some() { "" } else { " (not found)" }
            ),
        );
        e.kind = EntryKind::DirectiveRead;
        self.log.append(e).await.map_err(log_error)?;
        let Some(row) = row else {
            return Err(Error::not_found(
                Code::PolicyChangeNotFound,
                format!(
                    "no policy change is recorded under entry {seq}; list them with `GET \
                     /v1/policy/changes`"
                ),
            ));
        };
        let detail = entry.as_ref().and_then(|e| e.data.detail.clone());
        let claimed = detail
            .as_deref()
            .and_then(|d| d.split("full diff sha256 ").nth(1))
            .map(|h| h.trim().to_owned());
        let stored = row.diff.as_deref().map(digest);
        let genuine = entry
            .as_ref()
            .is_some_and(|e| e.data.kind == EntryKind::PolicyReloaded)
            && claimed == stored;
        if !genuine {
            tracing::error!(
                alert = "policy_change_integrity",
                seq,
                "stored policy diff does not match its log entry"
            );
            return Err(Error::internal(format!(
                "policy change {seq}: the stored diff does not match the digest in its log entry"
            )));
        }
        change_from_row(row)
    }

    /// The diff between the set recorded before change `seq` and the set it loaded, computed
    /// again from the stored files (for tools and tests).
    pub async fn recompute_policy_diff(&self, seq: u64) -> Result<Option<PolicyDiff>, Error> {
        let mut pooled = self.store.acquire().await?;
        let mut c = pooled.conn();
        let Some(row) =
            policy_changes::get(&mut c, crate::store::to_i64(seq, "sequence number")?).await?
        else {
            return Ok(None);
        };
        let Some(prev) = row.previous_hash else {
            return Ok(None);
        };
        let load = |json: Option<String>, hash: &str| -> Result<PolicySet, Error> {
            let json = json.ok_or_else(|| Error::internal(format!("no stored set {hash}")))?;
            let files = PolicyFiles::from_json(&json, hash).map_err(Error::internal)?;
            PolicySet::from_files(files, self.now())
                .map(|(s, _)| s)
                .map_err(|e| Error::internal(format!("stored set {hash}: {e}")))
        };
        let old = load(policy_changes::get_set(&mut c, &prev).await?, &prev)?;
        let new = load(
            policy_changes::get_set(&mut c, &row.new_hash).await?,
            &row.new_hash,
        )?;
        let at = DateTime::from_timestamp_micros(row.at_us).unwrap_or_default();
        diff::diff(&old, &new, at)
            .map(Some)
            .map_err(|e| Error::internal(e.to_string()))
    }
}

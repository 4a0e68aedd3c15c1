//! Queries over the log for compliance officers: filtered, newest first, paginated by
//! sequence number. Reports never change the log's content or order (CJIS AU-7).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::db::{self, COLUMNS, LogRow};
use super::entry::{Entry, EntryKind, FieldDisclosure, LegalBasis, RecordRef};
use super::{LogError, SubjectPseudonym};
use crate::store::{Conn, on_conn};

/// Largest page.
pub const MAX_LIMIT: u32 = 500;

/// A log query. Every filter is optional; set ones are combined with AND.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Entry kinds (empty: every kind).
    pub kinds: Vec<EntryKind>,
    /// The subject.
    pub subject: Option<SubjectPseudonym>,
    /// Further pseudonyms of the same person (other identifiers): with `subject`, an entry
    /// matches if its subject is any of them.
    pub also_subjects: Vec<SubjectPseudonym>,
    /// Recipient partner id.
    pub recipient: Option<String>,
    /// Recipient user id.
    pub user: Option<String>,
    /// Purpose of use.
    pub purpose: Option<String>,
    /// Basis kind: `mou`, `consent` or `emergency`.
    pub basis: Option<String>,
    /// Outcome: `permit` or `deny`.
    pub outcome: Option<String>,
    /// Earliest time, inclusive (Unix microseconds).
    pub since_us: Option<i64>,
    /// Latest time, inclusive (Unix microseconds).
    pub until_us: Option<i64>,
    /// Only entries with a smaller sequence number (the cursor).
    pub before_seq: Option<u64>,
    /// Page size (1 to [`MAX_LIMIT`]).
    pub limit: u32,
}

enum Bind {
    I(i64),
    S(String),
    B(Vec<u8>),
}

/// Entries matching `filter`, newest first, at most `filter.limit`.
pub async fn list(c: &mut Conn<'_>, filter: &Filter) -> Result<Vec<Entry>, LogError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    if !filter.kinds.is_empty() {
        let mut parts = Vec::new();
        for k in &filter.kinds {
            binds.push(Bind::S(k.as_str().to_owned()));
            parts.push(format!("kind = ${}", binds.len()));
        }
        clauses.push(format!("({})", parts.join(" OR ")));
    }
    if let Some(s) = &filter.subject {
        let mut parts = Vec::new();
        for p in std::iter::once(s).chain(filter.also_subjects.iter().filter(|p| *p != s)) {
            binds.push(Bind::B(p.as_bytes().to_vec()));
            parts.push(format!("subject = ${}", binds.len()));
        }
        clauses.push(format!("({})", parts.join(" OR ")));
    }
    let mut add = |clause: &str, b: Bind| {
        binds.push(b);
        clauses.push(clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(r) = &filter.recipient {
        add("recipient_partner = ?", Bind::S(r.clone()));
    }
    if let Some(u) = &filter.user {
        add("recipient_user = ?", Bind::S(u.clone()));
    }
    if let Some(p) = &filter.purpose {
        add("purpose = ?", Bind::S(p.clone()));
    }
    if let Some(b) = &filter.basis {
        add("basis_kind = ?", Bind::S(b.clone()));
    }
    if let Some(o) = &filter.outcome {
        add("outcome = ?", Bind::S(o.clone()));
    }
    if let Some(t) = filter.since_us {
        add("at_us >= ?", Bind::I(t));
    }
    if let Some(t) = filter.until_us {
        add("at_us <= ?", Bind::I(t));
    }
    if let Some(s) = filter.before_seq {
        add("seq < ?", Bind::I(i64::try_from(s).unwrap_or(i64::MAX)));
    }
    let limit = filter.limit.clamp(1, MAX_LIMIT);
    let mut sql = format!("SELECT {COLUMNS} FROM audit_log");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
    // Built from constant fragments and numbered placeholders only; values are bound.
    let rows: Vec<LogRow> = on_conn!(c, |c| {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = match b {
                Bind::I(i) => q.bind(i),
                Bind::S(s) => q.bind(s),
                Bind::B(b) => q.bind(b),
            };
        }
        q.fetch_all(c).await
    })?;
    rows.into_iter().map(db::row_to_entry).collect()
}

/// Entries matching `filter` in ascending order, all pages (for accounting).
pub async fn list_all_ascending(c: &mut Conn<'_>, filter: &Filter) -> Result<Vec<Entry>, LogError> {
    let mut out = Vec::new();
    let mut f = filter.clone();
    f.limit = MAX_LIMIT;
    loop {
        let page = list(c, &f).await?;
        let done = page.len() < MAX_LIMIT as usize;
        f.before_seq = page.last().map(|e| e.seq);
        out.extend(page);
        if done || f.before_seq.is_none() {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// One entry by sequence number.
pub async fn get(c: &mut Conn<'_>, seq: u64) -> Result<Option<Entry>, LogError> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let row: Option<LogRow> = on_conn!(c, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq = $1"
        )))
        .bind(seq)
        .fetch_optional(c)
        .await
    })?;
    row.map(db::row_to_entry).transpose()
}

/// The JSON form of an entry.
#[derive(Debug, Serialize)]
pub struct EntryView<'a> {
    /// Sequence number.
    pub seq: u64,
    /// RFC 3339 time, UTC, microseconds.
    pub at: String,
    /// Entry kind.
    pub kind: EntryKind,
    /// Request id.
    pub request_id: Option<&'a str>,
    /// Decision id.
    pub decision_id: Option<&'a str>,
    /// Policy-set hash.
    pub policy_hash: Option<&'a str>,
    /// Recipient partner.
    pub recipient_partner: Option<&'a str>,
    /// Recipient user.
    pub recipient_user: Option<&'a str>,
    /// Recipient role.
    pub recipient_role: Option<&'a str>,
    /// Purpose.
    pub purpose: Option<&'a str>,
    /// Legal basis.
    pub basis: Option<&'a LegalBasis>,
    /// Justification.
    pub justification: Option<&'a str>,
    /// Subject pseudonym (hex).
    pub subject: Option<String>,
    /// Record.
    pub record: Option<&'a RecordRef>,
    /// Fields disclosed.
    pub fields_disclosed: &'a [FieldDisclosure],
    /// Count of fields withheld.
    pub fields_withheld: u32,
    /// `permit` or `deny`.
    pub outcome: &'static str,
    /// Reason code of a denial.
    pub reason: Option<&'a str>,
    /// Source address.
    pub source_addr: Option<&'a str>,
    /// Client certificate SHA-256.
    pub cert_sha256: Option<&'a str>,
    /// Detail.
    pub detail: Option<&'a str>,
    /// For a permitted disclosure: why each field left, fields with the same reasons grouped
    /// (read from `detail`, see [`super::reasons`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_reasons: Option<Vec<super::reasons::ReasonGroup>>,
    /// Previous hash.
    pub prev_hash: String,
    /// Entry hash.
    pub hash: String,
}

/// RFC 3339 with microseconds.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl<'a> From<&'a Entry> for EntryView<'a> {
    fn from(e: &'a Entry) -> Self {
        let d = &e.data;
        Self {
            seq: e.seq,
            at: rfc3339(&d.at),
            kind: d.kind,
            request_id: d.request_id.as_deref(),
            decision_id: d.decision_id.as_deref(),
            policy_hash: d.policy_hash.as_deref(),
            recipient_partner: d.recipient_partner.as_deref(),
            recipient_user: d.recipient_user.as_deref(),
            recipient_role: d.recipient_role.as_deref(),
            purpose: d.purpose.as_deref(),
            basis: d.basis.as_ref(),
            justification: d.justification.as_deref(),
            subject: d.subject.map(|s| s.to_hex()),
            record: d.record.as_ref(),
            fields_disclosed: &d.fields_disclosed,
            fields_withheld: d.fields_withheld,
            outcome: d.outcome.as_str(),
            reason: match &d.outcome {
                super::Outcome::Deny { reason } => Some(reason),
                super::Outcome::Permit => None,
            },
            source_addr: d.source_addr.as_deref(),
            cert_sha256: d.cert_sha256.as_deref(),
            detail: d.detail.as_deref(),
            field_reasons: match d.kind {
                EntryKind::Disclosure => d.detail.as_deref().and_then(super::reasons::from_detail),
                _ => None,
            },
            prev_hash: e.prev_hash.to_hex(),
            hash: e.hash.to_hex(),
        }
    }
}

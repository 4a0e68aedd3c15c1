//! Reading an `audit_log` row back as an entry, strictly: a value that the canonical encoding
//! cannot have produced (an unknown kind, a rule on a consent basis, a reason on a permit,
//! malformed field lists or hashes, a value of the wrong type) makes the row unreadable, and
//! verification reports it as altered. A row is read through sqlx ([`LogRow`]), or borrowed
//! straight from SQLite's row buffer or PostgreSQL's binary `COPY` stream during a
//! verification scan ([`RawRow`]); both go through the same checks ([`CheckedRow`]).

use chrono::DateTime;

use super::super::LogError;
use super::super::canonical::{BasisView, ChainHash, EntryContent, FieldPair};
use super::super::entry::{
    Entry, EntryFormat, EntryKind, FieldDisclosure, NewEntry, Outcome, RecordRef, SubjectPseudonym,
};
use super::COLUMNS;

/// A row that could not be read back as an entry.
pub(super) fn corrupt(seq: u64, why: impl Into<String>) -> LogError {
    LogError::Corrupt {
        seq,
        why: why.into(),
    }
}

/// One `audit_log` row, all [`COLUMNS`].
#[derive(Debug, sqlx::FromRow)]
pub(in crate::audit) struct LogRow {
    seq: i64,
    at_us: i64,
    kind: String,
    request_id: Option<String>,
    decision_id: Option<String>,
    policy_hash: Option<String>,
    recipient_partner: Option<String>,
    recipient_user: Option<String>,
    recipient_role: Option<String>,
    purpose: Option<String>,
    basis_kind: Option<String>,
    basis_ref: Option<String>,
    basis_rule: Option<String>,
    justification: Option<String>,
    subject: Option<Vec<u8>>,
    record_kind: Option<String>,
    record_id: Option<String>,
    fields_disclosed: String,
    fields_withheld: i64,
    outcome: String,
    reason: Option<String>,
    source_addr: Option<String>,
    cert_sha256: Option<String>,
    detail: Option<String>,
    prev_hash: Vec<u8>,
    entry_hash: Vec<u8>,
    format: i32,
    sealed: Option<Vec<u8>>,
}

impl LogRow {
    /// The row's values, borrowed.
    pub(in crate::audit) fn raw(&self) -> RawRow<'_> {
        RawRow {
            seq: self.seq,
            at_us: self.at_us,
            kind: &self.kind,
            request_id: self.request_id.as_deref(),
            decision_id: self.decision_id.as_deref(),
            policy_hash: self.policy_hash.as_deref(),
            recipient_partner: self.recipient_partner.as_deref(),
            recipient_user: self.recipient_user.as_deref(),
            recipient_role: self.recipient_role.as_deref(),
            purpose: self.purpose.as_deref(),
            basis_kind: self.basis_kind.as_deref(),
            basis_ref: self.basis_ref.as_deref(),
            basis_rule: self.basis_rule.as_deref(),
            justification: self.justification.as_deref(),
            subject: self.subject.as_deref(),
            record_kind: self.record_kind.as_deref(),
            record_id: self.record_id.as_deref(),
            fields_disclosed: &self.fields_disclosed,
            fields_withheld: self.fields_withheld,
            outcome: &self.outcome,
            reason: self.reason.as_deref(),
            source_addr: self.source_addr.as_deref(),
            cert_sha256: self.cert_sha256.as_deref(),
            detail: self.detail.as_deref(),
            prev_hash: &self.prev_hash,
            entry_hash: &self.entry_hash,
            format: i64::from(self.format),
            sealed: self.sealed.as_deref(),
        }
    }
}

/// One `audit_log` row's values, borrowed: from a [`LogRow`] read through sqlx, or straight
/// from SQLite's row buffer during a verification scan (no value copied).
#[derive(Clone, Copy)]
pub(in crate::audit) struct RawRow<'a> {
    seq: i64,
    at_us: i64,
    kind: &'a str,
    request_id: Option<&'a str>,
    decision_id: Option<&'a str>,
    policy_hash: Option<&'a str>,
    recipient_partner: Option<&'a str>,
    recipient_user: Option<&'a str>,
    recipient_role: Option<&'a str>,
    purpose: Option<&'a str>,
    basis_kind: Option<&'a str>,
    basis_ref: Option<&'a str>,
    basis_rule: Option<&'a str>,
    justification: Option<&'a str>,
    subject: Option<&'a [u8]>,
    record_kind: Option<&'a str>,
    record_id: Option<&'a str>,
    fields_disclosed: &'a str,
    fields_withheld: i64,
    outcome: &'a str,
    reason: Option<&'a str>,
    source_addr: Option<&'a str>,
    cert_sha256: Option<&'a str>,
    detail: Option<&'a str>,
    prev_hash: &'a [u8],
    entry_hash: &'a [u8],
    format: i64,
    sealed: Option<&'a [u8]>,
}

/// The values of one row of `SELECT {COLUMNS}`, typed as the log's columns are; `Err` names
/// the first column whose value has another type.
trait ColumnValues<'a> {
    fn int(&self, i: usize) -> Result<i64, String>;
    fn text(&self, i: usize) -> Result<&'a str, String>;
    fn opt_text(&self, i: usize) -> Result<Option<&'a str>, String>;
    fn blob(&self, i: usize) -> Result<&'a [u8], String>;
    fn opt_blob(&self, i: usize) -> Result<Option<&'a [u8]>, String>;
}

/// A rusqlite row's values.
struct SqliteValues<'a, 'r>(&'a rusqlite::Row<'r>);

impl<'a> SqliteValues<'a, '_> {
    fn value(&self, i: usize) -> Result<rusqlite::types::ValueRef<'a>, String> {
        self.0.get_ref(i).map_err(|e| e.to_string())
    }
}

impl<'a> ColumnValues<'a> for SqliteValues<'a, '_> {
    fn int(&self, i: usize) -> Result<i64, String> {
        self.value(i)?.as_i64().map_err(|e| wrong_type(i, e))
    }
    fn text(&self, i: usize) -> Result<&'a str, String> {
        self.value(i)?.as_str().map_err(|e| wrong_type(i, e))
    }
    fn opt_text(&self, i: usize) -> Result<Option<&'a str>, String> {
        self.value(i)?
            .as_str_or_null()
            .map_err(|e| wrong_type(i, e))
    }
    fn blob(&self, i: usize) -> Result<&'a [u8], String> {
        self.value(i)?.as_blob().map_err(|e| wrong_type(i, e))
    }
    fn opt_blob(&self, i: usize) -> Result<Option<&'a [u8]>, String> {
        self.value(i)?
            .as_blob_or_null()
            .map_err(|e| wrong_type(i, e))
    }
}

/// A row of PostgreSQL's binary `COPY` stream ([`crate::store::pgcopy`]): each value in its
/// type's binary form, `None` for NULL.
struct CopyValues<'a, 'f>(&'f [Option<&'a [u8]>]);

impl<'a> CopyValues<'a, '_> {
    fn utf8(i: usize, b: &'a [u8]) -> Result<&'a str, String> {
        std::str::from_utf8(b).map_err(|_| wrong_type(i, "not UTF-8"))
    }
}

impl<'a> ColumnValues<'a> for CopyValues<'a, '_> {
    fn int(&self, i: usize) -> Result<i64, String> {
        crate::store::pgcopy::int(self.blob(i)?).ok_or_else(|| wrong_type(i, "not an integer"))
    }
    fn text(&self, i: usize) -> Result<&'a str, String> {
        Self::utf8(i, self.blob(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<&'a str>, String> {
        self.opt_blob(i)?.map(|b| Self::utf8(i, b)).transpose()
    }
    fn blob(&self, i: usize) -> Result<&'a [u8], String> {
        self.opt_blob(i)?.ok_or_else(|| wrong_type(i, "NULL"))
    }
    fn opt_blob(&self, i: usize) -> Result<Option<&'a [u8]>, String> {
        self.0
            .get(i)
            .copied()
            .ok_or_else(|| wrong_type(i, "missing"))
    }
}

fn wrong_type(column: usize, what: impl std::fmt::Display) -> String {
    let name = COLUMNS.split(',').nth(column).unwrap_or_default().trim();
    format!("column {name} holds a value of the wrong type ({what})")
}

impl<'a> RawRow<'a> {
    /// Borrows a row of `SELECT {COLUMNS}` (in that order) from PostgreSQL's binary `COPY`
    /// stream ([`crate::store::pgcopy`]): the log scan of [`super::scan`] reads PostgreSQL
    /// without a message, a type check or a copy per value. `Err` says which column holds a
    /// value no row of the log can have.
    pub(in crate::audit) fn from_copy(fields: &[Option<&'a [u8]>]) -> Result<Self, String> {
        Self::read(&CopyValues(fields))
    }

    /// Borrows a row of `SELECT {COLUMNS}` (in that order) from a rusqlite statement: the log
    /// scan of [`super::scan`] reads SQLite without sqlx's per-value copies. `Err` says which
    /// column holds a value of a type no row of the log can have.
    pub(in crate::audit) fn from_sqlite(r: &'a rusqlite::Row<'_>) -> Result<Self, String> {
        Self::read(&SqliteValues(r))
    }

    /// Reads a row of `SELECT {COLUMNS}` (in that order) through `v`.
    fn read(v: &impl ColumnValues<'a>) -> Result<Self, String> {
        Ok(Self {
            seq: v.int(0)?,
            at_us: v.int(1)?,
            kind: v.text(2)?,
            request_id: v.opt_text(3)?,
            decision_id: v.opt_text(4)?,
            policy_hash: v.opt_text(5)?,
            recipient_partner: v.opt_text(6)?,
            recipient_user: v.opt_text(7)?,
            recipient_role: v.opt_text(8)?,
            purpose: v.opt_text(9)?,
            basis_kind: v.opt_text(10)?,
            basis_ref: v.opt_text(11)?,
            basis_rule: v.opt_text(12)?,
            justification: v.opt_text(13)?,
            subject: v.opt_blob(14)?,
            record_kind: v.opt_text(15)?,
            record_id: v.opt_text(16)?,
            fields_disclosed: v.text(17)?,
            fields_withheld: v.int(18)?,
            outcome: v.text(19)?,
            reason: v.opt_text(20)?,
            source_addr: v.opt_text(21)?,
            cert_sha256: v.opt_text(22)?,
            detail: v.opt_text(23)?,
            prev_hash: v.blob(24)?,
            entry_hash: v.blob(25)?,
            format: v.int(26)?,
            sealed: v.opt_blob(27)?,
        })
    }

    /// Checks that the log can have written this row and reads it as an entry, still
    /// borrowing its values. A value that the canonical encoding cannot have produced is
    /// [`LogError::Corrupt`].
    pub(in crate::audit) fn check(self) -> Result<CheckedRow<'a>, LogError> {
        let row = self;
        let seq = u64::try_from(row.seq).map_err(|_| corrupt(0, "negative sequence number"))?;
        let c = |why: &str| corrupt(seq, why);
        DateTime::from_timestamp_micros(row.at_us).ok_or_else(|| c("time out of range"))?;
        let kind: EntryKind = row.kind.parse().map_err(|_| c("unknown kind"))?;
        let format = i32::try_from(row.format)
            .ok()
            .and_then(EntryFormat::from_i32)
            .ok_or_else(|| c("unknown format"))?;
        let v1 = format == EntryFormat::V1;
        // Format 2 keeps free text only sealed; format 1 only in clear.
        if !v1 && (row.justification.is_some() || row.detail.is_some()) {
            return Err(c("clear free text in an entry that seals it"));
        }
        if v1 && row.sealed.is_some() {
            return Err(c("sealed text in an entry written in clear"));
        }
        let basis = match (row.basis_kind, row.basis_ref, row.basis_rule) {
            (None, None, None) => None,
            (Some("consent"), Some(r), None) => Some(BasisView::Consent(r)),
            (Some("emergency"), Some(r), None) if v1 => Some(BasisView::Emergency(r)),
            (Some("emergency"), None, None) if !v1 => Some(BasisView::Emergency("")),
            (Some("court_order"), Some(r), None) => Some(BasisView::CourtOrder(r)),
            (Some("medical_emergency"), Some(r), None) if v1 => {
                Some(BasisView::MedicalEmergency(r))
            }
            (Some("medical_emergency"), None, None) if !v1 => Some(BasisView::MedicalEmergency("")),
            (Some("mou"), Some(mou_id), Some(rule)) => Some(BasisView::Mou { mou_id, rule }),
            _ => return Err(c("inconsistent legal basis columns")),
        };
        let bytes32 = |v: &'a [u8]| -> Result<&'a [u8; 32], LogError> {
            <&[u8; 32]>::try_from(v).map_err(|_| c("malformed 32-byte value"))
        };
        let subject = row.subject.map(bytes32).transpose()?;
        let record = match (row.record_kind, row.record_id) {
            (None, None) => None,
            (Some(kind), Some(id)) => Some((kind, id)),
            _ => return Err(c("inconsistent record columns")),
        };
        let fields = match fields_as_written(row.fields_disclosed) {
            Some(fields) => fields,
            None => {
                serde_json::from_str(row.fields_disclosed).map_err(|_| c("malformed field list"))?
            }
        };
        let fields_withheld =
            u32::try_from(row.fields_withheld).map_err(|_| c("withheld count out of range"))?;
        let deny_reason = match (row.outcome, row.reason) {
            ("permit", None) => None,
            ("deny", Some(reason)) => Some(reason),
            _ => return Err(c("inconsistent outcome columns")),
        };
        let prev = ChainHash(*bytes32(row.prev_hash)?);
        let hash = ChainHash(*bytes32(row.entry_hash)?);
        Ok(CheckedRow {
            seq,
            format,
            kind,
            row,
            basis,
            subject,
            record,
            fields,
            fields_withheld,
            deny_reason,
            prev,
            hash,
        })
    }
}

/// Reads a field list in the exact form the log writes it (`[{"field":"..","transform":".."},..]`,
/// strings without escapes or control characters), without a JSON parser; `None` for any
/// other text, which is then parsed as JSON. Whatever this reads, the JSON parser reads the
/// same way (a unit test holds the two to it).
fn fields_as_written(text: &str) -> Option<Vec<FieldRef<'_>>> {
    /// A string up to its closing quote, if it needs no unescaping.
    fn plain(s: &str) -> Option<(&str, &str)> {
        let end = s.find(['"', '\\'])?;
        let (value, rest) = s.split_at(end);
        let rest = rest.strip_prefix('"')?;
        (!value.bytes().any(|b| b < 0x20)).then_some((value, rest))
    }
    let mut rest = text.strip_prefix('[')?;
    let mut out = Vec::new();
    if rest == "]" {
        return Some(out);
    }
    loop {
        let (field, r) = plain(rest.strip_prefix(r#"{"field":""#)?)?;
        let (transform, r) = plain(r.strip_prefix(r#","transform":""#)?)?;
        out.push(FieldRef {
            field: field.into(),
            transform: transform.into(),
        });
        let r = r.strip_prefix('}')?;
        match r.strip_prefix(',') {
            Some(next) => rest = next,
            None => return (r == "]").then_some(out),
        }
    }
}

/// One disclosed field of a stored field list, borrowed where the JSON text allows.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::audit) struct FieldRef<'a> {
    #[serde(borrow)]
    field: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    transform: std::borrow::Cow<'a, str>,
}

impl FieldPair for FieldRef<'_> {
    fn field(&self) -> &str {
        &self.field
    }
    fn transform(&self) -> &str {
        &self.transform
    }
}

/// A stored row that the log can have written, read as an entry but still borrowing its
/// values.
pub(in crate::audit) struct CheckedRow<'a> {
    pub(in crate::audit) seq: u64,
    pub(in crate::audit) format: EntryFormat,
    kind: EntryKind,
    row: RawRow<'a>,
    basis: Option<BasisView<'a>>,
    subject: Option<&'a [u8; 32]>,
    record: Option<(&'a str, &'a str)>,
    fields: Vec<FieldRef<'a>>,
    fields_withheld: u32,
    deny_reason: Option<&'a str>,
    /// The stored previous hash.
    pub(in crate::audit) prev: ChainHash,
    /// The stored hash.
    pub(in crate::audit) hash: ChainHash,
}

impl<'a> CheckedRow<'a> {
    /// The view the encodings read.
    pub(in crate::audit) fn view(&self) -> EntryContent<'_, FieldRef<'a>> {
        let r = &self.row;
        EntryContent {
            at_us: r.at_us,
            kind: self.kind.as_str(),
            request_id: r.request_id,
            decision_id: r.decision_id,
            policy_hash: r.policy_hash,
            recipient_partner: r.recipient_partner,
            recipient_user: r.recipient_user,
            recipient_role: r.recipient_role,
            purpose: r.purpose,
            basis: self.basis,
            justification: r.justification,
            subject: self.subject,
            record: self.record,
            fields: &self.fields,
            fields_withheld: self.fields_withheld,
            deny_reason: self.deny_reason,
            source_addr: r.source_addr,
            cert_sha256: r.cert_sha256,
            detail: r.detail,
        }
    }

    /// The sealed free text of a format-2 entry.
    pub(in crate::audit) fn sealed(&self) -> Option<&'a [u8]> {
        self.row.sealed
    }

    /// The owned entry.
    pub(in crate::audit) fn into_entry(self) -> Result<Entry, LogError> {
        let r = self.row;
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let at = DateTime::from_timestamp_micros(r.at_us)
            .ok_or_else(|| corrupt(self.seq, "time out of range"))?;
        let data = NewEntry {
            at,
            kind: self.kind,
            request_id: owned(r.request_id),
            decision_id: owned(r.decision_id),
            policy_hash: owned(r.policy_hash),
            recipient_partner: owned(r.recipient_partner),
            recipient_user: owned(r.recipient_user),
            recipient_role: owned(r.recipient_role),
            purpose: owned(r.purpose),
            basis: self.basis.map(BasisView::to_owned),
            justification: owned(r.justification),
            subject: self.subject.map(|s| SubjectPseudonym(*s)),
            record: self.record.map(|(kind, id)| RecordRef {
                kind: kind.to_owned(),
                id: id.to_owned(),
            }),
            fields_disclosed: self
                .fields
                .into_iter()
                .map(|f| FieldDisclosure {
                    field: f.field.into_owned(),
                    transform: f.transform.into_owned(),
                })
                .collect(),
            fields_withheld: self.fields_withheld,
            outcome: match self.deny_reason {
                None => Outcome::Permit,
                Some(reason) => Outcome::Deny {
                    reason: reason.to_owned(),
                },
            },
            source_addr: owned(r.source_addr),
            cert_sha256: owned(r.cert_sha256),
            detail: owned(r.detail),
        };
        Ok(Entry {
            seq: self.seq,
            format: self.format,
            data,
            sealed: r.sealed.map(<[u8]>::to_vec),
            prev_hash: self.prev,
            hash: self.hash,
        })
    }
}

/// Parses one `audit_log` row.
pub(in crate::audit) fn row_to_entry(row: LogRow) -> Result<Entry, LogError> {
    row.raw().check()?.into_entry()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_read_without_a_parser_read_as_json_does() {
        let pairs = |v: &[FieldRef<'_>]| -> Vec<(String, String)> {
            v.iter()
                .map(|f| (f.field.to_string(), f.transform.to_string()))
                .collect()
        };
        let lists: Vec<Vec<FieldDisclosure>> = vec![
            vec![],
            vec![FieldDisclosure::new("narrative", "reveal")],
            vec![
                FieldDisclosure::new("safety_flags.weapon", "reveal"),
                FieldDisclosure::new("dob", "generalize"),
                FieldDisclosure::new("", ""),
                FieldDisclosure::new("näme", "mask"),
            ],
            vec![FieldDisclosure::new("a\"b", "x")],
            vec![FieldDisclosure::new("a\\b", "x")],
            vec![FieldDisclosure::new("tab\there", "x")],
            vec![FieldDisclosure::new("x", "line\nbreak")],
        ];
        for list in &lists {
            let text = serde_json::to_string(list).unwrap();
            let parsed: Vec<FieldRef<'_>> = serde_json::from_str(&text).unwrap();
            match fields_as_written(&text) {
                Some(fast) => assert_eq!(pairs(&fast), pairs(&parsed), "{text}"),
                // Only strings that JSON escapes are left to the parser.
                None => assert!(text.contains('\\'), "{text}"),
            }
        }
        // Other texts: read the same way as JSON reads them, or left to the parser.
        for text in [
            "[]",
            "[ ]",
            "",
            "[",
            "]",
            "[{}]",
            r#"[{"field":"a","transform":"b"}]"#,
            r#"[{"field":"a","transform":"b"},]"#,
            r#"[{"field":"a","transform":"b"}] "#,
            r#"[{"field":"a","transform":"b"}]x"#,
            r#"[{"field":"a","transform":"b","x":1}]"#,
            r#"[{"transform":"b","field":"a"}]"#,
            r#"[{"field":"a"}]"#,
            r#"[{"field":"a","transform":"b"}{"field":"a","transform":"b"}]"#,
            r#"[{"field":"a","transform":"b"},{"field":"c","transform":"d"}]"#,
            "[{\"field\":\"a\u{1}\",\"transform\":\"b\"}]",
            r#"[{"field":"a\u0041","transform":"b"}]"#,
        ] {
            let json: Option<Vec<FieldRef<'_>>> = serde_json::from_str(text).ok();
            if let Some(fast) = fields_as_written(text) {
                assert_eq!(Some(pairs(&fast)), json.as_deref().map(pairs), "{text:?}");
            }
        }
        assert!(
            fields_as_written(r#"[{"field":"a","transform":"b"},{"field":"c","transform":"d"}]"#)
                .is_some()
        );
    }
}

//! A subject's accounting of disclosures (HIPAA 164.528).
//!
//! Each line holds the 164.528(b)(2) elements: the date of the disclosure, the recipient's
//! name and address, a brief description of the information disclosed, and a brief statement
//! of the purpose and basis. Repeated disclosures to one recipient for one purpose are
//! summarised (164.528(b)(3)): the first in full, then the number of disclosures and the date
//! of the last. Denials disclosed nothing and are not listed. Pure: the entries and the
//! partner registry lookup are parameters.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::entry::{Entry, EntryKind, LegalBasis, Outcome};
use super::query::rfc3339;

/// The accounting period: six years (HIPAA 164.528(a)), counted in days including leap days.
pub const ACCOUNTING_DAYS: i64 = 6 * 365 + 2;

/// The recipient as named in the partner registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientInfo {
    /// Partner id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Postal address, if the registry has one.
    pub address: Option<String>,
}

/// One line of the accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountingLine {
    /// Date of the (first) disclosure, RFC 3339 UTC.
    pub date: String,
    /// Recipient.
    pub recipient: RecipientInfo,
    /// Brief description of the information disclosed.
    pub description: String,
    /// Brief statement of the purpose and basis of the disclosure.
    pub purpose: String,
    /// Number of disclosures summarised by this line (1 if not repeated).
    pub count: u64,
    /// Date of the last disclosure summarised (equal to `date` if `count` is 1).
    pub last_date: String,
    /// Whether any of these disclosures was an emergency (break-glass) disclosure.
    pub emergency: bool,
    /// Sequence number of the first disclosure's log entry.
    pub first_seq: u64,
    /// Sequence number of the last disclosure's log entry.
    pub last_seq: u64,
}

/// Describes the information an entry disclosed.
pub fn describe(e: &Entry) -> String {
    let d = &e.data;
    let kind = d.record.as_ref().map_or("record", |r| r.kind.as_str());
    if d.fields_disclosed.is_empty() {
        return format!("{kind} record (no field content)");
    }
    let fields: Vec<String> = d
        .fields_disclosed
        .iter()
        .map(|f| {
            if f.transform == "reveal" {
                f.field.clone()
            } else {
                format!("{} ({})", f.field, f.transform)
            }
        })
        .collect();
    format!("{kind} record: {}", fields.join(", "))
}

fn purpose_statement(e: &Entry) -> String {
    let d = &e.data;
    let purpose = d.purpose.as_deref().unwrap_or("unstated");
    match &d.basis {
        Some(b @ LegalBasis::Emergency { .. }) => {
            let justification = d.justification.as_deref().unwrap_or("");
            format!(
                "purpose `{purpose}` under {}; justification: {justification}",
                b.statement()
            )
        }
        Some(b @ LegalBasis::MedicalEmergency { .. }) => {
            let nature = d.justification.as_deref().unwrap_or("");
            format!(
                "purpose `{purpose}` under {}; nature of the emergency: {nature}",
                b.statement()
            )
        }
        Some(b) => format!("purpose `{purpose}` under {}", b.statement()),
        None => format!("purpose `{purpose}`"),
    }
}

/// Builds the accounting from a subject's entries (any order). `partner` maps a partner id to
/// its registry name and address.
pub fn summarize(
    entries: &[Entry],
    partner: impl Fn(&str) -> Option<(String, Option<String>)>,
) -> Vec<AccountingLine> {
    let mut disclosures: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.data.kind == EntryKind::Disclosure && e.data.outcome == Outcome::Permit)
        .collect();
    disclosures.sort_by_key(|e| (e.data.at, e.seq));
    let mut lines: Vec<AccountingLine> = Vec::new();
    // (recipient, purpose) -> index into `lines`
    let mut index: std::collections::HashMap<(String, String), usize> = Default::default();
    for e in disclosures {
        let d = &e.data;
        let rid = d.recipient_partner.clone().unwrap_or_default();
        let purpose = d.purpose.clone().unwrap_or_default();
        let emergency = d.basis.as_ref().is_some_and(LegalBasis::is_emergency);
        let date = rfc3339(&d.at);
        if let Some(line) = index
            .get(&(rid.clone(), purpose.clone()))
            .and_then(|&i| lines.get_mut(i))
        {
            line.count += 1;
            line.last_date = date;
            line.last_seq = e.seq;
            line.emergency |= emergency;
            continue;
        }
        let (name, address) = partner(&rid)
            .unwrap_or_else(|| (format!("{rid} (no longer in the partner registry)"), None));
        index.insert((rid.clone(), purpose), lines.len());
        lines.push(AccountingLine {
            date: date.clone(),
            recipient: RecipientInfo {
                id: rid,
                name,
                address,
            },
            description: describe(e),
            purpose: purpose_statement(e),
            count: 1,
            last_date: date,
            emergency,
            first_seq: e.seq,
            last_seq: e.seq,
        });
    }
    lines
}

/// The start of the accounting period ending at `now`.
pub fn period_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::days(ACCOUNTING_DAYS)
}

/// Quotes one CSV field (RFC 4180). A field that a spreadsheet would run as a formula (first
/// character `=`, `+`, `-`, `@`, tab or carriage return) is prefixed with `'`.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The accounting as CSV (header line, CRLF line ends).
pub fn to_csv(lines: &[AccountingLine]) -> String {
    let mut out = String::from(
        "date,recipient_id,recipient_name,recipient_address,description,purpose_and_basis,\
         count,last_date,emergency,first_entry,last_entry\r\n",
    );
    for l in lines {
        let row = [
            csv_field(&l.date),
            csv_field(&l.recipient.id),
            csv_field(&l.recipient.name),
            csv_field(l.recipient.address.as_deref().unwrap_or("")),
            csv_field(&l.description),
            csv_field(&l.purpose),
            l.count.to_string(),
            csv_field(&l.last_date),
            l.emergency.to_string(),
            l.first_seq.to_string(),
            l.last_seq.to_string(),
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canonical::ChainHash;
    use crate::audit::entry::{FieldDisclosure, NewEntry, RecordRef};
    use chrono::TimeZone;

    fn disclosure(seq: u64, day: i64, to: &str, purpose: &str, outcome: Outcome) -> Entry {
        let mut d = NewEntry::new(
            EntryKind::Disclosure,
            Utc.timestamp_opt(1_700_000_000 + day * 86_400, 0).unwrap(),
            outcome.clone(),
        );
        d.recipient_partner = Some(to.into());
        d.purpose = Some(purpose.into());
        d.basis = Some(LegalBasis::Mou {
            mou_id: "mou-1".into(),
            rule: "r2".into(),
        });
        d.record = Some(RecordRef {
            kind: "safety-plan".into(),
            id: "sp-1".into(),
        });
        if outcome == Outcome::Permit {
            d.fields_disclosed = vec![
                FieldDisclosure::new("de_escalation", "reveal"),
                FieldDisclosure::new("crisis_contacts", "mask"),
            ];
        }
        Entry {
            seq,
            format: crate::audit::EntryFormat::V2,
            data: d,
            sealed: None,
            prev_hash: ChainHash::GENESIS,
            hash: ChainHash::GENESIS,
        }
    }

    fn registry(id: &str) -> Option<(String, Option<String>)> {
        (id == "metro-pd").then(|| ("Metro City PD".to_owned(), Some("1 Plaza".to_owned())))
    }

    #[test]
    fn repeats_are_summarised_and_denials_left_out() {
        let entries = vec![
            disclosure(1, 0, "metro-pd", "crisis-response", Outcome::Permit),
            disclosure(2, 1, "metro-pd", "crisis-response", Outcome::Permit),
            disclosure(
                3,
                2,
                "metro-pd",
                "crisis-response",
                Outcome::deny("no_rule"),
            ),
            disclosure(4, 3, "metro-pd", "referral-followup", Outcome::Permit),
            disclosure(5, 4, "metro-pd", "crisis-response", Outcome::Permit),
            disclosure(6, 5, "gone-pd", "crisis-response", Outcome::Permit),
        ];
        let lines = summarize(&entries, registry);
        assert_eq!(lines.len(), 3);
        let first = &lines[0];
        assert_eq!(first.count, 3);
        assert_eq!(first.first_seq, 1);
        assert_eq!(first.last_seq, 5);
        assert_eq!(first.recipient.name, "Metro City PD");
        assert_eq!(first.recipient.address.as_deref(), Some("1 Plaza"));
        assert_eq!(
            first.description,
            "safety-plan record: de_escalation, crisis_contacts (mask)"
        );
        assert!(first.purpose.contains("MOU `mou-1` rule `r2`"));
        assert_ne!(first.date, first.last_date);
        assert_eq!(lines[1].count, 1);
        assert_eq!(lines[1].date, lines[1].last_date);
        assert!(lines[2].recipient.name.contains("no longer"));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
        let lines = summarize(
            &[disclosure(
                1,
                0,
                "metro-pd",
                "crisis-response",
                Outcome::Permit,
            )],
            registry,
        );
        let csv = to_csv(&lines);
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(rows.len(), 3);
        assert!(rows[1].contains("\"safety-plan record: de_escalation, crisis_contacts (mask)\""));
    }
}

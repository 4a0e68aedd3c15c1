//! The list of disclosures of a patient's 42 CFR Part 2 information (42 CFR 2.24).
//!
//! 42 CFR 2.24(b)(2): for each disclosure, "the name(s) of the entity(ies) to which the
//! disclosure was made, the date of the disclosure, and a brief description of the patient
//! identifying information disclosed"; 2.24(a)(2): requests "are limited to disclosures made
//! within the past 3 years". Unlike the HIPAA accounting, every disclosure is listed on its own
//! (no summarising), whatever its basis (consent, court order, medical emergency).
//!
//! Pure: the entries, which disclosed fields were Part 2 information, and the partner
//! registry lookup are parameters (the log does not depend on the policy engine).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::accounting::{RecipientInfo, csv_field};
use super::entry::{Entry, EntryKind, FieldDisclosure, Outcome};
use super::query::rfc3339;

/// The longest period the list covers, in years (42 CFR 2.24(a)(2)).
pub const MAX_YEARS: u32 = 3;

/// The start of a period of `years` years before `now` (365 days a year, plus one day for each
/// leap day it can contain).
pub fn period_start(now: DateTime<Utc>, years: u32) -> DateTime<Utc> {
    let y = i64::from(years);
    now - chrono::Duration::days(365 * y + (y + 3) / 4)
}

/// One disclosure of Part 2 information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part2Line {
    /// Date and time of the disclosure, RFC 3339 UTC.
    pub date: String,
    /// The entity the disclosure was made to.
    pub recipient: RecipientInfo,
    /// A brief description of what was disclosed: the record kind and the Part 2 fields.
    pub description: String,
    /// The Part 2 fields disclosed.
    pub part2_fields: Vec<String>,
    /// The other fields disclosed with them.
    pub other_fields: Vec<String>,
    /// The purpose and legal basis.
    pub purpose: String,
    /// The disclosure's log entry.
    pub seq: u64,
}

/// The Part 2 disclosures among `entries` (any order), oldest first. `is_part2` tells whether
/// a disclosed field of an entry was Part 2 information; `partner` maps a partner id to its
/// registry name and address.
pub fn list(
    entries: &[Entry],
    is_part2: impl Fn(&Entry, &FieldDisclosure) -> bool,
    partner: impl Fn(&str) -> Option<(String, Option<String>)>,
) -> Vec<Part2Line> {
    let mut disclosures: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.data.kind == EntryKind::Disclosure && e.data.outcome == Outcome::Permit)
        .collect();
    disclosures.sort_by_key(|e| (e.data.at, e.seq));
    let mut out = Vec::new();
    for e in disclosures {
        let (part2, other): (Vec<&FieldDisclosure>, Vec<&FieldDisclosure>) =
            e.data.fields_disclosed.iter().partition(|f| is_part2(e, f));
        if part2.is_empty() {
            continue;
        }
        let d = &e.data;
        let rid = d.recipient_partner.clone().unwrap_or_default();
        let (name, address) = partner(&rid)
            .unwrap_or_else(|| (format!("{rid} (no longer in the partner registry)"), None));
        let kind = d.record.as_ref().map_or("record", |r| r.kind.as_str());
        let show = |f: &&FieldDisclosure| {
            if f.transform == "reveal" {
                f.field.clone()
            } else {
                format!("{} ({})", f.field, f.transform)
            }
        };
        let purpose = d.purpose.as_deref().unwrap_or("unstated");
        out.push(Part2Line {
            date: rfc3339(&d.at),
            recipient: RecipientInfo {
                id: rid,
                name,
                address,
            },
            description: format!(
                "{kind} record: Part 2 information: {}",
                part2.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            part2_fields: part2.iter().map(|f| f.field.clone()).collect(),
            other_fields: other.iter().map(|f| f.field.clone()).collect(),
            purpose: match &d.basis {
                Some(b) => format!("purpose `{purpose}` under {}", b.statement()),
                None => format!("purpose `{purpose}`"),
            },
            seq: e.seq,
        });
    }
    out
}

/// The list as CSV (RFC 4180; cells a spreadsheet would run as formulas are defused).
pub fn to_csv(lines: &[Part2Line]) -> String {
    let mut out = String::from(
        "date,recipient_id,recipient_name,recipient_address,description,purpose_and_basis,\
         entry\r\n",
    );
    for l in lines {
        let row = [
            csv_field(&l.date),
            csv_field(&l.recipient.id),
            csv_field(&l.recipient.name),
            csv_field(l.recipient.address.as_deref().unwrap_or("")),
            csv_field(&l.description),
            csv_field(&l.purpose),
            l.seq.to_string(),
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
    use crate::audit::entry::{LegalBasis, NewEntry, RecordRef};
    use chrono::TimeZone;

    fn entry(seq: u64, fields: &[&str], outcome: Outcome) -> Entry {
        let mut d = NewEntry::new(
            EntryKind::Disclosure,
            Utc.timestamp_opt(1_770_000_000 + seq as i64, 0).unwrap(),
            outcome,
        );
        d.recipient_partner = Some("metro-pd".into());
        d.purpose = Some("investigation".into());
        d.basis = Some(LegalBasis::CourtOrder {
            order_id: "co-1".into(),
        });
        d.record = Some(RecordRef {
            kind: "safety-plan".into(),
            id: "SP-1".into(),
        });
        d.fields_disclosed = fields
            .iter()
            .map(|f| FieldDisclosure::new(*f, "reveal"))
            .collect();
        Entry {
            seq,
            format: crate::audit::EntryFormat::V2,
            data: d,
            sealed: None,
            prev_hash: ChainHash::GENESIS,
            hash: ChainHash::GENESIS,
        }
    }

    #[test]
    fn only_disclosures_holding_part2_fields_are_listed_each_on_its_own() {
        let entries = vec![
            entry(3, &["substance_use_history", "plan_id"], Outcome::Permit),
            entry(1, &["plan_id"], Outcome::Permit),
            entry(2, &["substance_use_history"], Outcome::Permit),
            entry(4, &[], Outcome::deny("x")),
        ];
        let lines = list(
            &entries,
            |_, f| f.field == "substance_use_history",
            |id| Some((format!("name of {id}"), Some("addr".into()))),
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].seq, 2);
        assert_eq!(lines[1].seq, 3);
        assert_eq!(lines[1].other_fields, vec!["plan_id".to_owned()]);
        assert!(lines[1].description.contains("substance_use_history"));
        assert!(lines[1].purpose.contains("court order `co-1`"));
        assert_eq!(lines[0].recipient.name, "name of metro-pd");
        let csv = to_csv(&lines);
        assert_eq!(csv.lines().count(), 3);
    }

    #[test]
    fn the_period_covers_three_years_with_leap_days() {
        let now = Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap();
        let start = period_start(now, 3);
        assert!(start <= Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap());
        assert!(start > Utc.with_ymd_and_hms(2024, 2, 27, 0, 0, 0).unwrap());
    }
}

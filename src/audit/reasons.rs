//! Why each disclosed field left: the per-field reasons of a permitted disclosure, recorded in
//! its entry's `detail` so that a compliance officer opening the entry sees, for every field,
//! the MOU rule (with its legal basis), the consent or the hard limit behind its transform.
//!
//! The reasons travel in the hashed, chained `detail` text, so they are as tamper-evident as
//! the rest of the entry and the entry encoding does not change. The form is one line,
//! [`PREFIX`] followed by compact JSON: `[{"fields": [...], "reasons": [...]}, ...]`, fields
//! that share the same reasons grouped together. It is bounded to fit the entry: when the full
//! statements are too long, only the reasons' stable keys are kept; when even those are too
//! long, the detail says so and the decision id still names the decision.

use serde::{Deserialize, Serialize};

use super::entry::MAX_TEXT;

/// What a disclosure entry's `detail` starts with when it carries field reasons.
pub const PREFIX: &str = "field reasons: ";

/// Fields that left for the same reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonGroup {
    /// The fields, in the decision's order.
    pub fields: Vec<String>,
    /// Why: e.g. `mou-rule:metro-county/3.1 (law: 45 CFR 164.506(c))`, `consent:c-1`,
    /// `hard-limit-...: ...`.
    pub reasons: Vec<String>,
}

/// One disclosed field and its reasons, as the decision gave them: `(field, [(key,
/// statement)])`, where `key` is the reason's stable form and `statement` the form for people.
pub type FieldReasons = (String, Vec<(String, String)>);

/// Groups `fields` by identical reasons and renders the `detail` text, bounded to the log's
/// text limit (see the module documentation).
pub fn to_detail(fields: &[FieldReasons]) -> String {
    to_detail_within(fields, MAX_TEXT)
}

/// The reasons after what a disclosure's `detail` already says (`"<existing>; field reasons:
/// [...]"`), bounded so that the whole text still fits the entry; when the reasons do not fit
/// what is left, the existing text alone is kept (the decision id still names the decision).
pub fn append_to_detail(existing: Option<String>, fields: &[FieldReasons]) -> String {
    match existing.filter(|e| !e.is_empty()) {
        None => to_detail(fields),
        Some(e) => {
            let budget = MAX_TEXT.saturating_sub(e.len() + 2);
            let reasons = to_detail_within(fields, budget);
            if reasons.len() <= budget {
                format!("{e}; {reasons}")
            } else {
                e
            }
        }
    }
}

fn to_detail_within(fields: &[FieldReasons], budget: usize) -> String {
    let render = |full: bool| -> String {
        let mut groups: Vec<ReasonGroup> = Vec::new();
        for (field, reasons) in fields {
            let reasons: Vec<String> = reasons
                .iter()
                .map(|(key, statement)| if full { statement } else { key }.clone())
                .collect();
            match groups.iter_mut().find(|g| g.reasons == reasons) {
                Some(g) => g.fields.push(field.clone()),
                None => groups.push(ReasonGroup {
                    fields: vec![field.clone()],
                    reasons,
                }),
            }
        }
        format!(
            "{PREFIX}{}",
            serde_json::to_string(&groups).unwrap_or_default()
        )
    };
    let full = render(true);
    if full.len() <= budget {
        return full;
    }
    let keys = render(false);
    if keys.len() <= budget {
        return keys;
    }
    format!(
        "field reasons too long to record for {} fields; see the decision",
        fields.len()
    )
}

/// The groups recorded in a disclosure entry's `detail`, if it carries them.
/// The reasons are the last part of the text: after [`PREFIX`] at its start, or after the
/// last `"; "` followed by [`PREFIX`] when the decision wrote something before them.
pub fn from_detail(detail: &str) -> Option<Vec<ReasonGroup>> {
    let json = match detail.strip_prefix(PREFIX) {
        Some(rest) => rest,
        None => {
            let at = detail.rfind(&format!("; {PREFIX}"))?;
            detail.get(at + 2 + PREFIX.len()..)?
        }
    };
    serde_json::from_str(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(k: &str) -> (String, String) {
        (k.to_owned(), format!("{k} (law: 45 CFR 164.506(c))"))
    }

    #[test]
    fn fields_with_the_same_reasons_are_grouped_and_read_back() {
        let fields = vec![
            ("narrative".to_owned(), vec![reason("mou-rule:m/1")]),
            ("callback".to_owned(), vec![reason("mou-rule:m/2")]),
            ("disposition".to_owned(), vec![reason("mou-rule:m/1")]),
        ];
        let detail = to_detail(&fields);
        assert!(detail.len() <= MAX_TEXT);
        let groups = from_detail(&detail).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].fields, ["narrative", "disposition"]);
        assert_eq!(groups[0].reasons, ["mou-rule:m/1 (law: 45 CFR 164.506(c))"]);
        assert_eq!(groups[1].fields, ["callback"]);
    }

    #[test]
    fn reasons_follow_what_the_decision_wrote_and_read_back() {
        let fields = vec![("narrative".to_owned(), vec![reason("mou-rule:m/1")])];
        let detail = append_to_detail(Some("restriction r-1 withheld diagnoses".into()), &fields);
        assert!(detail.starts_with("restriction r-1 withheld diagnoses; field reasons: "));
        assert!(detail.len() <= MAX_TEXT);
        assert_eq!(from_detail(&detail).unwrap()[0].fields, ["narrative"]);
        // Too little room left: the decision's own text is kept whole.
        let long = "x".repeat(MAX_TEXT - 3);
        assert_eq!(append_to_detail(Some(long.clone()), &fields), long);
        assert_eq!(append_to_detail(None, &fields), to_detail(&fields));
    }

    #[test]
    fn the_detail_always_fits_the_entry() {
        let many: Vec<FieldReasons> = (0..60)
            .map(|i| {
                (
                    format!("field_{i:03}"),
                    vec![reason(&format!("mou-rule:m/{i}"))],
                )
            })
            .collect();
        let detail = to_detail(&many);
        assert!(detail.len() <= MAX_TEXT, "{}", detail.len());
        // Keys only, still readable.
        let groups = from_detail(&detail).unwrap();
        assert_eq!(groups[0].reasons, ["mou-rule:m/0"]);
        let huge: Vec<FieldReasons> = (0..400)
            .map(|i| {
                (
                    format!("a_rather_long_field_name_{i:04}"),
                    vec![reason(&format!("mou-rule:m/{i}"))],
                )
            })
            .collect();
        let detail = to_detail(&huge);
        assert!(detail.len() <= MAX_TEXT);
        assert!(from_detail(&detail).is_none());
    }

    #[test]
    fn other_details_carry_no_reasons() {
        assert!(from_detail("subject lookup: 1 record(s) found, 0 denied").is_none());
        assert!(from_detail("field reasons: not json").is_none());
    }
}

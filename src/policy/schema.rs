//! Record bodies checked against their kind's schema: every field known, of its declared type,
//! writable by the writer's partner kind; every required field present.
//!
//! Pure. A write is refused as a whole with every problem named, so a partner fixes them all
//! at once; nothing is stored from a refused write.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use serde::Serialize;
use serde_json::Value;

use super::model::{FieldDef, FieldType, KindDef};
use crate::domain::PartnerKind;

/// Longest `string` (and `phone`) value, in characters.
pub const MAX_STRING_CHARS: usize = 512;
/// Longest `text` value, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Most items in a `list`.
pub const MAX_LIST_ITEMS: usize = 100;

/// One field's problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    /// The field.
    pub field: String,
    /// Stable code: `unknown_field`, `not_writable`, `wrong_type`, `missing_required`.
    pub code: &'static str,
    /// What to fix.
    pub message: String,
}

impl FieldProblem {
    /// A value that does not fit its field's type.
    pub fn wrong_type(field: &str, message: impl Into<String>) -> Self {
        Self::new(field, "wrong_type", message)
    }

    fn new(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

/// Checks a write of `fields` by a partner of kind `writer` and returns the record's new field
/// values: the fields written, plus the current values of fields the writer may not write
/// (e.g. a referral's `status`, which the receiving agency maintains). `current` is the
/// record's current version, `None` for a new record.
pub fn check_write(
    kind: &KindDef,
    writer: PartnerKind,
    fields: &serde_json::Map<String, Value>,
    current: Option<&BTreeMap<String, Value>>,
) -> Result<BTreeMap<String, Value>, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for (name, value) in fields {
        let Some(def) = kind.field(name) else {
            problems.push(FieldProblem::new(
                name,
                "unknown_field",
                format!(
                    "record kind `{}` has no field `{name}`; its fields are: {}",
                    kind.id,
                    kind.fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        };
        if !def.writable_by.contains(&writer) {
            problems.push(FieldProblem::new(
                name,
                "not_writable",
                format!(
                    "field `{name}` is written by {} partners only; leave it out",
                    def.writable_by
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            ));
            continue;
        }
        match check_value(def, value) {
            Ok(()) => {
                out.insert(name.clone(), value.clone());
            }
            Err(why) => problems.push(FieldProblem::new(name, "wrong_type", why)),
        }
    }
    if let Some(current) = current {
        for def in &kind.fields {
            if !def.writable_by.contains(&writer)
                && let Some(v) = current.get(&def.name)
            {
                out.insert(def.name.clone(), v.clone());
            }
        }
    }
    for def in kind.fields.iter().filter(|d| d.required) {
        let given = fields.contains_key(&def.name);
        if !out.contains_key(&def.name) && !given && def.writable_by.contains(&writer) {
            problems.push(FieldProblem::new(
                &def.name,
                "missing_required",
                format!(
                    "field `{}` ({}) is required in every `{}` record",
                    def.name,
                    def.ty.name(),
                    kind.id
                ),
            ));
        }
    }
    problems.sort_by(|a, b| a.field.cmp(&b.field));
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Checks one value against its field's declared type.
pub fn check_value(def: &FieldDef, v: &Value) -> Result<(), String> {
    let string = |max: usize| -> Result<&str, String> {
        let s = v
            .as_str()
            .ok_or_else(|| format!("must be a string, not {}", json_type(v)))?;
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().count() > max {
            return Err(format!("must be at most {max} characters"));
        }
        Ok(s)
    };
    match &def.ty {
        FieldType::String => {
            let s = string(MAX_STRING_CHARS)?;
            if s.chars().any(char::is_control) {
                return Err("must be one line without control characters".into());
            }
        }
        FieldType::Text => {
            let s = string(MAX_TEXT_CHARS)?;
            if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err("must not hold control characters other than line breaks".into());
            }
        }
        FieldType::Date => {
            let s = string(10)?;
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| format!("must be a date `YYYY-MM-DD`, not `{s}`"))?;
        }
        FieldType::Datetime => {
            let s = string(64)?;
            DateTime::parse_from_rfc3339(s).map_err(|_| {
                "must be an RFC 3339 time with offset, e.g. `2026-11-02T21:40:00Z`".to_owned()
            })?;
        }
        FieldType::Integer => {
            v.as_i64()
                .ok_or_else(|| format!("must be a whole number, not {}", json_type(v)))?;
        }
        FieldType::Age => {
            let n = v
                .as_i64()
                .ok_or_else(|| format!("must be a whole number of years, not {}", json_type(v)))?;
            if !(0..=130).contains(&n) {
                return Err("must be between 0 and 130".into());
            }
        }
        FieldType::Boolean => {
            v.as_bool()
                .ok_or_else(|| format!("must be `true` or `false`, not {}", json_type(v)))?;
        }
        FieldType::Enum(values) => {
            let s = v.as_str().unwrap_or_default();
            if !values.iter().any(|x| x == s) {
                return Err(format!("must be one of: {}", values.join(", ")));
            }
        }
        FieldType::Phone => {
            let s = string(32)?;
            let digits = s.chars().filter(char::is_ascii_digit).count();
            let ok = s
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c));
            if !ok || !(7..=15).contains(&digits) {
                return Err(
                    "must be a phone number: 7 to 15 digits, with optional `+`, spaces, `-`, \
                     `(`, `)` and `.`"
                        .into(),
                );
            }
        }
        FieldType::Address => {
            let obj = v.as_object().ok_or_else(|| {
                format!(
                    "must be an object with `street`, `city`, `state` and `zip`, not {}",
                    json_type(v)
                )
            })?;
            for k in obj.keys() {
                if !["street", "city", "state", "zip"].contains(&k.as_str()) {
                    return Err(format!(
                        "unknown address part `{k}`; use `street`, `city`, `state` and `zip`"
                    ));
                }
            }
            for k in ["city", "state", "zip"] {
                let part = obj.get(k).and_then(Value::as_str).unwrap_or_default();
                if part.trim().is_empty() || part.chars().count() > 128 {
                    return Err(format!("address part `{k}` must be a non-empty string"));
                }
            }
            let zip = obj.get("zip").and_then(Value::as_str).unwrap_or_default();
            if zip.len() < 5 || !zip.chars().take(5).all(|c| c.is_ascii_digit()) {
                return Err("address `zip` must start with five digits".into());
            }
        }
        FieldType::List => {
            let items = v
                .as_array()
                .ok_or_else(|| format!("must be a list of strings, not {}", json_type(v)))?;
            if items.len() > MAX_LIST_ITEMS {
                return Err(format!("must hold at most {MAX_LIST_ITEMS} items"));
            }
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| "must hold only strings".to_owned())?;
                if s.chars().count() > MAX_STRING_CHARS || s.chars().any(char::is_control) {
                    return Err(format!(
                        "each item must be one line of at most {MAX_STRING_CHARS} characters"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;

    fn field(name: &str, ty: FieldType, required: bool, writers: &[PartnerKind]) -> FieldDef {
        FieldDef {
            name: name.into(),
            ty,
            labels: BTreeSet::new(),
            writable_by: writers.iter().copied().collect(),
            required,
            description: String::new(),
        }
    }

    fn kind() -> KindDef {
        let p = [PartnerKind::Police];
        KindDef {
            id: "referral".into(),
            owner: PartnerKind::Police,
            description: String::new(),
            fields: vec![
                field("reason", FieldType::Text, true, &p),
                field("age", FieldType::Age, false, &p),
                field("phone", FieldType::Phone, false, &p),
                field(
                    "urgency",
                    FieldType::Enum(vec!["ROUTINE".into(), "URGENT".into()]),
                    true,
                    &p,
                ),
                field(
                    "status",
                    FieldType::Enum(vec!["SUBMITTED".into(), "RECEIVED".into()]),
                    true,
                    &[PartnerKind::MentalHealth],
                ),
            ],
        }
    }

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_problem_is_named() {
        let body = map(json!({"reason": 3, "age": 200, "nope": 1, "status": "RECEIVED"}));
        let problems = check_write(&kind(), PartnerKind::Police, &body, None).unwrap_err();
        let got: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.code))
            .collect();
        assert_eq!(
            got,
            vec![
                ("age", "wrong_type"),
                ("nope", "unknown_field"),
                ("reason", "wrong_type"),
                ("status", "not_writable"),
                ("urgency", "missing_required"),
            ]
        );
    }

    #[test]
    fn fields_of_other_writers_are_kept_from_the_current_version() {
        let current = BTreeMap::from([
            ("reason".to_owned(), json!("old")),
            ("status".to_owned(), json!("RECEIVED")),
        ]);
        let body = map(json!({"reason": "new", "urgency": "URGENT", "phone": "+1 555 010 0199"}));
        let out = check_write(&kind(), PartnerKind::Police, &body, Some(&current)).unwrap();
        assert_eq!(out["reason"], "new");
        assert_eq!(out["status"], "RECEIVED");
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn value_types() {
        let d = |ty| field("f", ty, false, &[PartnerKind::Police]);
        assert!(check_value(&d(FieldType::Date), &json!("2026-02-30")).is_err());
        assert!(check_value(&d(FieldType::Date), &json!("2026-02-28")).is_ok());
        assert!(check_value(&d(FieldType::Datetime), &json!("2026-02-28 10:00")).is_err());
        assert!(check_value(&d(FieldType::Datetime), &json!("2026-02-28T10:00:00Z")).is_ok());
        assert!(check_value(&d(FieldType::Phone), &json!("call me")).is_err());
        assert!(check_value(&d(FieldType::Boolean), &json!("yes")).is_err());
        assert!(check_value(&d(FieldType::String), &json!("a\nb")).is_err());
        assert!(check_value(&d(FieldType::Text), &json!("a\nb")).is_ok());
        assert!(check_value(&d(FieldType::List), &json!(["a", 1])).is_err());
        assert!(check_value(&d(FieldType::String), &Value::Null).is_err());
        let addr =
            json!({"street": "1 Main St", "city": "Metro City", "state": "ST", "zip": "00001"});
        assert!(check_value(&d(FieldType::Address), &addr).is_ok());
        let bad = json!({"city": "Metro City", "state": "ST", "zip": "x", "county": "y"});
        assert!(check_value(&d(FieldType::Address), &bad).is_err());
    }
}

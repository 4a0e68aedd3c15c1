//! Checking one record-kind file (`kinds/*.toml`): the kind's id and owner, and each field's
//! name, type, values, sensitivity labels and who may write it.

use std::collections::BTreeSet;

use toml_edit::{Item, TableLike};

use super::super::diag::{Report, SourceFile, choices_hint};
use super::super::model::{FieldDef, FieldType, KindDef, Label};
use super::{Cx, Sp, Span, parse_doc};
use crate::domain::{PartnerId, PartnerKind};

const KIND_FILE_KEYS: [&str; 2] = ["kind", "field"];
const KIND_KEYS: [&str; 3] = ["id", "owner", "description"];
const FIELD_KEYS: [&str; 7] = [
    "name",
    "type",
    "values",
    "labels",
    "writable_by",
    "required",
    "description",
];
const PARTNER_KINDS: [&str; 3] = ["police", "mental-health", "compliance"];

/// Checks one record-kind file; returns the kind when its id and owner are sound.
pub(super) fn check_kind(f: &SourceFile, report: &mut Report) -> Option<Sp<KindDef>> {
    let doc = parse_doc(f, report)?;
    let mut cx = Cx { file: f, report };
    let root: &dyn TableLike = doc.as_table();
    cx.check_keys(root, &KIND_FILE_KEYS, "a record-kind file");
    let Some(kt) = root.get("kind").and_then(Item::as_table_like) else {
        cx.error(
            "missing-key",
            None,
            "record-kind file has no `[kind]` table".into(),
            Some("start the file with `[kind]`, `id = ...`, `owner = ...`".into()),
        );
        return None;
    };
    let kspan = root.get("kind").and_then(Item::span);
    cx.check_keys(kt, &KIND_KEYS, "`[kind]`");
    let id = cx.string(kt, "id", true, "`[kind]`", &kspan);
    let owner = cx.string(kt, "owner", true, "`[kind]`", &kspan);
    let description = cx.string(kt, "description", false, "`[kind]`", &kspan);
    let owner_kind = owner.as_ref().and_then(|o| {
        let k = o.v.parse::<PartnerKind>().ok();
        if k.is_none() {
            cx.error(
                "unknown-partner-kind",
                o.span.clone(),
                format!("unknown partner kind `{}`", o.v),
                Some(choices_hint(&o.v, &PARTNER_KINDS)),
            );
        }
        k
    });
    if let Some(id) = &id
        && id.v.parse::<PartnerId>().is_err()
    {
        cx.error(
            "invalid-id",
            id.span.clone(),
            format!("record kind id `{}` is not a valid id", id.v),
            Some("use lowercase letters, digits, `-` and `_`, starting with a letter".into()),
        );
    }
    let mut fields: Vec<FieldDef> = Vec::new();
    let field_tables = cx.tables(root, "field");
    if field_tables.is_empty() {
        cx.error(
            "missing-key",
            kspan.clone(),
            "record kind has no `[[field]]`".into(),
            Some("declare each field under a `[[field]]` header".into()),
        );
    }
    for (t, span) in field_tables {
        if let Some(field) = check_field(&mut cx, t, &span, owner_kind, &fields) {
            fields.push(field);
        }
    }
    let (id, owner) = (id?, owner_kind?);
    Some(Sp {
        span: id.span,
        v: KindDef {
            id: id.v,
            owner,
            description: description.map(|d| d.v).unwrap_or_default(),
            fields,
        },
    })
}

/// Checks one `[[field]]` of a kind owned by `owner_kind`; `fields` are those declared before
/// it. Returns the field when its name is new and its type is sound.
fn check_field(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    span: &Span,
    owner_kind: Option<PartnerKind>,
    fields: &[FieldDef],
) -> Option<FieldDef> {
    cx.check_keys(t, &FIELD_KEYS, "`[[field]]`");
    let name = cx.string(t, "name", true, "`[[field]]`", span);
    let ty = cx.string(t, "type", true, "`[[field]]`", span);
    let values = cx.strings(t, "values", false, "`[[field]]`", span);
    let labels = cx
        .strings(t, "labels", true, "`[[field]]`", span)
        .unwrap_or_default();
    let writable = cx.strings(t, "writable_by", false, "`[[field]]`", span);
    let desc = cx.string(t, "description", false, "`[[field]]`", span);
    let required = cx.boolean(t, "required", "`[[field]]`").unwrap_or(false);
    let (Some(name), Some(ty)) = (name, ty) else {
        return None;
    };
    if fields.iter().any(|f| f.name == name.v) {
        cx.error(
            "duplicate",
            name.span.clone(),
            format!("field `{}` is declared twice", name.v),
            None,
        );
        return None;
    }
    let field_ty = match ty.v.as_str() {
        "string" => Some(FieldType::String),
        "text" => Some(FieldType::Text),
        "date" => Some(FieldType::Date),
        "datetime" => Some(FieldType::Datetime),
        "integer" => Some(FieldType::Integer),
        "age" => Some(FieldType::Age),
        "boolean" => Some(FieldType::Boolean),
        "phone" => Some(FieldType::Phone),
        "address" => Some(FieldType::Address),
        "list" => Some(FieldType::List),
        "enum" => match &values {
            Some(v) if !v.is_empty() => {
                Some(FieldType::Enum(v.iter().map(|s| s.v.clone()).collect()))
            }
            _ => {
                cx.error(
                    "missing-key",
                    ty.span.clone(),
                    format!("enum field `{}` has no `values`", name.v),
                    Some("list the allowed values: `values = [\"A\", \"B\"]`".into()),
                );
                None
            }
        },
        other => {
            cx.error(
                "unknown-type",
                ty.span.clone(),
                format!("unknown field type `{other}`"),
                Some(choices_hint(other, &FieldType::NAMES)),
            );
            None
        }
    };
    if values.is_some() && ty.v != "enum" {
        let span = t.key("values").and_then(|k| k.span());
        cx.error(
            "unexpected-key",
            span,
            format!(
                "`values` is only for enum fields, and `{}` is `{}`",
                name.v, ty.v
            ),
            Some("remove `values` or set `type = \"enum\"`".into()),
        );
    }
    let mut label_set = BTreeSet::new();
    for l in &labels {
        match Label::parse(&l.v) {
            Some(label) => {
                label_set.insert(label);
            }
            None => {
                let names: Vec<&str> = Label::ALL.iter().map(|l| l.as_str()).collect();
                cx.error(
                    "unknown-label",
                    l.span.clone(),
                    format!("unknown sensitivity label `{}`", l.v),
                    Some(choices_hint(&l.v, &names)),
                );
            }
        }
    }
    let mut writable_by = BTreeSet::new();
    for w in writable.unwrap_or_default() {
        match w.v.parse::<PartnerKind>() {
            Ok(k) => {
                writable_by.insert(k);
            }
            Err(_) => cx.error(
                "unknown-partner-kind",
                w.span.clone(),
                format!("unknown partner kind `{}`", w.v),
                Some(choices_hint(&w.v, &PARTNER_KINDS)),
            ),
        }
    }
    if writable_by.is_empty()
        && let Some(o) = owner_kind
    {
        writable_by.insert(o);
    }
    Some(FieldDef {
        name: name.v,
        ty: field_ty?,
        labels: label_set,
        writable_by,
        required,
        description: desc.map(|d| d.v).unwrap_or_default(),
    })
}

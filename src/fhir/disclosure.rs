//! A disclosure as FHIR: the record the read service disclosed, as a `Task` (referrals) or a
//! `Basic` (every other kind), with DS4P security labels and a `Provenance` naming the
//! disclosure-log entry.
//!
//! Nothing is decided here: the fields are exactly those of the read service's answer (already
//! decided, logged and redacted, the police status view applied). The labels are derived from
//! the labels the policy gives the fields actually disclosed:
//!
//! - confidentiality (v3-Confidentiality): `V` when psychotherapy notes are disclosed, else `R`;
//! - sensitivity (v3-ActCode): `ETH` for `sud` fields, `PSY` for `clinical` fields, `PSYTHPN`
//!   for psychotherapy notes;
//! - with Part 2 fields: the privacy law `42CFRPart2`, the refrain `NORDSCLCD`, and the
//!   42 CFR 2.32 notice as the resource's narrative (status `additional`).
//!
//! Security role: a Task's `status` is computed from the status the caller was shown (the
//! police view's `IN_PROGRESS`, never the finer state), and a withheld status stays withheld
//! (`_status` with data-absent-reason `masked`).

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::codes::{self, ACT_CODE, CONFIDENTIALITY};
use super::model::{
    self, Address, Basic, Bundle, BundleEntry, BundleLink, BundleSearch, CodeableConcept, Coding,
    Extension, Identifier, Meta, Narrative, PrimitiveElement, Provenance, ProvenanceAgent,
    ProvenanceEntity, Reference, Task, TaskInput,
};
use super::partner_ref;
use crate::domain::{Label, PartnerId};
use crate::policy::PolicySet;
use crate::service::DisclosedRecord;
use crate::service::read::REFERRAL_KIND;

/// A disclosed record as FHIR.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The resource (`Task` or `Basic`) as JSON.
    pub resource: Value,
    /// The entry's URL inside a bundle (`urn:uuid:`).
    pub full_url: String,
    /// The Provenance naming the log entry, targeting `full_url`.
    pub provenance: Provenance,
    /// `V` or `R`.
    pub confidentiality: &'static str,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn str_of<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The security labels of a disclosure and its narrative (the Part 2 notice).
fn labels(body: &Value, policy: &PolicySet) -> (Vec<Coding>, Option<Narrative>, &'static str) {
    let kind = str_of(body, "kind").unwrap_or_default();
    let schema = policy.kinds.get(kind);
    let mut found: BTreeSet<Label> = BTreeSet::new();
    if let (Some(fields), Some(k)) = (body.get("fields").and_then(Value::as_object), schema) {
        for name in fields.keys() {
            if let Some(f) = k.field(name) {
                found.extend(f.labels.iter().copied());
            }
        }
    }
    let confidentiality = if found.contains(&Label::PsychotherapyNotes) {
        "V"
    } else {
        "R"
    };
    let mut security = vec![Coding::new(
        CONFIDENTIALITY,
        confidentiality,
        if confidentiality == "V" {
            "very restricted"
        } else {
            "restricted"
        },
    )];
    for l in &found {
        if let Some((code, display)) = codes::hl7_sensitivity(*l) {
            security.push(Coding::new(ACT_CODE, code, display));
        }
    }
    let notices: Vec<&str> = body
        .get("notices")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut narrative = None;
    if !notices.is_empty() {
        security.push(Coding::new(ACT_CODE, "42CFRPart2", "42 CFR Part2"));
        let paragraphs: String = notices
            .iter()
            .map(|n| format!("<p>{}</p>", escape(n)))
            .collect();
        narrative = Some(Narrative {
            status: "additional".into(),
            div: format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{paragraphs}</div>"),
        });
    }
    for r in body
        .get("refrains")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let display = if r == "NORDSCLCD" {
            "no redisclosure without consent directive"
        } else {
            ""
        };
        security.push(Coding::new(ACT_CODE, r, display));
    }
    (security, narrative, confidentiality)
}

/// A JSON value as typed FHIR values.
enum Typed {
    String(String),
    Boolean(bool),
    Integer(i64),
    Decimal(serde_json::Number),
    Address(Address),
}

fn typed(v: &Value) -> Vec<Typed> {
    match v {
        Value::String(s) if !s.trim().is_empty() => vec![Typed::String(s.clone())],
        Value::Bool(b) => vec![Typed::Boolean(*b)],
        Value::Number(n) => match n.as_i64().filter(|i| i32::try_from(*i).is_ok()) {
            Some(i) => vec![Typed::Integer(i)],
            None => vec![Typed::Decimal(n.clone())],
        },
        Value::Array(items) => items.iter().flat_map(typed).collect(),
        Value::Object(o) => {
            let text = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let known = o
                .keys()
                .all(|k| matches!(k.as_str(), "street" | "city" | "state" | "zip"));
            if known && !o.is_empty() {
                vec![Typed::Address(Address {
                    line: text("street").into_iter().collect(),
                    city: text("city"),
                    state: text("state"),
                    postal_code: text("zip"),
                })]
            } else {
                vec![Typed::String(v.to_string())]
            }
        }
        _ => Vec::new(),
    }
}

fn field_type(kind: &str, field: &str) -> CodeableConcept {
    CodeableConcept::of(Coding::new(
        &codes::field_system(),
        &format!("{kind}.{field}"),
        "",
    ))
}

fn task_inputs(kind: &str, field: &str, v: &Value) -> Vec<TaskInput> {
    typed(v)
        .into_iter()
        .map(|t| {
            let mut i = TaskInput {
                type_: field_type(kind, field),
                ..TaskInput::default()
            };
            match t {
                Typed::String(s) => i.value_string = Some(s),
                Typed::Boolean(b) => i.value_boolean = Some(b),
                Typed::Integer(n) => i.value_integer = Some(n),
                Typed::Decimal(n) => i.value_decimal = Some(n),
                Typed::Address(a) => i.value_address = Some(a),
            }
            i
        })
        .collect()
}

fn field_extension(field: &str, v: &Value) -> Extension {
    let mut e = Extension::new(&codes::record_field_ext());
    e.extension.push(Extension::code("name", field));
    for t in typed(v) {
        let mut value = Extension::new("value");
        match t {
            Typed::String(s) => value.value_string = Some(s),
            Typed::Boolean(b) => value.value_boolean = Some(b),
            Typed::Integer(n) => value.value_integer = Some(n),
            Typed::Decimal(n) => value.value_decimal = Some(n),
            Typed::Address(a) => value.value_address = Some(a),
        }
        e.extension.push(value);
    }
    e
}

fn is_partner(policy: &PolicySet, s: &str) -> Option<PartnerId> {
    s.parse::<PartnerId>()
        .ok()
        .filter(|p| policy.partners.get(p).is_some())
}

fn partner_reference(policy: &PolicySet, p: &PartnerId) -> Reference {
    partner_ref(
        p.as_str(),
        policy.partners.get(p).map(|x| x.display_name.as_str()),
    )
}

/// A referral as a `Task`.
fn task(body: &Value, policy: &PolicySet, meta: Meta, text: Option<Narrative>) -> Task {
    let id = str_of(body, "id").unwrap_or_default();
    let mut t = Task {
        resource_type: "Task".into(),
        id: model::is_fhir_id(id).then(|| id.to_owned()),
        meta: Some(meta),
        text,
        identifier: vec![Identifier::new(&codes::record_system(REFERRAL_KIND), id)],
        based_on: vec![Reference {
            type_: Some("ServiceRequest".into()),
            identifier: Some(Identifier::new(&codes::record_system(REFERRAL_KIND), id)),
            ..Reference::default()
        }],
        intent: "order".into(),
        ..Task::default()
    };
    let fields = body.get("fields").and_then(Value::as_object);
    let shown = fields
        .and_then(|f| f.get("status"))
        .and_then(Value::as_str)
        .and_then(|s| codes::task_status(s).map(|t| (s, t)));
    match shown {
        Some((state, status)) => {
            t.status = Some(status.to_owned());
            t.business_status = Some(CodeableConcept::of(Coding::new(
                &codes::referral_status_system(),
                state,
                "",
            )));
        }
        None => {
            t.status_ext = Some(PrimitiveElement {
                extension: vec![Extension::code(codes::DATA_ABSENT_REASON_EXT, "masked")],
            });
        }
    }
    for (name, v) in fields.into_iter().flatten() {
        match name.as_str() {
            "status" if shown.is_some() => {}
            "urgency" if v.as_str().and_then(codes::priority_of_urgency).is_some() => {
                t.priority = v
                    .as_str()
                    .and_then(codes::priority_of_urgency)
                    .map(str::to_owned);
            }
            "status_updated_at"
                if v.as_str()
                    .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok()) =>
            {
                t.last_modified = v.as_str().map(str::to_owned);
            }
            "referring_agency" if v.as_str().and_then(|s| is_partner(policy, s)).is_some() => {
                t.requester = v
                    .as_str()
                    .and_then(|s| is_partner(policy, s))
                    .map(|p| partner_reference(policy, &p));
            }
            "receiving_agency" if v.as_str().and_then(|s| is_partner(policy, s)).is_some() => {
                t.owner = v
                    .as_str()
                    .and_then(|s| is_partner(policy, s))
                    .map(|p| partner_reference(policy, &p));
            }
            "reason" if v.as_str().is_some_and(|s| !s.trim().is_empty()) => {
                t.reason_code = v.as_str().map(CodeableConcept::text);
            }
            _ => t.input.extend(task_inputs(REFERRAL_KIND, name, v)),
        }
    }
    t
}

/// A record of any other kind as a `Basic`.
fn basic(body: &Value, meta: Meta, text: Option<Narrative>) -> Basic {
    let kind = str_of(body, "kind").unwrap_or_default();
    let id = str_of(body, "id").unwrap_or_default();
    Basic {
        resource_type: "Basic".into(),
        id: model::is_fhir_id(id).then(|| id.to_owned()),
        meta: Some(meta),
        text,
        extension: body
            .get("fields")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| field_extension(k, v))
            .collect(),
        identifier: vec![Identifier::new(&codes::record_system(kind), id)],
        code: CodeableConcept::of(Coding::new(&codes::kind_system(), kind, "")),
    }
}

/// Renders one disclosed record for `recipient`.
pub fn render(d: &DisclosedRecord, policy: &PolicySet, recipient: &PartnerId) -> Rendered {
    let body = &d.body;
    let (security, text, confidentiality) = labels(body, policy);
    let meta = Meta {
        version_id: body.get("version").map(|v| v.to_string()),
        last_updated: Some(time(d.logged_at)),
        security,
        ..Meta::default()
    };
    let resource = if str_of(body, "kind") == Some(REFERRAL_KIND) {
        model::to_value(&task(body, policy, meta, text))
    } else {
        model::to_value(&basic(body, meta, text))
    };
    let full_url = format!("urn:uuid:{}", Uuid::new_v4());
    let purpose = str_of(body, "purpose").unwrap_or_default();
    let (system, code, display) = codes::purpose_coding(purpose);
    let provenance = Provenance {
        resource_type: "Provenance".into(),
        id: Some(format!("disclosure-{}", d.disclosure_id)),
        target: vec![Reference {
            reference: Some(full_url.clone()),
            ..Reference::default()
        }],
        recorded: time(d.logged_at),
        policy: str_of(body, "decision_id")
            .map(|id| format!("urn:uuid:{id}"))
            .into_iter()
            .collect(),
        reason: vec![CodeableConcept::of(Coding::new(&system, &code, &display))],
        agent: vec![
            ProvenanceAgent {
                type_: Some(CodeableConcept::of(Coding::new(
                    codes::PROVENANCE_PARTICIPANT,
                    "performer",
                    "Performer",
                ))),
                who: Reference {
                    type_: Some("Device".into()),
                    display: Some("coresponse-gateway".into()),
                    ..Reference::default()
                },
            },
            ProvenanceAgent {
                type_: Some(CodeableConcept::of(Coding::new(
                    codes::PARTICIPATION_TYPE,
                    "IRCP",
                    "information recipient",
                ))),
                who: partner_reference(policy, recipient),
            },
        ],
        entity: vec![ProvenanceEntity {
            extension: vec![Extension {
                extension: vec![
                    Extension::string("index", &d.disclosure_id.leaf_index.to_string()),
                    Extension::string("hash", &d.disclosure_id.leaf_hash_b64()),
                ],
                ..Extension::new(&codes::log_leaf_ext())
            }],
            role: "source".into(),
            what: Reference {
                identifier: Some(Identifier::new(
                    &codes::log_entry_system(),
                    &d.disclosure_id.to_string(),
                )),
                display: Some(format!("disclosure log entry {}", d.disclosure_id)),
                ..Reference::default()
            },
        }],
    };
    Rendered {
        resource,
        full_url,
        provenance,
        confidentiality,
    }
}

fn bundle_meta(all: &[Rendered]) -> Meta {
    let level = if all.iter().any(|r| r.confidentiality == "V") {
        ("V", "very restricted")
    } else {
        ("R", "restricted")
    };
    Meta {
        security: vec![Coding::new(CONFIDENTIALITY, level.0, level.1)],
        ..Meta::default()
    }
}

/// The answer to a `/v1` read with `Accept: application/fhir+json`: a `collection` Bundle of
/// each disclosed resource followed by its Provenance.
pub fn collection(
    records: &[DisclosedRecord],
    policy: &PolicySet,
    recipient: &PartnerId,
    now: DateTime<Utc>,
) -> Bundle {
    let rendered: Vec<Rendered> = records
        .iter()
        .map(|d| render(d, policy, recipient))
        .collect();
    let mut entry = Vec::new();
    for r in &rendered {
        entry.push(BundleEntry {
            full_url: Some(r.full_url.clone()),
            resource: r.resource.clone(),
            search: None,
        });
        entry.push(BundleEntry {
            full_url: Some(format!("urn:uuid:{}", Uuid::new_v4())),
            resource: model::to_value(&r.provenance),
            search: None,
        });
    }
    Bundle {
        resource_type: "Bundle".into(),
        id: Some(Uuid::new_v4().to_string()),
        meta: Some(bundle_meta(&rendered)),
        type_: "collection".into(),
        timestamp: Some(time(now)),
        entry,
        ..Bundle::default()
    }
}

/// A `searchset` Bundle of one disclosed referral as a Task (`mode: match`), with its
/// Provenance (`mode: include`) when asked for.
pub fn task_search(
    d: &DisclosedRecord,
    policy: &PolicySet,
    recipient: &PartnerId,
    base: &str,
    self_url: &str,
    with_provenance: bool,
    now: DateTime<Utc>,
) -> Bundle {
    let mut r = render(d, policy, recipient);
    let task_url = match str_of(&d.body, "id") {
        Some(id) if model::is_fhir_id(id) => format!("{base}/Task/{id}"),
        _ => r.full_url.clone(),
    };
    r.provenance.target = vec![Reference {
        reference: Some(task_url.clone()),
        ..Reference::default()
    }];
    let mut entry = vec![BundleEntry {
        full_url: Some(task_url),
        resource: r.resource.clone(),
        search: Some(BundleSearch {
            mode: "match".into(),
        }),
    }];
    if with_provenance {
        entry.push(BundleEntry {
            full_url: Some(format!("urn:uuid:{}", Uuid::new_v4())),
            resource: model::to_value(&r.provenance),
            search: Some(BundleSearch {
                mode: "include".into(),
            }),
        });
    }
    Bundle {
        resource_type: "Bundle".into(),
        id: Some(Uuid::new_v4().to_string()),
        meta: Some(bundle_meta(std::slice::from_ref(&r))),
        type_: "searchset".into(),
        timestamp: Some(time(now)),
        total: Some(1),
        link: vec![BundleLink {
            relation: "self".into(),
            url: self_url.to_owned(),
        }],
        entry,
    }
}

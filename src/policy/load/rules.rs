//! Checking one `[[rule]]` of an MOU, step by step: its keys as written, then its effect,
//! recipients, roles, purposes and record kind against the registry, its legal basis, its
//! field profile, the CJI it releases, the encryption keys it needs and the hard limits.

use std::collections::{BTreeMap, BTreeSet};

use toml_edit::TableLike;

use super::super::diag::choices_hint;
use super::super::limits::{self, FieldFlow};
use super::super::model::{
    EMERGENCY_PURPOSE, Effect, KindDef, Label, LegalBasis, PURPOSES, Rule, Transform,
    is_known_purpose,
};
use super::mous::{RuleSpans, partner_hint};
use super::transforms::{fits_hint, parse_transform};
use super::{Cx, PartnerFacts, Sp, Span};
use crate::domain::{PartnerId, PartnerKind, Purpose, Role};

const RULE_KEYS: [&str; 12] = [
    "id",
    "title",
    "effect",
    "recipients",
    "roles",
    "purposes",
    "kind",
    "legal_basis",
    "citation",
    "fields",
    "release_cji",
    "description",
];

/// The keys of one `[[rule]]` as written, before they are checked against the registry.
struct RuleKeys {
    id: Option<Sp<String>>,
    title: Option<Sp<String>>,
    effect: Option<Sp<String>>,
    recipients: Vec<Sp<String>>,
    roles: Vec<Sp<String>>,
    purposes: Vec<Sp<String>>,
    kind: Option<Sp<String>>,
    release_cji: Vec<Sp<String>>,
}

/// What a rule is checked against: its MOU's parties, the registered partners and the declared
/// record kinds.
struct Against<'a> {
    parties: &'a BTreeSet<PartnerId>,
    partners: &'a BTreeMap<PartnerId, PartnerFacts>,
    kinds: &'a BTreeMap<String, KindDef>,
}

/// What a permit rule grants, for the checks that span its parts.
struct Grant<'a> {
    recipients: &'a BTreeSet<PartnerId>,
    purposes: &'a BTreeSet<Purpose>,
    fields: &'a BTreeMap<String, Transform>,
    field_spans: &'a BTreeMap<String, Span>,
    release_cji: &'a BTreeSet<String>,
}

/// Checks one `[[rule]]` of an MOU whose parties are `parties`; every problem is reported, and
/// the rule is returned only when its id, kind and legal basis are sound.
pub(super) fn check_rule(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    span: &Span,
    parties: &BTreeSet<PartnerId>,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
    kinds: &BTreeMap<String, KindDef>,
) -> Option<(Rule, RuleSpans)> {
    let against = Against {
        parties,
        partners,
        kinds,
    };
    let keys = read_keys(cx, t, span);
    let effect = effect(cx, keys.effect.as_ref());
    let recipients = recipients(cx, &keys.recipients, &against);
    let roles = roles(cx, &keys.roles, &recipients, partners);
    let purposes = purposes(cx, &keys.purposes);
    let kind = kind(cx, keys.kind.as_ref(), &against);
    let basis = legal_basis(cx, t, span, effect, &purposes);
    if let Some(LegalBasis::MedicalEmergency { .. }) = &basis {
        check_medical_emergency(cx, &keys, &recipients, partners);
    }
    let mut rs = RuleSpans {
        id: keys.id.as_ref().and_then(|i| i.span.clone()),
        fields: BTreeMap::new(),
    };
    let fields = field_profile(cx, t, span, effect, kind, &mut rs.fields);
    let release_cji = release_cji(cx, &keys.release_cji, kind);
    let grant = Grant {
        recipients: &recipients,
        purposes: &purposes,
        fields: &fields,
        field_spans: &rs.fields,
        release_cji: &release_cji,
    };
    check_encryption_keys(cx, &grant, partners);
    if let (Some(k), Some(basis)) = (kind, &basis)
        && effect == Effect::Permit
    {
        check_hard_limits(cx, k, basis, &grant, partners);
    }

    let (id, kind, basis) = (keys.id?, kind?, basis?);
    Some((
        Rule {
            id: id.v,
            title: keys.title.map(|t| t.v).unwrap_or_default(),
            effect,
            recipients,
            roles,
            purposes,
            kind: kind.id.clone(),
            basis,
            fields,
            release_cji,
        },
        rs,
    ))
}

/// Reads the rule's keys, reporting unknown ones and missing required ones.
fn read_keys(cx: &mut Cx<'_>, t: &dyn TableLike, span: &Span) -> RuleKeys {
    let w = "`[[rule]]`";
    cx.check_keys(t, &RULE_KEYS, w);
    let id = cx.string(t, "id", true, w, span);
    let title = cx.string(t, "title", false, w, span);
    let effect = cx.string(t, "effect", false, w, span);
    let recipients = cx
        .strings(t, "recipients", true, w, span)
        .unwrap_or_default();
    let roles = cx.strings(t, "roles", true, w, span).unwrap_or_default();
    let purposes = cx.strings(t, "purposes", true, w, span).unwrap_or_default();
    let kind = cx.string(t, "kind", true, w, span);
    let release_cji = cx
        .strings(t, "release_cji", false, w, span)
        .unwrap_or_default();
    let _ = cx.string(t, "description", false, w, span);
    RuleKeys {
        id,
        title,
        effect,
        recipients,
        roles,
        purposes,
        kind,
        release_cji,
    }
}

/// `effect`: `permit` (the default) or `deny`.
fn effect(cx: &mut Cx<'_>, effect_sp: Option<&Sp<String>>) -> Effect {
    match effect_sp.map(|e| e.v.as_str()) {
        None | Some("permit") => Effect::Permit,
        Some("deny") => Effect::Deny,
        Some(other) => {
            cx.error(
                "unknown-effect",
                effect_sp.and_then(|e| e.span.clone()),
                format!("unknown effect `{other}`"),
                Some(choices_hint(other, &["permit", "deny"])),
            );
            Effect::Permit
        }
    }
}

/// `recipients`: registered partners that are parties to the MOU.
fn recipients(
    cx: &mut Cx<'_>,
    recipients_sp: &[Sp<String>],
    against: &Against<'_>,
) -> BTreeSet<PartnerId> {
    let partners = against.partners;
    let mut recipients = BTreeSet::new();
    for r in recipients_sp {
        let Ok(pid) = r.v.parse::<PartnerId>() else {
            cx.error(
                "unknown-partner",
                r.span.clone(),
                format!("recipient `{}` is not a registered partner", r.v),
                Some(partner_hint(&r.v, partners)),
            );
            continue;
        };
        if !partners.contains_key(&pid) {
            cx.error(
                "unknown-partner",
                r.span.clone(),
                format!("recipient `{}` is not a registered partner", r.v),
                Some(partner_hint(&r.v, partners)),
            );
        } else if !against.parties.contains(&pid) {
            cx.error("not-a-party", r.span.clone(), format!("recipient `{}` is not a party to this MOU", r.v), Some("add it to `parties` in `[mou]` (and to the signed document), or remove it here".into()));
        }
        recipients.insert(pid);
    }
    recipients
}

/// `roles`: each declared by some recipient (when the recipients declare any).
fn roles(
    cx: &mut Cx<'_>,
    roles_sp: &[Sp<String>],
    recipients: &BTreeSet<PartnerId>,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
) -> BTreeSet<Role> {
    let declared_roles: BTreeSet<&Role> = recipients
        .iter()
        .filter_map(|p| partners.get(p))
        .flat_map(|f| f.roles.iter())
        .collect();
    let mut roles = BTreeSet::new();
    for r in roles_sp {
        match r.v.parse::<Role>() {
            Ok(role) => {
                if !declared_roles.is_empty() && !declared_roles.contains(&role) {
                    let names: Vec<&str> = declared_roles.iter().map(|r| r.as_str()).collect();
                    cx.error(
                        "unknown-role",
                        r.span.clone(),
                        format!(
                            "role `{}` is not declared by any recipient of this rule",
                            r.v
                        ),
                        Some(format!(
                            "{}; roles are declared per partner in `partners.toml`",
                            choices_hint(&r.v, &names)
                        )),
                    );
                }
                roles.insert(role);
            }
            Err(e) => cx.error("unknown-role", r.span.clone(), e.to_string(), None),
        }
    }
    roles
}

/// `purposes`: known purposes of use.
fn purposes(cx: &mut Cx<'_>, purposes_sp: &[Sp<String>]) -> BTreeSet<Purpose> {
    let mut purposes = BTreeSet::new();
    for p in purposes_sp {
        let names: Vec<&str> = PURPOSES.iter().map(|(p, _)| *p).collect();
        match p.v.parse::<Purpose>() {
            Ok(purpose) if is_known_purpose(&p.v) => {
                purposes.insert(purpose);
            }
            _ => cx.error(
                "unknown-purpose",
                p.span.clone(),
                format!("unknown purpose of use `{}`", p.v),
                Some(choices_hint(&p.v, &names)),
            ),
        }
    }
    purposes
}

/// `kind`: a declared record kind that some party to the MOU holds.
fn kind<'k>(
    cx: &mut Cx<'_>,
    kind_sp: Option<&Sp<String>>,
    against: &Against<'k>,
) -> Option<&'k KindDef> {
    let (partners, parties) = (against.partners, against.parties);
    let kind = kind_sp.and_then(|k| {
        let found = against.kinds.get(&k.v);
        if found.is_none() {
            let names: Vec<&str> = against.kinds.keys().map(String::as_str).collect();
            cx.error(
                "unknown-kind",
                k.span.clone(),
                format!("unknown record kind `{}`", k.v),
                Some(format!(
                    "{}; kinds are declared under `kinds/`",
                    choices_hint(&k.v, &names)
                )),
            );
        }
        found
    });
    if let Some(k) = kind
        && !partners.is_empty()
        && !parties
            .iter()
            .any(|p| partners.get(p).is_some_and(|f| f.kind == k.owner))
    {
        cx.error(
            "no-holder",
            kind_sp.and_then(|k| k.span.clone()),
            format!(
                "no party to this MOU holds `{}` records (they are owned by {} partners)",
                k.id, k.owner
            ),
            Some(
                "add the holding agency to `parties`, or move the rule to an MOU it signed".into(),
            ),
        );
    }
    kind
}

/// The legal basis: checked for a permit rule; a deny rule has none (and gets `Consent`, which
/// it never uses).
fn legal_basis(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    span: &Span,
    effect: Effect,
    purposes: &BTreeSet<Purpose>,
) -> Option<LegalBasis> {
    if effect == Effect::Permit {
        check_basis(cx, t, span, purposes)
    } else {
        if let Some(k) = t.key("legal_basis") {
            cx.error(
                "unexpected-key",
                k.span(),
                "a deny rule has no legal basis".into(),
                Some("remove `legal_basis` from the deny rule".into()),
            );
        }
        Some(LegalBasis::Consent)
    }
}

/// 42 CFR 2.51: a medical-emergency rule discloses to medical personnel only, never to police,
/// and each of its roles must be a medical role of a recipient.
fn check_medical_emergency(
    cx: &mut Cx<'_>,
    keys: &RuleKeys,
    recipients: &BTreeSet<PartnerId>,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
) {
    for r in &keys.recipients {
        let Ok(pid) = r.v.parse::<PartnerId>() else {
            continue;
        };
        if partners
            .get(&pid)
            .is_some_and(|f| f.kind == PartnerKind::Police)
        {
            cx.error(
                "medical-emergency-police",
                r.span.clone(),
                format!(
                    "recipient `{}` is a police agency: a medical-emergency rule never \
                     discloses to police",
                    r.v
                ),
                Some(
                    "42 CFR 2.51 is for medical personnel; police use the `emergency` \
                     profile (HIPAA 164.512(j)), which never carries Part 2 fields"
                        .into(),
                ),
            );
        }
    }
    let medical: BTreeSet<&Role> = recipients
        .iter()
        .filter_map(|p| partners.get(p))
        .flat_map(|f| f.medical_roles.iter())
        .collect();
    for r in &keys.roles {
        if let Ok(role) = r.v.parse::<Role>()
            && !medical.contains(&role)
        {
            cx.error(
                "not-medical-role",
                r.span.clone(),
                format!(
                    "role `{}` is not marked medical by any recipient of this \
                     medical-emergency rule",
                    r.v
                ),
                Some(
                    "list it in the recipient's `medical_roles` in `partners.toml` (only \
                     medical personnel may receive under 42 CFR 2.51), or remove it here"
                        .into(),
                ),
            );
        }
    }
}

/// The field profile (`[rule.fields]`): each field of the kind with a transform that fits its
/// type. A permit rule needs one; a deny rule has none. Records where each field was written in
/// `spans`.
fn field_profile(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    span: &Span,
    effect: Effect,
    kind: Option<&KindDef>,
    spans: &mut BTreeMap<String, Span>,
) -> BTreeMap<String, Transform> {
    let mut fields = BTreeMap::new();
    match (t.get("fields"), effect) {
        (Some(item), Effect::Deny) => cx.error(
            "unexpected-key",
            t.key("fields").and_then(|k| k.span()).or(item.span()),
            "a deny rule has no field profile: it forbids the whole flow".into(),
            Some("remove `fields` from the deny rule".into()),
        ),
        (None, Effect::Permit) => cx.error(
            "missing-key",
            span.clone(),
            "permit rule has no `fields` profile".into(),
            Some("add `[rule.fields]` naming each field and its transform".into()),
        ),
        (Some(item), Effect::Permit) => match item.as_table_like() {
            None => cx.error(
                "wrong-type",
                item.span(),
                "`fields` must be a table of field = transform".into(),
                None,
            ),
            Some(ft) => {
                for (name, fitem) in ft.iter() {
                    let key_span = ft.key(name).and_then(|k| k.span());
                    let vspan = fitem.span().or(key_span.clone());
                    let Some(transform) = parse_transform(cx, fitem, &vspan) else {
                        continue;
                    };
                    if let Some(k) = kind {
                        check_field_transform(cx, k, name, &transform, &key_span, &vspan);
                    }
                    spans.insert(name.to_owned(), vspan);
                    fields.insert(name.to_owned(), transform);
                }
            }
        },
        (None, Effect::Deny) => {}
    }
    fields
}

/// One entry of a field profile: the kind has the field, and the transform fits its type.
fn check_field_transform(
    cx: &mut Cx<'_>,
    k: &KindDef,
    name: &str,
    transform: &Transform,
    key_span: &Span,
    vspan: &Span,
) {
    match k.field(name) {
        None => {
            let names: Vec<&str> = k.fields.iter().map(|f| f.name.as_str()).collect();
            cx.error(
                "unknown-field",
                key_span.clone(),
                format!("record kind `{}` has no field `{name}`", k.id),
                Some(choices_hint(name, &names)),
            );
        }
        Some(fd) if !transform.fits(&fd.ty) => {
            cx.error(
                "transform-type",
                vspan.clone(),
                format!(
                    "transform `{}` does not fit field `{name}` of type `{}`",
                    transform.describe(),
                    fd.ty.name()
                ),
                Some(fits_hint(&fd.ty)),
            );
        }
        Some(_) => {}
    }
}

/// `release_cji`: existing fields of the kind labelled `cji`.
fn release_cji(
    cx: &mut Cx<'_>,
    release_cji_sp: &[Sp<String>],
    kind: Option<&KindDef>,
) -> BTreeSet<String> {
    let mut release_cji = BTreeSet::new();
    for c in release_cji_sp {
        if let Some(k) = kind {
            match k.field(&c.v) {
                Some(fd) if fd.labels.contains(&Label::Cji) => {}
                Some(_) => cx.error(
                    "not-cji",
                    c.span.clone(),
                    format!("field `{}` is not labelled `cji`", c.v),
                    Some("list only criminal-justice-information fields in `release_cji`".into()),
                ),
                None => cx.error(
                    "unknown-field",
                    c.span.clone(),
                    format!("record kind `{}` has no field `{}`", k.id, c.v),
                    None,
                ),
            }
        }
        release_cji.insert(c.v.clone());
    }
    release_cji
}

/// Encryption needs a key for every recipient.
fn check_encryption_keys(
    cx: &mut Cx<'_>,
    grant: &Grant<'_>,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
) {
    let fields = grant.fields;
    if fields.values().any(|t| *t == Transform::Encrypt) {
        for r in grant.recipients {
            if partners.get(r).is_some_and(|f| !f.has_encryption_key) {
                let span = grant
                    .field_spans
                    .iter()
                    .find(|(n, _)| fields.get(*n) == Some(&Transform::Encrypt))
                    .and_then(|(_, s)| s.clone());
                cx.error("no-encryption-key", span, format!("transform `encrypt` needs an encryption key for recipient `{r}`, and it has none"), Some(format!("add `[partner.encryption]` with `jwk_file` to `{r}` in `partners.toml`")));
            }
        }
    }
}

/// Hard limits of a permit rule: the best case at validation (a consent naming every field).
/// One problem per field is reported.
fn check_hard_limits(
    cx: &mut Cx<'_>,
    k: &KindDef,
    basis: &LegalBasis,
    grant: &Grant<'_>,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
) {
    for (name, transform) in grant.fields {
        if *transform == Transform::Omit {
            continue;
        }
        let Some(fd) = k.field(name) else { continue };
        'field: for r in grant.recipients {
            let Some(pf) = partners.get(r) else { continue };
            for p in grant.purposes {
                let flow = FieldFlow {
                    labels: &fd.labels,
                    recipient_kind: pf.kind,
                    purpose: p.as_str(),
                    basis,
                    cji_named: grant.release_cji.contains(name),
                    consent_names_field: true,
                };
                if let Some(limit) = limits::check(&flow) {
                    cx.error(
                        "hard-limit",
                        grant.field_spans.get(name).cloned().flatten(),
                        format!(
                            "field `{name}` to `{r}` for `{p}` breaks a hard limit ({}): {}",
                            limit.code(),
                            limit.explanation()
                        ),
                        Some(limit.hint().into()),
                    );
                    break 'field;
                }
            }
        }
    }
}

/// The legal basis of a permit rule, with the citation it needs and the emergency profile it
/// may only serve.
fn check_basis(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    span: &Span,
    purposes: &BTreeSet<Purpose>,
) -> Option<LegalBasis> {
    let w = "`[[rule]]`";
    let b = cx.string(t, "legal_basis", true, w, span)?;
    let citation = cx.string(t, "citation", false, w, span);
    let emergency = purposes.iter().any(|p| p.as_str() == EMERGENCY_PURPOSE);
    let need_citation = |cx: &mut Cx<'_>, kind: &str| -> Option<String> {
        match &citation {
            Some(c) if !c.v.trim().is_empty() => Some(c.v.clone()),
            _ => {
                cx.error(
                    "missing-key",
                    b.span.clone(),
                    format!("legal basis `{kind}` needs a `citation`"),
                    Some("name the provision, e.g. `citation = \"45 CFR 164.506(c)\"`".into()),
                );
                None
            }
        }
    };
    let basis = match b.v.as_str() {
        "consent" => Some(LegalBasis::Consent),
        "law" => need_citation(cx, "law").map(|citation| LegalBasis::Law { citation }),
        "emergency" => {
            if purposes.iter().any(|p| p.as_str() != EMERGENCY_PURPOSE) {
                cx.error("emergency-profile", b.span.clone(), "an emergency rule may only serve purpose `emergency`".into(), Some("keep the emergency profile in its own rule with `purposes = [\"emergency\"]`".into()));
            }
            need_citation(cx, "emergency").map(|citation| LegalBasis::Emergency { citation })
        }
        "medical-emergency" => {
            if purposes.iter().any(|p| p.as_str() != EMERGENCY_PURPOSE) {
                cx.error(
                    "emergency-profile",
                    b.span.clone(),
                    "a medical-emergency rule may only serve purpose `emergency`".into(),
                    Some(
                        "keep the 42 CFR 2.51 profile in its own rule with `purposes = \
                         [\"emergency\"]`"
                            .into(),
                    ),
                );
            }
            need_citation(cx, "medical-emergency")
                .map(|citation| LegalBasis::MedicalEmergency { citation })
        }
        other => {
            cx.error(
                "unknown-basis",
                b.span.clone(),
                format!("unknown legal basis `{other}`"),
                Some(choices_hint(
                    other,
                    &["consent", "law", "emergency", "medical-emergency"],
                )),
            );
            None
        }
    };
    if emergency
        && !matches!(
            basis,
            Some(LegalBasis::Emergency { .. } | LegalBasis::MedicalEmergency { .. }) | None
        )
    {
        cx.error(
            "emergency-profile",
            b.span.clone(),
            "purpose `emergency` needs `legal_basis = \"emergency\"` or \
             `\"medical-emergency\"`"
                .into(),
            Some(
                "the serious-and-imminent-threat profile (HIPAA 164.512(j)) is a rule of its own"
                    .into(),
            ),
        );
    }
    basis
}

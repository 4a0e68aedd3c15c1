//! Checking `partners.toml`: the registry parses, and every partner is registered once, with
//! its own token issuer, a token verification key, sound medical roles and a sound witness key.
//! What the later checks need to know about each partner is returned as [`PartnerFacts`].

use std::collections::{BTreeMap, BTreeSet};

use toml_edit::Item;

use super::super::diag::{Diagnostic, Report, Severity, SourceFile};
use super::super::partners::{PartnerEntry, RegistryFile};
use super::{Cx, Span, parse_doc};
use crate::domain::{PartnerId, PartnerKind, Role};

/// What validation learnt about one registered partner without loading its keys.
#[derive(Debug, Clone)]
pub(in crate::policy) struct PartnerFacts {
    pub(in crate::policy) kind: PartnerKind,
    pub(in crate::policy) roles: BTreeSet<Role>,
    pub(super) medical_roles: BTreeSet<Role>,
    pub(super) has_encryption_key: bool,
}

/// Checks the partner registry; returns it (when it parses) and the facts of each partner.
pub(super) fn check_partners(
    f: &SourceFile,
    report: &mut Report,
) -> (Option<RegistryFile>, BTreeMap<PartnerId, PartnerFacts>) {
    let mut facts = BTreeMap::new();
    let parsed: Result<RegistryFile, toml_edit::de::Error> = toml_edit::de::from_str(&f.text);
    let file = match parsed {
        Ok(file) => file,
        Err(e) => {
            report.push(Diagnostic::at(
                Severity::Error,
                "invalid-partner",
                f,
                e.span(),
                e.message().trim().to_owned(),
                Some("see policies/README.md, \"Partners\"".into()),
            ));
            return (None, facts);
        }
    };
    let doc = parse_doc(f, report);
    let id_spans: Vec<Span> = doc
        .as_ref()
        .and_then(|d| d.get("partner"))
        .and_then(Item::as_array_of_tables)
        .map(|a| a.iter().map(|t| t.get("id").and_then(Item::span)).collect())
        .unwrap_or_default();
    let mut cx = Cx { file: f, report };
    let mut issuers = BTreeMap::new();
    let mut witness_names = BTreeMap::new();
    for (i, p) in file.partners.iter().enumerate() {
        let span = id_spans.get(i).cloned().flatten();
        if facts.contains_key(&p.id) {
            cx.error(
                "duplicate",
                span.clone(),
                format!("partner `{}` is registered twice", p.id),
                Some("keep one entry per partner".into()),
            );
            continue;
        }
        if let Some(other) = issuers.insert(p.token.issuer.clone(), p.id.clone()) {
            cx.error(
                "duplicate",
                span.clone(),
                format!(
                    "partner `{}` uses issuer `{}` which partner `{other}` already uses",
                    p.id, p.token.issuer
                ),
                Some(
                    "each partner needs its own issuer so a token names exactly one agency".into(),
                ),
            );
        }
        if p.token.jwks_file.is_none() && p.token.keys.is_empty() {
            cx.error(
                "missing-key",
                span.clone(),
                format!("partner `{}` has no token verification key", p.id),
                Some("set `token.jwks_file` or add `[[partner.token.keys]]`".into()),
            );
        }
        check_medical_roles(&mut cx, p, &span);
        check_witness(&mut cx, p, &span, &mut witness_names);
        facts.insert(
            p.id.clone(),
            PartnerFacts {
                kind: p.kind,
                roles: p.roles.iter().cloned().collect(),
                medical_roles: p.medical_roles.iter().cloned().collect(),
                has_encryption_key: p.encryption.is_some(),
            },
        );
    }
    (Some(file), facts)
}

/// 42 CFR 2.51: a medical emergency discloses Part 2 information to medical personnel only; a
/// police agency has none, and a medical role must be one of the partner's roles.
fn check_medical_roles(cx: &mut Cx<'_>, p: &PartnerEntry, span: &Span) {
    for r in &p.medical_roles {
        if p.kind == PartnerKind::Police {
            cx.error(
                "medical-role",
                span.clone(),
                format!(
                    "partner `{}` is a police agency and cannot mark role `{r}` as medical",
                    p.id
                ),
                Some(
                    "42 CFR 2.51 medical emergencies disclose to medical personnel only; \
                     remove `medical_roles` from this partner"
                        .into(),
                ),
            );
        } else if !p.roles.contains(r) {
            cx.error(
                "medical-role",
                span.clone(),
                format!(
                    "partner `{}` marks role `{r}` as medical but does not declare it in \
                     `roles`",
                    p.id
                ),
                Some("list every medical role in `roles` too".into()),
            );
        }
    }
}

/// The partner's witness key: exactly one of `vkey` and `vkey_file`, a vkey that parses, and a
/// key name no other partner's witness uses (`names`: the names seen so far).
fn check_witness(
    cx: &mut Cx<'_>,
    p: &PartnerEntry,
    span: &Span,
    names: &mut BTreeMap<String, PartnerId>,
) {
    if let Some(w) = &p.witness {
        match (&w.vkey, &w.vkey_file) {
            (Some(v), None) => match crate::policy::partners::WitnessEntry::parse_vkey(v) {
                Ok(vk) => {
                    if let Some(other) = names.insert(vk.name.clone(), p.id.clone()) {
                        cx.error(
                            "duplicate",
                            span.clone(),
                            format!(
                                "partner `{}` uses witness key name `{}` which partner \
                                 `{other}` already uses",
                                p.id, vk.name
                            ),
                            Some("each witness needs its own key name".into()),
                        );
                    }
                }
                Err(e) => cx.error(
                    "invalid-witness-key",
                    span.clone(),
                    format!("partner `{}`: `witness.vkey`: {e}", p.id),
                    Some(
                        "paste the vkey the partner's `audit witness-key` printed: \
                         `<name>+<8 hex digits>+<base64>`"
                            .into(),
                    ),
                ),
            },
            (None, Some(_)) => {}
            _ => cx.error(
                "invalid-witness-key",
                span.clone(),
                format!(
                    "partner `{}`: `[partner.witness]` needs exactly one of `vkey` and \
                     `vkey_file`",
                    p.id
                ),
                Some("keep one of the two".into()),
            ),
        }
    }
}

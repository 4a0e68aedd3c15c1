//! Checking one MOU file (`mous/*.toml`): its header (id, title, document, parties, term,
//! retention) and each of its rules (see `rules`); and, across MOUs, that permit rules which can
//! apply to the same request agree on every field they both name.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use toml_edit::{Item, TableLike};

use super::super::diag::{Diagnostic, Report, Severity, SourceFile, choices_hint};
use super::super::model::{Effect, KindDef, Mou, Rule};
use super::rules::check_rule;
use super::{Cx, PartnerFacts, Sp, Span, parse_doc};
use crate::domain::PartnerId;

/// Where the parts of an MOU were written, for later cross-checks.
#[derive(Debug, Clone, Default)]
pub(super) struct MouSpans {
    pub(super) id: Span,
    rules: Vec<RuleSpans>,
}

/// Where the parts of a rule were written.
#[derive(Debug, Clone, Default)]
pub(super) struct RuleSpans {
    pub(super) id: Span,
    pub(super) fields: BTreeMap<String, Span>,
}

const MOU_FILE_KEYS: [&str; 2] = ["mou", "rule"];
const MOU_KEYS: [&str; 10] = [
    "id",
    "title",
    "document",
    "signatories",
    "parties",
    "effective",
    "expires",
    "retention_days",
    "prohibited_uses",
    "description",
];

/// Checks one MOU file; returns the MOU, and where its parts were written, when its header
/// is sound.
pub(super) fn check_mou(
    f: &SourceFile,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
    kinds: &BTreeMap<String, KindDef>,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Option<(Mou, MouSpans)> {
    let doc = parse_doc(f, report)?;
    let mut cx = Cx { file: f, report };
    let root: &dyn TableLike = doc.as_table();
    cx.check_keys(root, &MOU_FILE_KEYS, "an MOU file");
    let Some(mt) = root.get("mou").and_then(Item::as_table_like) else {
        cx.error(
            "missing-key",
            None,
            "MOU file has no `[mou]` table".into(),
            Some("start the file with `[mou]`".into()),
        );
        return None;
    };
    let mspan = root.get("mou").and_then(Item::span);
    let w = "`[mou]`";
    cx.check_keys(mt, &MOU_KEYS, w);
    let id = cx.string(mt, "id", true, w, &mspan);
    let title = cx.string(mt, "title", true, w, &mspan);
    let document = cx.string(mt, "document", true, w, &mspan);
    let signatories = cx
        .strings(mt, "signatories", false, w, &mspan)
        .unwrap_or_default();
    let parties_sp = cx
        .strings(mt, "parties", true, w, &mspan)
        .unwrap_or_default();
    let effective = cx.date(mt, "effective", w, &mspan);
    let expires = cx.date(mt, "expires", w, &mspan);
    let retention = cx.integer(mt, "retention_days", true, w, &mspan);
    let _ = cx.strings(mt, "prohibited_uses", false, w, &mspan);
    let _ = cx.string(mt, "description", false, w, &mspan);

    let parties = check_parties(&mut cx, &parties_sp, partners);
    check_term(&mut cx, (&effective, &expires), id.as_ref(), now);
    check_retention(&mut cx, retention.as_ref());

    let (rules, rule_spans) = check_rules(&mut cx, root, &mspan, &parties, (partners, kinds));
    let spans = MouSpans {
        id: id.as_ref().and_then(|i| i.span.clone()),
        rules: rule_spans,
    };
    let (id, title, document, effective, expires, retention) =
        (id?, title?, document?, effective?, expires?, retention?);
    Some((
        Mou {
            id: id.v,
            title: title.v,
            document: document.v,
            signatories: signatories.into_iter().map(|s| s.v).collect(),
            parties,
            effective: effective.v,
            expires: expires.v,
            retention_days: u32::try_from(retention.v).unwrap_or(0),
            rules,
            file: f.name.clone(),
        },
        spans,
    ))
}

/// The MOU's parties: each a registered partner (any, when the registry did not load).
fn check_parties(
    cx: &mut Cx<'_>,
    named: &[Sp<String>],
    partners: &BTreeMap<PartnerId, PartnerFacts>,
) -> BTreeSet<PartnerId> {
    let mut parties = BTreeSet::new();
    for p in named {
        match p.v.parse::<PartnerId>() {
            Ok(pid) if partners.contains_key(&pid) || partners.is_empty() => {
                parties.insert(pid);
            }
            _ => cx.error(
                "unknown-partner",
                p.span.clone(),
                format!("party `{}` is not a registered partner", p.v),
                Some(partner_hint(&p.v, partners)),
            ),
        }
    }
    parties
}

/// The MOU's term: it expires after it takes effect (an error), and not before `now` (a
/// warning: its rules no longer apply).
fn check_term(
    cx: &mut Cx<'_>,
    (effective, expires): (&Option<Sp<NaiveDate>>, &Option<Sp<NaiveDate>>),
    id: Option<&Sp<String>>,
    now: DateTime<Utc>,
) {
    let (Some(e), Some(x)) = (effective, expires) else {
        return;
    };
    if x.v < e.v {
        cx.error(
            "invalid-term",
            x.span.clone(),
            format!("the MOU expires ({}) before it takes effect ({})", x.v, e.v),
            Some("check the dates against the signed document".into()),
        );
    } else if x.v < now.date_naive() {
        cx.warn(
            "expired",
            x.span.clone(),
            format!(
                "mou `{}` expired on {}; its rules no longer apply",
                id.map_or("?", |i| i.v.as_str()),
                x.v
            ),
            Some("renew the MOU and update `expires`, or remove the file".into()),
        );
    }
}

/// `retention_days` between 1 and 36,500.
fn check_retention(cx: &mut Cx<'_>, retention: Option<&Sp<i64>>) {
    if let Some(r) = retention
        && !(1..=36_500).contains(&r.v)
    {
        cx.error(
            "invalid-retention",
            r.span.clone(),
            format!(
                "`retention_days` is {}; it must be between 1 and 36500",
                r.v
            ),
            None,
        );
    }
}

/// The MOU's `[[rule]]`s: at least one, each checked, each id once.
fn check_rules(
    cx: &mut Cx<'_>,
    root: &dyn TableLike,
    mspan: &Span,
    parties: &BTreeSet<PartnerId>,
    (partners, kinds): (
        &BTreeMap<PartnerId, PartnerFacts>,
        &BTreeMap<String, KindDef>,
    ),
) -> (Vec<Rule>, Vec<RuleSpans>) {
    let mut rules: Vec<Rule> = Vec::new();
    let mut spans = Vec::new();
    let rule_tables = cx.tables(root, "rule");
    if rule_tables.is_empty() {
        cx.error(
            "missing-key",
            mspan.clone(),
            "the MOU has no `[[rule]]`".into(),
            Some("an MOU without flows grants nothing; add a `[[rule]]`".into()),
        );
    }
    for (t, span) in rule_tables {
        if let Some((rule, rs)) = check_rule(cx, t, &span, parties, partners, kinds) {
            if rules.iter().any(|r| r.id == rule.id) {
                cx.error(
                    "duplicate",
                    rs.id.clone(),
                    format!("rule `{}` appears twice in this MOU", rule.id),
                    Some("give each rule its own id".into()),
                );
                continue;
            }
            rules.push(rule);
            spans.push(rs);
        }
    }
    (rules, spans)
}

pub(super) fn partner_hint(input: &str, partners: &BTreeMap<PartnerId, PartnerFacts>) -> String {
    let names: Vec<&str> = partners.keys().map(PartnerId::as_str).collect();
    format!(
        "{}; partners are registered in `partners.toml`",
        choices_hint(input, &names)
    )
}

/// Permit rules that can apply to the same request must agree on every field they both name.
pub(super) fn check_overlaps(mous: &[(Mou, SourceFile, MouSpans)], report: &mut Report) {
    let mut seen: Vec<(&Mou, &Rule, &SourceFile, &RuleSpans)> = Vec::new();
    for (m, f, spans) in mous {
        for (r, rs) in m.rules.iter().zip(spans.rules.iter()) {
            if r.effect != Effect::Permit {
                continue;
            }
            for (om, or, _, _) in &seen {
                let overlap = or.kind == r.kind
                    && om.effective <= m.expires
                    && m.effective <= om.expires
                    && !or.recipients.is_disjoint(&r.recipients)
                    && !or.roles.is_disjoint(&r.roles)
                    && !or.purposes.is_disjoint(&r.purposes);
                if !overlap {
                    continue;
                }
                for (field, t) in &r.fields {
                    if let Some(ot) = or.fields.get(field)
                        && ot != t
                    {
                        report.push(Diagnostic::at(
                            Severity::Error,
                            "overlap",
                            f,
                            rs.fields.get(field).cloned().flatten(),
                            format!(
                                "rules `{}/{}` and `{}/{}` apply to the same recipients, roles and purposes and disagree on field `{field}`: `{}` here, `{}` there",
                                m.id, r.id, om.id, or.id, t.describe(), ot.describe()
                            ),
                            Some("give the field the same transform in both rules, or make the rules' roles or purposes disjoint".into()),
                        ));
                    }
                }
            }
            seen.push((m, r, f, rs));
        }
    }
}

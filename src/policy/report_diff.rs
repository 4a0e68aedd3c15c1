//! Report definitions in a policy diff: which definitions (`reports/*.toml`) an edit adds,
//! removes or changes, and in what: who may run the report, whether it may be published, its
//! legal basis, its tables (what they count and how they group and filter), the record fields
//! it reads, and its differential-privacy parameters.
//!
//! Security role: a report opens sealed record fields for aggregation, so an edit that lets
//! more people run one, lets it be published, makes it read more fields or weakens its privacy
//! protection widens what leaves the gateway as surely as a new MOU rule does. Such a change
//! is marked as widening and gates `policy diff` (exit 3) like a newly revealed field.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::domain::PartnerKind;
use crate::reports::ReportDef;
use crate::reports::definition::{KindGrant, Privacy, Release, TableDef};

/// How a report definition changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportChangeType {
    /// In the new set only.
    Added,
    /// In the old set only.
    Removed,
    /// In both, different.
    Changed,
}

impl ReportChangeType {
    /// The name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Changed => "changed",
        }
    }
}

/// One aspect of a definition that differs, with its value under each set (`none` where the
/// set has no such value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportAspect {
    /// `runners`, `release`, `basis`, `privacy`, `reads`, `table <id>`, `title`,
    /// `description`, or `file` (the text changed but nothing the gateway reads from it).
    pub aspect: String,
    /// Under the old set.
    pub before: String,
    /// Under the new set.
    pub after: String,
    /// Whether this aspect alone widens the report (see [`ReportChange::widens`]).
    pub widens: bool,
}

/// One report definition that differs between two policy sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportChange {
    /// The report's id.
    pub report: String,
    /// Added, removed or changed.
    pub change: ReportChangeType,
    /// Whether the change widens the report: a new report; a partner kind and role that may
    /// run it now and could not before; a release that becomes `public`; a record field (or
    /// the people behind the records) read now and not before; differential privacy dropped,
    /// or a larger epsilon, budget or contribution bound.
    pub widens: bool,
    /// Who may run it under the new set (the old one for a removed report).
    pub runners: String,
    /// What differs (for an added or removed report: everything it holds).
    pub aspects: Vec<ReportAspect>,
}

const NONE: &str = "none";

fn runner_pairs(def: &ReportDef) -> BTreeSet<(PartnerKind, String)> {
    def.runners
        .iter()
        .flat_map(|r| {
            r.roles
                .iter()
                .map(move |role| (r.partner_kind, role.as_str().to_owned()))
        })
        .collect()
}

fn describe_privacy(p: Option<&Privacy>) -> String {
    match p {
        None => NONE.to_owned(),
        Some(p) => format!(
            "epsilon {} per run, budget {} for series `{}`, at most {} unit(s) per person and table",
            p.epsilon, p.budget, p.series, p.max_contributions
        ),
    }
}

/// Whether `new` protects less than `old`.
fn privacy_weaker(old: Option<&Privacy>, new: Option<&Privacy>) -> bool {
    match (old, new) {
        (Some(_), None) => true,
        (Some(o), Some(n)) => {
            n.epsilon > o.epsilon
                || n.budget > o.budget
                || n.max_contributions > o.max_contributions
                || n.series != o.series
        }
        (None, _) => false,
    }
}

fn describe_table(t: &TableDef) -> String {
    let mut out = format!("\"{}\": counts {} by {}", t.title, t.metric, t.rows.kind);
    if let Some(c) = &t.columns {
        out.push_str(&format!(" and {}", c.kind));
    }
    for (dim, cats) in &t.filters {
        out.push_str(&format!(
            "; only {dim} in [{}]",
            cats.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    for r in &t.rates {
        out.push_str(&format!(
            "; rate `{}` (\"{}\") = share of [{}]",
            r.id,
            r.title,
            r.share_of.join(", ")
        ));
    }
    out
}

fn describe_reads(needs: &BTreeMap<String, KindGrant>) -> String {
    if needs.is_empty() {
        return "no record fields (the disclosure log or the review queue only)".to_owned();
    }
    needs
        .iter()
        .map(|(kind, g)| {
            let mut s = format!(
                "{kind}: {}",
                g.fields.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            if g.history {
                s.push_str(" (every version)");
            }
            if g.people {
                s.push_str(" (+ blind indexes of the people)");
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `new` reads something `old` does not.
fn reads_more(old: &BTreeMap<String, KindGrant>, new: &BTreeMap<String, KindGrant>) -> bool {
    new.iter().any(|(kind, n)| match old.get(kind) {
        None => true,
        Some(o) => {
            !n.fields.is_subset(&o.fields) || (n.history && !o.history) || (n.people && !o.people)
        }
    })
}

fn describe_basis(def: &ReportDef) -> String {
    format!(
        "MOU `{}` section {}: {}",
        def.basis.mou, def.basis.section, def.basis.citation
    )
}

fn aspect(aspect: &str, before: String, after: String, widens: bool) -> Option<ReportAspect> {
    (before != after).then(|| ReportAspect {
        aspect: aspect.to_owned(),
        before,
        after,
        widens,
    })
}

/// The aspects in which `new` differs from `old`; either may be absent (an added or removed
/// report), and then every aspect of the other is listed.
fn aspects(old: Option<&ReportDef>, new: Option<&ReportDef>) -> Vec<ReportAspect> {
    let text = |d: Option<&ReportDef>, f: &dyn Fn(&ReportDef) -> String| -> String {
        d.map_or_else(|| NONE.to_owned(), f)
    };
    let old_pairs = old.map(runner_pairs).unwrap_or_default();
    let new_pairs = new.map(runner_pairs).unwrap_or_default();
    let old_needs = old.map(ReportDef::needs).unwrap_or_default();
    let new_needs = new.map(ReportDef::needs).unwrap_or_default();
    let public = |d: Option<&ReportDef>| d.is_some_and(|d| d.release == Release::Public);
    let mut out: Vec<ReportAspect> = [
        aspect(
            "runners",
            text(old, &ReportDef::runners_text),
            text(new, &ReportDef::runners_text),
            !new_pairs.is_subset(&old_pairs),
        ),
        aspect(
            "release",
            text(old, &|d| d.release.as_str().to_owned()),
            text(new, &|d| d.release.as_str().to_owned()),
            public(new) && !public(old),
        ),
        aspect(
            "privacy",
            old.map_or_else(|| NONE.to_owned(), |d| describe_privacy(d.privacy.as_ref())),
            new.map_or_else(|| NONE.to_owned(), |d| describe_privacy(d.privacy.as_ref())),
            privacy_weaker(
                old.and_then(|d| d.privacy.as_ref()),
                new.and_then(|d| d.privacy.as_ref()),
            ),
        ),
        aspect(
            "reads",
            old.map_or_else(|| NONE.to_owned(), |_| describe_reads(&old_needs)),
            new.map_or_else(|| NONE.to_owned(), |_| describe_reads(&new_needs)),
            reads_more(&old_needs, &new_needs),
        ),
        aspect(
            "basis",
            text(old, &describe_basis),
            text(new, &describe_basis),
            false,
        ),
        aspect(
            "title",
            text(old, &|d| d.title.clone()),
            text(new, &|d| d.title.clone()),
            false,
        ),
        aspect(
            "description",
            text(old, &|d| d.description.clone()),
            text(new, &|d| d.description.clone()),
            false,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Tables by id, in the new definition's order, then the removed ones.
    let tables = |d: Option<&ReportDef>| -> Vec<(String, String)> {
        d.map(|d| {
            d.tables
                .iter()
                .map(|t| (t.id.clone(), describe_table(t)))
                .collect()
        })
        .unwrap_or_default()
    };
    let old_tables = tables(old);
    let new_tables = tables(new);
    let find = |list: &[(String, String)], id: &str| -> String {
        list.iter()
            .find(|(i, _)| i == id)
            .map_or_else(|| NONE.to_owned(), |(_, d)| d.clone())
    };
    let mut ids: Vec<&String> = new_tables.iter().map(|(i, _)| i).collect();
    for (i, _) in &old_tables {
        if !ids.contains(&i) {
            ids.push(i);
        }
    }
    for id in ids {
        // What a table reads is under `reads`; its shape alone widens nothing.
        out.extend(aspect(
            &format!("table {id}"),
            find(&old_tables, id),
            find(&new_tables, id),
            false,
        ));
    }
    out
}

/// Every report definition that differs between the two sets, by id. A definition whose file
/// changed but whose content did not (comments, layout) is listed with the aspect `file`.
pub fn report_changes(
    old: &BTreeMap<String, ReportDef>,
    new: &BTreeMap<String, ReportDef>,
) -> Vec<ReportChange> {
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for id in ids {
        let (o, n) = (old.get(id), new.get(id));
        let change = match (o, n) {
            (None, Some(_)) => ReportChangeType::Added,
            (Some(_), None) => ReportChangeType::Removed,
            (Some(o), Some(n)) if o.hash == n.hash && o.file == n.file => continue,
            _ => ReportChangeType::Changed,
        };
        let mut list = aspects(o, n);
        if list.is_empty()
            && let (Some(o), Some(n)) = (o, n)
        {
            list.push(ReportAspect {
                aspect: "file".to_owned(),
                before: format!("{} sha256 {}", o.file, o.hash),
                after: format!("{} sha256 {}", n.file, n.hash),
                widens: false,
            });
        }
        let widens = change == ReportChangeType::Added || list.iter().any(|a| a.widens);
        let runners = n.or(o).map(ReportDef::runners_text).unwrap_or_default();
        out.push(ReportChange {
            report: id.clone(),
            change,
            widens,
            runners,
            aspects: list,
        });
    }
    out
}

//! Reading and validating report definitions (`reports/*.toml`) into
//! [`crate::reports::ReportDef`], with the diagnostics of every other policy file: file, line,
//! column, what is wrong and a hint, every problem in one run.
//!
//! Besides each file's own shape, a definition is checked against the rest of the set: its
//! runners' roles must be declared by partners of that kind, its basis must name an MOU whose
//! parties include the runners' kinds and the holders of the records it reads, every dimension
//! must read a field the record kind declares (its categories are the field's values), and
//! differential privacy is only for public reports over tables that count people's records.
//! The directory is optional: a policy set without `reports/` has no reports.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use toml_edit::{Item, TableLike};

use super::diag::{Diagnostic, Report, Severity, SourceFile, choices_hint};
use super::files::PolicyFiles;
use super::load::{Cx, PartnerFacts, Sp, Span, parse_doc, read_file};
use super::model::{FieldType, KindDef, Mou, PURPOSES};
use crate::domain::{PartnerId, PartnerKind, Role};
use crate::reports::definition::{
    Basis, CO_RESPONDER_CATEGORIES, Dimension, DimensionKind, INCIDENT_KIND, Metric, NOT_RECORDED,
    Privacy, REFERRAL_KIND, REFERRAL_OUTCOMES, REPEAT_CATEGORIES, RateDef, Release, ReportDef,
    Runner, TableDef,
};

/// Sub-directory of report definitions.
pub const REPORTS_DIR: &str = "reports";

const FILE_KEYS: [&str; 5] = ["report", "runner", "basis", "table", "privacy"];
const REPORT_KEYS: [&str; 4] = ["id", "title", "description", "release"];
const RUNNER_KEYS: [&str; 2] = ["partner_kind", "roles"];
const BASIS_KEYS: [&str; 3] = ["mou", "section", "citation"];
const TABLE_KEYS: [&str; 7] = [
    "id", "title", "metric", "rows", "columns", "filters", "rate",
];
const RATE_KEYS: [&str; 3] = ["id", "title", "share_of"];
const PRIVACY_KEYS: [&str; 4] = ["epsilon", "budget", "series", "max_contributions"];
const PARTNER_KINDS: [&str; 3] = ["police", "mental-health", "compliance"];
const RELEASES: [&str; 2] = ["internal", "public"];

/// Largest epsilon of one run.
const MAX_EPSILON: f64 = 10.0;
/// Largest budget of a series.
const MAX_BUDGET: f64 = 100.0;

/// What the rest of the set says, for the cross-checks.
struct SetFacts<'a> {
    partners: &'a BTreeMap<PartnerId, PartnerFacts>,
    kinds: &'a BTreeMap<String, KindDef>,
    mous: &'a [Mou],
}

/// Checks every `reports/*.toml` of the set's files; returns the definitions that validated, by id.
pub(super) fn check_dir(
    files: &PolicyFiles,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
    kinds: &BTreeMap<String, KindDef>,
    mous: &[Mou],
    report: &mut Report,
) -> BTreeMap<String, ReportDef> {
    let mut out = BTreeMap::new();
    let names: Vec<String> = files
        .in_dir(REPORTS_DIR)
        .filter(|(path, _)| path.ends_with(".toml"))
        .map(|(path, _)| path.to_owned())
        .collect();
    let facts = SetFacts {
        partners,
        kinds,
        mous,
    };
    for name in names {
        let Some(file) = read_file(files, &name, report) else {
            continue;
        };
        let Some((def, id_span)) = check_file(&file, &facts, report) else {
            continue;
        };
        if out.contains_key(&def.id) {
            report.push(Diagnostic::at(
                Severity::Error,
                "duplicate",
                &file,
                id_span,
                format!("report `{}` is defined twice", def.id),
                Some("give each report its own id".into()),
            ));
            continue;
        }
        out.insert(def.id.clone(), def);
    }
    out
}

fn check_file(
    f: &SourceFile,
    set: &SetFacts<'_>,
    report: &mut Report,
) -> Option<(ReportDef, Span)> {
    let doc = parse_doc(f, report)?;
    let mut cx = Cx { file: f, report };
    let root: &dyn TableLike = doc.as_table();
    cx.check_keys(root, &FILE_KEYS, "a report file");
    let Some(rt) = root.get("report").and_then(Item::as_table_like) else {
        cx.error(
            "missing-key",
            None,
            "report file has no `[report]` table".into(),
            Some("start the file with `[report]`, `id = ...`, `title = ...`".into()),
        );
        return None;
    };
    let rspan = root.get("report").and_then(Item::span);
    let w = "`[report]`";
    cx.check_keys(rt, &REPORT_KEYS, w);
    let id = cx.string(rt, "id", true, w, &rspan);
    let title = cx.string(rt, "title", true, w, &rspan);
    let description = cx.string(rt, "description", false, w, &rspan);
    let release = cx.string(rt, "release", true, w, &rspan).and_then(|r| {
        let v = match r.v.as_str() {
            "internal" => Some(Release::Internal),
            "public" => Some(Release::Public),
            other => {
                cx.error(
                    "unknown-release",
                    r.span.clone(),
                    format!("unknown release level `{other}`"),
                    Some(choices_hint(other, &RELEASES)),
                );
                None
            }
        };
        v.map(|v| Sp { v, span: r.span })
    });
    if let Some(id) = &id
        && id.v.parse::<PartnerId>().is_err()
    {
        cx.error(
            "invalid-id",
            id.span.clone(),
            format!("report id `{}` is not a valid id", id.v),
            Some("use lowercase letters, digits, `-` and `_`, starting with a letter".into()),
        );
    }

    let runners = check_runners(&mut cx, root, &rspan, set);
    let tables = check_tables(&mut cx, root, &rspan, set);
    let basis = check_basis(&mut cx, root, &rspan, set, &runners, &tables);
    let privacy = check_privacy(&mut cx, root, release.as_ref(), &tables);

    let (id, title, release, basis) = (id?, title?, release?, basis?);
    if runners.is_empty() || tables.is_empty() {
        return None;
    }
    let hash = hex::encode(Sha256::digest(f.text.as_bytes()));
    Some((
        ReportDef {
            id: id.v,
            title: title.v,
            description: description.map(|d| d.v).unwrap_or_default(),
            release: release.v,
            runners: runners.into_iter().map(|r| r.v).collect(),
            basis,
            tables: tables.into_iter().map(|t| t.v).collect(),
            privacy: privacy.flatten(),
            file: f.name.clone(),
            hash,
        },
        id.span,
    ))
}

fn check_runners(
    cx: &mut Cx<'_>,
    root: &dyn TableLike,
    rspan: &Span,
    set: &SetFacts<'_>,
) -> Vec<Sp<Runner>> {
    let w = "`[[runner]]`";
    let tables = cx.tables(root, "runner");
    if tables.is_empty() {
        cx.error(
            "missing-key",
            rspan.clone(),
            "the report names no `[[runner]]`: nobody could run it".into(),
            Some("add `[[runner]]` with `partner_kind = \"...\"` and `roles = [\"...\"]`".into()),
        );
    }
    let mut out = Vec::new();
    for (t, span) in tables {
        cx.check_keys(t, &RUNNER_KEYS, w);
        let kind = cx.string(t, "partner_kind", true, w, &span).and_then(|k| {
            match k.v.parse::<PartnerKind>() {
                Ok(v) => Some(v),
                Err(_) => {
                    cx.error(
                        "unknown-partner-kind",
                        k.span.clone(),
                        format!("unknown partner kind `{}`", k.v),
                        Some(choices_hint(&k.v, &PARTNER_KINDS)),
                    );
                    None
                }
            }
        });
        let roles_sp = cx.strings(t, "roles", true, w, &span).unwrap_or_default();
        if roles_sp.is_empty() {
            cx.error(
                "missing-key",
                span.clone(),
                "a runner needs at least one role".into(),
                Some("list the roles that may run the report: `roles = [\"...\"]`".into()),
            );
        }
        let declared: BTreeSet<&Role> = set
            .partners
            .values()
            .filter(|p| Some(p.kind) == kind)
            .flat_map(|p| p.roles.iter())
            .collect();
        let mut roles = BTreeSet::new();
        for r in &roles_sp {
            match r.v.parse::<Role>() {
                Ok(role) => {
                    if kind.is_some() && !set.partners.is_empty() && !declared.contains(&role) {
                        let names: Vec<&str> = declared.iter().map(|r| r.as_str()).collect();
                        cx.error(
                            "unknown-role",
                            r.span.clone(),
                            format!(
                                "role `{}` is not declared by any {} partner",
                                r.v,
                                kind.map_or("", PartnerKind::as_str)
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
        if let Some(kind) = kind
            && !roles.is_empty()
        {
            out.push(Sp {
                v: Runner {
                    partner_kind: kind,
                    roles,
                },
                span,
            });
        }
    }
    out
}

fn check_basis(
    cx: &mut Cx<'_>,
    root: &dyn TableLike,
    rspan: &Span,
    set: &SetFacts<'_>,
    runners: &[Sp<Runner>],
    tables: &[Sp<TableDef>],
) -> Option<Basis> {
    let w = "`[basis]`";
    let Some(bt) = root.get("basis").and_then(Item::as_table_like) else {
        cx.error(
            "missing-key",
            rspan.clone(),
            "the report states no `[basis]`".into(),
            Some(
                "add `[basis]` with the `mou` whose parties agreed to the evaluation, its \
                 `section` and the legal `citation`"
                    .into(),
            ),
        );
        return None;
    };
    let bspan = root.get("basis").and_then(Item::span);
    cx.check_keys(bt, &BASIS_KEYS, w);
    let mou = cx.string(bt, "mou", true, w, &bspan);
    let section = cx.string(bt, "section", true, w, &bspan);
    let citation = cx.string(bt, "citation", true, w, &bspan);
    for s in [&section, &citation].into_iter().flatten() {
        if s.v.trim().is_empty() {
            cx.error(
                "missing-key",
                s.span.clone(),
                "the basis needs a non-empty `section` and `citation`".into(),
                Some("name the MOU section and the provision, e.g. `45 CFR 164.501`".into()),
            );
        }
    }
    let mou = mou?;
    let Some(m) = set.mous.iter().find(|m| m.id == mou.v) else {
        let names: Vec<&str> = set.mous.iter().map(|m| m.id.as_str()).collect();
        cx.error(
            "unknown-mou",
            mou.span.clone(),
            format!("there is no MOU `{}`", mou.v),
            Some(format!(
                "{}; MOUs are declared under `mous/`",
                choices_hint(&mou.v, &names)
            )),
        );
        return None;
    };
    let party_kinds: BTreeSet<PartnerKind> = m
        .parties
        .iter()
        .filter_map(|p| set.partners.get(p).map(|f| f.kind))
        .collect();
    if !set.partners.is_empty() {
        for r in runners {
            if !party_kinds.contains(&r.v.partner_kind) {
                cx.error(
                    "not-a-party",
                    r.span.clone(),
                    format!(
                        "no party to MOU `{}` is a {} partner, so it cannot run this report",
                        m.id, r.v.partner_kind
                    ),
                    Some("name runners of the MOU's parties, or base the report on an MOU they signed".into()),
                );
            }
        }
        for t in tables {
            let Some(kind) = t.v.metric.record_kind() else {
                continue;
            };
            let owner = set.kinds.get(kind).map(|k| k.owner);
            if let Some(owner) = owner
                && !party_kinds.contains(&owner)
            {
                cx.error(
                    "no-holder",
                    t.span.clone(),
                    format!(
                        "table `{}` reads `{kind}` records, and no party to MOU `{}` holds them",
                        t.v.id, m.id
                    ),
                    Some("base the report on an MOU the holding agency signed".into()),
                );
            }
        }
    }
    Some(Basis {
        mou: m.id.clone(),
        section: section?.v,
        citation: citation?.v,
    })
}

/// The categories of a non-time dimension, or why it cannot be used.
fn categories(
    d: DimensionKind,
    metric: Metric,
    set: &SetFacts<'_>,
) -> Result<Vec<String>, (String, String)> {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let with_none = |mut v: Vec<String>| {
        v.push(NOT_RECORDED.to_owned());
        v
    };
    if let Some((kind, field)) = d.enum_field() {
        let Some(k) = set.kinds.get(kind) else {
            return Err((
                format!(
                    "dimension `{d}` reads `{kind}` records, and the set declares no such kind"
                ),
                "declare the kind under `kinds/`".into(),
            ));
        };
        return match k.field(field).map(|f| &f.ty) {
            Some(FieldType::Enum(values)) => Ok(with_none(values.clone())),
            Some(_) => Err((
                format!("dimension `{d}` reads field `{field}` of `{kind}`, which is not an enum"),
                format!("declare `{field}` with `type = \"enum\"` and its `values`"),
            )),
            None => Err((
                format!(
                    "dimension `{d}` reads field `{field}` of `{kind}`, which the kind does not declare"
                ),
                format!("add `{field}` to `kinds/{kind}.toml`"),
            )),
        };
    }
    Ok(match d {
        DimensionKind::All | DimensionKind::Month | DimensionKind::Quarter => Vec::new(),
        DimensionKind::Agency => {
            let owner = metric
                .record_kind()
                .and_then(|k| set.kinds.get(k))
                .map(|k| k.owner);
            with_none(
                set.partners
                    .iter()
                    .filter(|(_, p)| Some(p.kind) == owner)
                    .map(|(id, _)| id.to_string())
                    .collect(),
            )
        }
        DimensionKind::CoResponder => {
            let ok = set
                .kinds
                .get(INCIDENT_KIND)
                .and_then(|k| k.field("co_responder_present"))
                .is_some_and(|f| f.ty == FieldType::Boolean);
            if !ok {
                return Err((
                    format!(
                        "dimension `{d}` reads the boolean field `co_responder_present` of \
                         `{INCIDENT_KIND}`, which the kind does not declare"
                    ),
                    format!(
                        "add `co_responder_present` (`type = \"boolean\"`) to `kinds/{INCIDENT_KIND}.toml`"
                    ),
                ));
            }
            owned(&CO_RESPONDER_CATEGORIES)
        }
        DimensionKind::Repeat => owned(&REPEAT_CATEGORIES),
        DimensionKind::ReferralOutcome => owned(&REFERRAL_OUTCOMES),
        DimensionKind::Recipient => {
            with_none(set.partners.keys().map(ToString::to_string).collect())
        }
        DimensionKind::Purpose => {
            with_none(PURPOSES.iter().map(|(p, _)| (*p).to_owned()).collect())
        }
        DimensionKind::Basis => owned(&["mou", "consent", "emergency"]),
        DimensionKind::ReviewOutcome => owned(&["open", "justified", "not-justified"]),
        // Enum-backed dimensions were answered above.
        DimensionKind::CallType
        | DimensionKind::Disposition
        | DimensionKind::UseOfForce
        | DimensionKind::ForceQualifying
        | DimensionKind::Urgency => Vec::new(),
    })
}

fn dimension(
    cx: &mut Cx<'_>,
    name: &Sp<String>,
    metric: Metric,
    set: &SetFacts<'_>,
) -> Option<Dimension> {
    let allowed: Vec<&str> = metric.dimensions().iter().map(|d| d.as_str()).collect();
    let Some(kind) = DimensionKind::parse(&name.v).filter(|d| metric.dimensions().contains(d))
    else {
        cx.error(
            "unknown-dimension",
            name.span.clone(),
            format!("metric `{metric}` has no dimension `{}`", name.v),
            Some(choices_hint(&name.v, &allowed)),
        );
        return None;
    };
    match categories(kind, metric, set) {
        Ok(categories) => Some(Dimension { kind, categories }),
        Err((msg, hint)) => {
            cx.error("unknown-field", name.span.clone(), msg, Some(hint));
            None
        }
    }
}

/// The fields a metric always reads must be declared by its kind.
fn check_metric_fields(cx: &mut Cx<'_>, metric: &Sp<Metric>, set: &SetFacts<'_>) {
    let Some(kind) = metric.v.record_kind() else {
        return;
    };
    let needed: &[&str] = if kind == INCIDENT_KIND {
        &["occurred_at"]
    } else {
        &["status", "status_updated_at"]
    };
    let Some(k) = set.kinds.get(kind) else {
        cx.error(
            "unknown-kind",
            metric.span.clone(),
            format!(
                "metric `{}` reads `{kind}` records, and the set declares no such kind",
                metric.v
            ),
            Some("declare the kind under `kinds/`".into()),
        );
        return;
    };
    for f in needed {
        if k.field(f).is_none() {
            cx.error(
                "unknown-field",
                metric.span.clone(),
                format!(
                    "metric `{}` reads field `{f}` of `{kind}`, which the kind does not declare",
                    metric.v
                ),
                Some(format!("add `{f}` to `kinds/{kind}.toml`")),
            );
        }
    }
    debug_assert!(kind == INCIDENT_KIND || kind == REFERRAL_KIND);
}

fn check_tables(
    cx: &mut Cx<'_>,
    root: &dyn TableLike,
    rspan: &Span,
    set: &SetFacts<'_>,
) -> Vec<Sp<TableDef>> {
    let w = "`[[table]]`";
    let tables = cx.tables(root, "table");
    if tables.is_empty() {
        cx.error(
            "missing-key",
            rspan.clone(),
            "the report has no `[[table]]`".into(),
            Some("add `[[table]]` with `id`, `title`, `metric` and `rows`".into()),
        );
    }
    let mut out: Vec<Sp<TableDef>> = Vec::new();
    for (t, span) in tables {
        cx.check_keys(t, &TABLE_KEYS, w);
        let id = cx.string(t, "id", true, w, &span);
        let title = cx.string(t, "title", true, w, &span);
        let metric =
            cx.string(t, "metric", true, w, &span)
                .and_then(|m| match Metric::parse(&m.v) {
                    Some(v) => Some(Sp { v, span: m.span }),
                    None => {
                        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
                        cx.error(
                            "unknown-metric",
                            m.span.clone(),
                            format!("unknown metric `{}`", m.v),
                            Some(choices_hint(&m.v, &names)),
                        );
                        None
                    }
                });
        let rows_sp = cx.string(t, "rows", true, w, &span);
        let cols_sp = cx.string(t, "columns", false, w, &span);
        if let Some(id) = &id {
            if id.v.parse::<PartnerId>().is_err() {
                cx.error(
                    "invalid-id",
                    id.span.clone(),
                    format!("table id `{}` is not a valid id", id.v),
                    Some(
                        "use lowercase letters, digits, `-` and `_`, starting with a letter".into(),
                    ),
                );
            } else if out.iter().any(|o| o.v.id == id.v) {
                cx.error(
                    "duplicate",
                    id.span.clone(),
                    format!("table `{}` appears twice in this report", id.v),
                    Some("give each table its own id".into()),
                );
            }
        }
        let Some(metric) = metric else { continue };
        check_metric_fields(cx, &metric, set);
        let rows = rows_sp
            .as_ref()
            .and_then(|r| dimension(cx, r, metric.v, set));
        let columns = match &cols_sp {
            Some(c) if metric.v.is_duration() => {
                cx.error(
                    "unexpected-key",
                    c.span.clone(),
                    format!(
                        "a `{}` table has one column of counts and its percentiles",
                        metric.v
                    ),
                    Some("remove `columns`".into()),
                );
                None
            }
            Some(c) => {
                let d = dimension(cx, c, metric.v, set);
                if let (Some(d), Some(r)) = (&d, &rows)
                    && d.kind == r.kind
                {
                    cx.error(
                        "duplicate",
                        c.span.clone(),
                        format!("rows and columns are both `{}`", d.kind),
                        Some("split the table along two different dimensions".into()),
                    );
                }
                d
            }
            None => None,
        };
        let filters = check_filters(cx, t, metric.v, set);
        let rates = check_rates(cx, t, &span, columns.as_ref());
        let (Some(id), Some(title), Some(rows)) = (id, title, rows) else {
            continue;
        };
        if cols_sp.is_some() && columns.is_none() {
            continue;
        }
        out.push(Sp {
            v: TableDef {
                id: id.v,
                title: title.v,
                metric: metric.v,
                rows,
                columns,
                filters,
                rates,
            },
            span,
        });
    }
    out
}

fn check_filters(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    metric: Metric,
    set: &SetFacts<'_>,
) -> BTreeMap<DimensionKind, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let Some(item) = t.get("filters") else {
        return out;
    };
    let Some(ft) = item.as_table_like() else {
        cx.error(
            "wrong-type",
            item.span(),
            "`filters` must be a table of dimension = [categories]".into(),
            Some("write `filters = { call-type = [\"SUICIDE_THREAT\"] }`".into()),
        );
        return out;
    };
    for (name, _) in ft.iter() {
        let key_span = ft.key(name).and_then(|k| k.span());
        let key = Sp {
            v: name.to_owned(),
            span: key_span.clone(),
        };
        let Some(d) = dimension(cx, &key, metric, set) else {
            continue;
        };
        if d.kind.is_time() || d.kind == DimensionKind::All {
            cx.error(
                "invalid-filter",
                key_span,
                format!(
                    "`{}` cannot be filtered: the period chooses the time",
                    d.kind
                ),
                Some("filter on a category dimension".into()),
            );
            continue;
        }
        let values = cx
            .strings(ft, name, true, "`filters`", &key_span)
            .unwrap_or_default();
        let names: Vec<&str> = d.categories.iter().map(String::as_str).collect();
        let mut set_values = BTreeSet::new();
        for v in values {
            if d.categories.contains(&v.v) {
                set_values.insert(v.v);
            } else {
                cx.error(
                    "unknown-category",
                    v.span.clone(),
                    format!("`{}` is not a category of `{}`", v.v, d.kind),
                    Some(choices_hint(&v.v, &names)),
                );
            }
        }
        if !set_values.is_empty() {
            out.insert(d.kind, set_values);
        }
    }
    out
}

fn check_rates(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    span: &Span,
    columns: Option<&Dimension>,
) -> Vec<RateDef> {
    let w = "`[[table.rate]]`";
    let mut out: Vec<RateDef> = Vec::new();
    let rates = cx.tables(t, "rate");
    if !rates.is_empty() && columns.is_none() {
        cx.error(
            "invalid-rate",
            span.clone(),
            "a rate is a share of each row across the columns, and this table has no `columns`"
                .into(),
            Some("add `columns`, or remove the `[[table.rate]]`".into()),
        );
        return out;
    }
    let Some(columns) = columns else {
        return out;
    };
    let names: Vec<&str> = columns.categories.iter().map(String::as_str).collect();
    for (rt, rspan) in rates {
        cx.check_keys(rt, &RATE_KEYS, w);
        let id = cx.string(rt, "id", true, w, &rspan);
        let title = cx.string(rt, "title", true, w, &rspan);
        let share = cx
            .strings(rt, "share_of", true, w, &rspan)
            .unwrap_or_default();
        let mut share_of = Vec::new();
        for s in &share {
            if columns.kind.is_time() || !columns.categories.contains(&s.v) {
                cx.error(
                    "unknown-category",
                    s.span.clone(),
                    format!("`{}` is not a category of `{}`", s.v, columns.kind),
                    Some(choices_hint(&s.v, &names)),
                );
            } else {
                share_of.push(s.v.clone());
            }
        }
        if share.is_empty() {
            cx.error(
                "missing-key",
                rspan.clone(),
                "a rate needs the column categories it counts".into(),
                Some("write `share_of = [\"...\"]`".into()),
            );
        }
        let (Some(id), Some(title)) = (id, title) else {
            continue;
        };
        if out.iter().any(|r| r.id == id.v) {
            cx.error(
                "duplicate",
                id.span.clone(),
                format!("rate `{}` appears twice in this table", id.v),
                None,
            );
            continue;
        }
        if !share_of.is_empty() {
            out.push(RateDef {
                id: id.v,
                title: title.v,
                share_of,
            });
        }
    }
    out
}

fn number(cx: &mut Cx<'_>, t: &dyn TableLike, key: &str, at: &Span) -> Option<Sp<f64>> {
    let (item, span) = cx.value(t, key, true, "`[privacy]`", at)?;
    let v = item
        .as_float()
        .or_else(|| item.as_integer().map(|i| i as f64));
    match v {
        Some(v) => Some(Sp { v, span }),
        None => {
            cx.error(
                "wrong-type",
                span,
                format!("`{key}` in `[privacy]` must be a number"),
                Some(format!("write `{key} = 0.5`")),
            );
            None
        }
    }
}

fn check_privacy(
    cx: &mut Cx<'_>,
    root: &dyn TableLike,
    release: Option<&Sp<Release>>,
    tables: &[Sp<TableDef>],
) -> Option<Option<Privacy>> {
    let Some(pt) = root.get("privacy").and_then(Item::as_table_like) else {
        return Some(None);
    };
    let pspan = root.get("privacy").and_then(Item::span);
    cx.check_keys(pt, &PRIVACY_KEYS, "`[privacy]`");
    if let Some(r) = release
        && r.v != Release::Public
    {
        cx.error(
            "privacy-internal",
            pspan.clone(),
            "differential privacy is for `public` reports".into(),
            Some("set `release = \"public\"`, or remove `[privacy]`".into()),
        );
    }
    for t in tables {
        if !t.v.metric.is_about_people() {
            cx.error(
                "privacy-metric",
                t.span.clone(),
                format!(
                    "table `{}` counts `{}`, which cannot bound a person's contribution; \
                     differential privacy covers `incidents`, `persons` and `referrals`",
                    t.v.id, t.v.metric
                ),
                Some("move the table to a report without `[privacy]`".into()),
            );
        }
    }
    let epsilon = number(cx, pt, "epsilon", &pspan);
    let budget = number(cx, pt, "budget", &pspan);
    let series = cx.string(pt, "series", true, "`[privacy]`", &pspan);
    let max = cx.integer(pt, "max_contributions", true, "`[privacy]`", &pspan);
    if let Some(e) = &epsilon
        && !(e.v > 0.0 && e.v <= MAX_EPSILON)
    {
        cx.error(
            "invalid-privacy",
            e.span.clone(),
            format!(
                "`epsilon` is {}; it must be above 0 and at most {MAX_EPSILON}",
                e.v
            ),
            Some("a smaller epsilon adds more noise; 0.1 to 1 is usual for public counts".into()),
        );
    }
    if let (Some(b), Some(e)) = (&budget, &epsilon)
        && !(b.v >= e.v && b.v <= MAX_BUDGET)
    {
        cx.error(
            "invalid-privacy",
            b.span.clone(),
            format!(
                "`budget` is {}; it must be at least `epsilon` ({}) and at most {MAX_BUDGET}",
                b.v, e.v
            ),
            Some("the budget is the total epsilon the series may spend over all its runs".into()),
        );
    }
    if let Some(s) = &series
        && s.v.parse::<PartnerId>().is_err()
    {
        cx.error(
            "invalid-id",
            s.span.clone(),
            format!("series `{}` is not a valid id", s.v),
            Some("use lowercase letters, digits, `-` and `_`, starting with a letter".into()),
        );
    }
    let max_ok = max.as_ref().and_then(|m| {
        let ok = u32::try_from(m.v).ok().filter(|v| (1..=100).contains(v));
        if ok.is_none() {
            cx.error(
                "invalid-privacy",
                m.span.clone(),
                format!("`max_contributions` is {}; it must be from 1 to 100", m.v),
                Some("a person's units beyond it are left out of the counts".into()),
            );
        }
        ok
    });
    let (epsilon, budget, series, max) = (epsilon?, budget?, series?, max_ok?);
    Some(Some(Privacy {
        epsilon: epsilon.v,
        budget: budget.v,
        series: series.v,
        max_contributions: max,
    }))
}

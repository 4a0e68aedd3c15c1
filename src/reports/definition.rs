//! Report definitions: what a report counts, along which dimensions, who may run it, on what
//! basis, and how its numbers are protected before they leave.
//!
//! Definitions are policy files (`policies/reports/*.toml`); the policy loader parses and
//! validates them (file, line, column and hint for every problem) into these types. A
//! definition decides what the gateway reads to compute a report: its grant names
//! the record kinds and fields each table needs, and the vault opens nothing else
//! ([`Grant`]). Only [`ReportDef::authorize`] makes a grant, and only for a runner the
//! definition lists.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::domain::{PartnerKind, Principal, Role};

/// The record kind of crisis incidents.
pub const INCIDENT_KIND: &str = "crisis-incident";
/// The record kind of referrals.
pub const REFERRAL_KIND: &str = "referral";

/// What a table counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Crisis incidents whose call was received in the period.
    Incidents,
    /// Distinct people with at least one crisis incident in the period (linked through the
    /// blind indexes of their identifiers, never by an identifier).
    Persons,
    /// Referrals submitted in the period.
    Referrals,
    /// Referrals submitted in the period that reached a first contact attempt: how many, and
    /// the median and 90th percentile of the hours from submission to that attempt.
    TimeToContactAttempt,
    /// Referrals submitted in the period that reached engagement: how many, and the median
    /// and 90th percentile of the hours from submission to engagement.
    TimeToEngagement,
    /// Disclosures made under the emergency basis (HIPAA 164.512(j)) in the period, from the
    /// disclosure log.
    EmergencyAccesses,
    /// Emergency-access reviews opened in the period, with their outcome.
    EmergencyReviews,
    /// Disclosures (permitted reads) in the period, from the disclosure log.
    Disclosures,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 8] = [
        Self::Incidents,
        Self::Persons,
        Self::Referrals,
        Self::TimeToContactAttempt,
        Self::TimeToEngagement,
        Self::EmergencyAccesses,
        Self::EmergencyReviews,
        Self::Disclosures,
    ];

    /// The name used in definitions and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incidents => "incidents",
            Self::Persons => "persons",
            Self::Referrals => "referrals",
            Self::TimeToContactAttempt => "time-to-contact-attempt",
            Self::TimeToEngagement => "time-to-engagement",
            Self::EmergencyAccesses => "emergency-accesses",
            Self::EmergencyReviews => "emergency-reviews",
            Self::Disclosures => "disclosures",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// What one counted unit is, for people.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Incidents => "crisis incidents",
            Self::Persons => "people",
            Self::Referrals | Self::TimeToContactAttempt | Self::TimeToEngagement => "referrals",
            Self::EmergencyAccesses | Self::Disclosures => "disclosures",
            Self::EmergencyReviews => "emergency-access reviews",
        }
    }

    /// The dimensions a table of this metric may use (rows, columns and filters).
    pub fn dimensions(self) -> &'static [DimensionKind] {
        use DimensionKind as D;
        match self {
            Self::Incidents => &[
                D::All,
                D::Month,
                D::Quarter,
                D::Agency,
                D::CallType,
                D::Disposition,
                D::CoResponder,
                D::UseOfForce,
                D::ForceQualifying,
                D::Repeat,
            ],
            Self::Persons => &[D::All, D::Agency, D::Repeat],
            Self::Referrals => &[
                D::All,
                D::Month,
                D::Quarter,
                D::Agency,
                D::Urgency,
                D::ReferralOutcome,
            ],
            Self::TimeToContactAttempt | Self::TimeToEngagement => {
                &[D::All, D::Month, D::Quarter, D::Agency, D::Urgency]
            }
            Self::EmergencyAccesses => &[D::All, D::Month, D::Quarter, D::Recipient],
            Self::EmergencyReviews => {
                &[D::All, D::Month, D::Quarter, D::Recipient, D::ReviewOutcome]
            }
            Self::Disclosures => &[
                D::All,
                D::Month,
                D::Quarter,
                D::Recipient,
                D::Purpose,
                D::Basis,
            ],
        }
    }

    /// Whether the table publishes a median and 90th percentile per row (and has one count
    /// column).
    pub fn is_duration(self) -> bool {
        matches!(self, Self::TimeToContactAttempt | Self::TimeToEngagement)
    }

    /// The record kind the metric reads, if it reads records (the others read the log or
    /// the review queue).
    pub fn record_kind(self) -> Option<&'static str> {
        match self {
            Self::Incidents | Self::Persons => Some(INCIDENT_KIND),
            Self::Referrals | Self::TimeToContactAttempt | Self::TimeToEngagement => {
                Some(REFERRAL_KIND)
            }
            Self::EmergencyAccesses | Self::EmergencyReviews | Self::Disclosures => None,
        }
    }

    /// Whether each counted unit belongs to one person the gateway can link, so that a
    /// person's contribution can be bounded (required for differential privacy).
    pub fn is_about_people(self) -> bool {
        matches!(self, Self::Incidents | Self::Persons | Self::Referrals)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A way to split a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DimensionKind {
    /// No split: one row, `all`.
    All,
    /// Calendar month (UTC), `2026-03`.
    Month,
    /// Calendar quarter (UTC), `2026-Q1`.
    Quarter,
    /// The police agency that holds the incident or made the referral.
    Agency,
    /// The incident's call type.
    CallType,
    /// How the incident ended.
    Disposition,
    /// Whether a co-responder (a clinician) was on scene.
    CoResponder,
    /// The most serious type of force used (FBI National Use-of-Force Data Collection types).
    UseOfForce,
    /// Whether the use of force qualifies for the FBI collection, and why.
    ForceQualifying,
    /// Whether the same person had a crisis within the 30 or 90 days before (through the
    /// blind index).
    Repeat,
    /// The referral's urgency.
    Urgency,
    /// Where the referral ended up: engaged, declined, unable to contact, withdrawn,
    /// rejected, or still open.
    ReferralOutcome,
    /// The partner that received the disclosure or broke the glass.
    Recipient,
    /// The purpose of use of the disclosure.
    Purpose,
    /// The legal basis kind of the disclosure: `mou`, `consent` or `emergency`.
    Basis,
    /// The review's outcome: `open`, `justified` or `not-justified`.
    ReviewOutcome,
}

/// Repeat categories, nearest first.
pub const REPEAT_CATEGORIES: [&str; 3] = [
    "WITHIN_30_DAYS",
    "WITHIN_31_TO_90_DAYS",
    "NONE_IN_PRIOR_90_DAYS",
];

/// Referral outcome categories.
pub const REFERRAL_OUTCOMES: [&str; 6] = [
    "ENGAGED",
    "DECLINED",
    "UNABLE_TO_CONTACT",
    "WITHDRAWN",
    "REJECTED",
    "OPEN",
];

/// Co-responder categories.
pub const CO_RESPONDER_CATEGORIES: [&str; 3] = ["PRESENT", "ABSENT", NOT_RECORDED];

/// The category of a record whose field is empty.
pub const NOT_RECORDED: &str = "NOT_RECORDED";

impl DimensionKind {
    /// Every dimension.
    pub const ALL: [DimensionKind; 16] = [
        Self::All,
        Self::Month,
        Self::Quarter,
        Self::Agency,
        Self::CallType,
        Self::Disposition,
        Self::CoResponder,
        Self::UseOfForce,
        Self::ForceQualifying,
        Self::Repeat,
        Self::Urgency,
        Self::ReferralOutcome,
        Self::Recipient,
        Self::Purpose,
        Self::Basis,
        Self::ReviewOutcome,
    ];

    /// The name used in definitions and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Agency => "agency",
            Self::CallType => "call-type",
            Self::Disposition => "disposition",
            Self::CoResponder => "co-responder",
            Self::UseOfForce => "use-of-force",
            Self::ForceQualifying => "force-qualifying",
            Self::Repeat => "repeat",
            Self::Urgency => "urgency",
            Self::ReferralOutcome => "referral-outcome",
            Self::Recipient => "recipient",
            Self::Purpose => "purpose",
            Self::Basis => "basis",
            Self::ReviewOutcome => "review-outcome",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether the categories come from the report's period.
    pub fn is_time(self) -> bool {
        matches!(self, Self::Month | Self::Quarter)
    }

    /// The record field the dimension reads, as `(kind, field)`, for dimensions that read an
    /// enum field of a record (their categories are the field's values).
    pub fn enum_field(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::CallType => Some((INCIDENT_KIND, "call_type")),
            Self::Disposition => Some((INCIDENT_KIND, "disposition")),
            Self::UseOfForce => Some((INCIDENT_KIND, "use_of_force")),
            Self::ForceQualifying => Some((INCIDENT_KIND, "force_qualifying_event")),
            Self::Urgency => Some((REFERRAL_KIND, "urgency")),
            _ => None,
        }
    }

    /// The record fields the dimension reads from `kind` (besides the period's time field).
    pub fn fields(self, kind: &str) -> &'static [&'static str] {
        match (self, kind) {
            (Self::CoResponder, INCIDENT_KIND) => &["co_responder_present"],
            (Self::Repeat, INCIDENT_KIND) => &[],
            _ => match self.enum_field() {
                Some((k, f)) if k == kind => match f {
                    "call_type" => &["call_type"],
                    "disposition" => &["disposition"],
                    "use_of_force" => &["use_of_force"],
                    "force_qualifying_event" => &["force_qualifying_event"],
                    "urgency" => &["urgency"],
                    _ => &[],
                },
                _ => &[],
            },
        }
    }

    /// Whether the dimension needs the people behind the records (linked through blind
    /// indexes).
    pub fn needs_people(self) -> bool {
        matches!(self, Self::Repeat)
    }
}

impl fmt::Display for DimensionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dimension with its categories. Time dimensions get theirs from the period when the report
/// runs; every other dimension's categories are fixed by the policy set (enum values of the
/// record kinds, registered partners, purposes), so a table always shows every category,
/// zeros included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dimension {
    /// Which dimension.
    pub kind: DimensionKind,
    /// Its categories (empty for time dimensions).
    pub categories: Vec<String>,
}

/// A percentage published next to a table: for each row, the share of the row's total that
/// falls in the listed column categories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateDef {
    /// Id, e.g. `diversion`.
    pub id: String,
    /// What it is, for people.
    pub title: String,
    /// The column categories counted in the numerator.
    pub share_of: Vec<String>,
}

/// One table of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableDef {
    /// Id, unique within the report (used in file names).
    pub id: String,
    /// Title.
    pub title: String,
    /// What it counts.
    pub metric: Metric,
    /// The row dimension.
    pub rows: Dimension,
    /// The column dimension, if any (a duration table has none).
    pub columns: Option<Dimension>,
    /// Only units in these categories are counted, per dimension.
    pub filters: BTreeMap<DimensionKind, BTreeSet<String>>,
    /// Percentages computed per row.
    pub rates: Vec<RateDef>,
}

impl TableDef {
    /// Every dimension the table uses: rows, columns and filters.
    pub fn dimensions(&self) -> impl Iterator<Item = DimensionKind> + '_ {
        std::iter::once(self.rows.kind)
            .chain(self.columns.iter().map(|c| c.kind))
            .chain(self.filters.keys().copied())
    }
}

/// Who may see a report: internal reports go to the runners only; public ones may be
/// published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Release {
    /// For the listed runners only.
    Internal,
    /// Fit to publish.
    Public,
}

impl Release {
    /// `internal` or `public`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Public => "public",
        }
    }
}

/// Partners of one kind, users holding one of the roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runner {
    /// The partner kind.
    pub partner_kind: PartnerKind,
    /// Any one of these roles.
    pub roles: BTreeSet<Role>,
}

/// The legal basis of computing the report from the shared records: the MOU section under
/// which the parties agreed to joint program evaluation, and the law behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Basis {
    /// The MOU's id.
    pub mou: String,
    /// Its section on program evaluation.
    pub section: String,
    /// The legal citation.
    pub citation: String,
}

/// Differential privacy for a public report: calibrated noise on every count before
/// suppression, and a budget per series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Privacy {
    /// The privacy loss of one run.
    pub epsilon: f64,
    /// The total privacy loss the series may spend over all its runs.
    pub budget: f64,
    /// The series the runs are charged to (several definitions may share one).
    pub series: String,
    /// The most units one person may contribute to one table (more are left out).
    pub max_contributions: u32,
}

/// A report definition, as validated by the policy loader.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportDef {
    /// Id (`GET /v1/reports/{id}`).
    pub id: String,
    /// Title.
    pub title: String,
    /// What it shows and for whom.
    pub description: String,
    /// Internal or public.
    pub release: Release,
    /// Who may run it.
    pub runners: Vec<Runner>,
    /// The legal basis of the computation.
    pub basis: Basis,
    /// Its tables.
    pub tables: Vec<TableDef>,
    /// Differential privacy, for a public report whose definition asks for it.
    pub privacy: Option<Privacy>,
    /// The file it was read from, relative to the policy directory.
    pub file: String,
    /// SHA-256 of the file's bytes, lower-case hex (logged with every run).
    pub hash: String,
}

/// What the vault may open for one record kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KindGrant {
    /// The fields (values of other fields stay sealed).
    pub fields: BTreeSet<String>,
    /// Every version's values, not only the current one (a referral's status moves).
    pub history: bool,
    /// The blind indexes of the records' subject identifiers (never the identifiers).
    pub people: bool,
}

/// The capability to read what one report needs: made only by [`ReportDef::authorize`], for a
/// runner the definition lists. The vault opens records for aggregation only with one, and only
/// the fields it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    report: String,
    kinds: BTreeMap<String, KindGrant>,
}

impl Grant {
    /// The report it is for.
    pub fn report(&self) -> &str {
        &self.report
    }

    /// What may be opened of `kind` (none: nothing).
    pub fn kind(&self, kind: &str) -> Option<&KindGrant> {
        self.kinds.get(kind)
    }

    /// Every kind and what may be opened of it.
    pub fn kinds(&self) -> &BTreeMap<String, KindGrant> {
        &self.kinds
    }

    /// A grant for tests of the vault's gate.
    #[cfg(feature = "test-support")]
    pub fn for_tests(report: &str, kinds: BTreeMap<String, KindGrant>) -> Self {
        Self {
            report: report.to_owned(),
            kinds,
        }
    }
}

/// Why a caller may not run a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "report `{report}` may be run by {allowed}; `{partner_kind}` partner users with roles \
     [{roles}] may not"
)]
pub struct Refusal {
    /// The report.
    pub report: String,
    /// Who may, for people.
    pub allowed: String,
    /// The caller's partner kind.
    pub partner_kind: PartnerKind,
    /// The caller's roles.
    pub roles: String,
}

impl ReportDef {
    /// Whether `who` is one of the runners.
    pub fn may_run(&self, who: &Principal) -> bool {
        self.runners.iter().any(|r| {
            r.partner_kind == who.partner_kind && r.roles.iter().any(|x| who.roles.contains(x))
        })
    }

    /// The grant for `who`, or why not.
    pub fn authorize(&self, who: &Principal) -> Result<Grant, Refusal> {
        if !self.may_run(who) {
            return Err(Refusal {
                report: self.id.clone(),
                allowed: self.runners_text(),
                partner_kind: who.partner_kind,
                roles: who
                    .roles
                    .iter()
                    .map(Role::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(Grant {
            report: self.id.clone(),
            kinds: self.needs(),
        })
    }

    /// Who may run it, for people: `police partners (role records-clerk); ...`.
    pub fn runners_text(&self) -> String {
        self.runners
            .iter()
            .map(|r| {
                format!(
                    "{} partners (role {})",
                    r.partner_kind,
                    r.roles
                        .iter()
                        .map(Role::as_str)
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// What the report reads of each record kind: the time field, each dimension's and
    /// filter's field, the history for referral times, the people for repeat crises and for
    /// bounding a person's contribution under differential privacy.
    pub fn needs(&self) -> BTreeMap<String, KindGrant> {
        let mut out: BTreeMap<String, KindGrant> = BTreeMap::new();
        for t in &self.tables {
            let Some(kind) = t.metric.record_kind() else {
                continue;
            };
            let g = out.entry(kind.to_owned()).or_default();
            match kind {
                INCIDENT_KIND => {
                    g.fields.insert("occurred_at".to_owned());
                }
                _ => {
                    // A referral's submission time and its moves are its status history.
                    g.fields.insert("status".to_owned());
                    g.fields.insert("status_updated_at".to_owned());
                    g.history = true;
                }
            }
            for d in t.dimensions() {
                for f in d.fields(kind) {
                    g.fields.insert((*f).to_owned());
                }
                if d.needs_people() {
                    g.people = true;
                }
            }
            if t.metric == Metric::Persons || self.privacy.is_some() {
                g.people = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CertFingerprint;

    fn def() -> ReportDef {
        ReportDef {
            id: "r".into(),
            title: "t".into(),
            description: String::new(),
            release: Release::Internal,
            runners: vec![Runner {
                partner_kind: PartnerKind::MentalHealth,
                roles: ["clinician".parse().unwrap()].into(),
            }],
            basis: Basis {
                mou: "m".into(),
                section: "8".into(),
                citation: "c".into(),
            },
            tables: vec![TableDef {
                id: "a".into(),
                title: "a".into(),
                metric: Metric::Incidents,
                rows: Dimension {
                    kind: DimensionKind::Month,
                    categories: vec![],
                },
                columns: Some(Dimension {
                    kind: DimensionKind::Disposition,
                    categories: vec!["ARREST".into()],
                }),
                filters: BTreeMap::from([(
                    DimensionKind::CallType,
                    BTreeSet::from(["OTHER".to_owned()]),
                )]),
                rates: vec![],
            }],
            privacy: None,
            file: "reports/r.toml".into(),
            hash: String::new(),
        }
    }

    fn who(kind: PartnerKind, role: &str) -> Principal {
        Principal {
            partner: "p".parse().unwrap(),
            partner_kind: kind,
            user: "u".parse().unwrap(),
            roles: [role.parse().unwrap()].into(),
            cert_fingerprint: CertFingerprint::of_der(b"x"),
        }
    }

    #[test]
    fn only_a_listed_runner_gets_a_grant() {
        let d = def();
        assert!(
            d.authorize(&who(PartnerKind::MentalHealth, "clinician"))
                .is_ok()
        );
        let e = d
            .authorize(&who(PartnerKind::Police, "clinician"))
            .unwrap_err();
        assert!(e.to_string().contains("mental-health partners"), "{e}");
        assert!(
            d.authorize(&who(PartnerKind::MentalHealth, "intake"))
                .is_err()
        );
    }

    #[test]
    fn a_grant_names_only_the_fields_the_tables_use() {
        let g = def()
            .authorize(&who(PartnerKind::MentalHealth, "clinician"))
            .unwrap();
        let k = g.kind(INCIDENT_KIND).unwrap();
        let fields: Vec<&str> = k.fields.iter().map(String::as_str).collect();
        assert_eq!(fields, ["call_type", "disposition", "occurred_at"]);
        assert!(!k.people && !k.history);
        assert!(g.kind(REFERRAL_KIND).is_none());
    }

    #[test]
    fn names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
            for d in m.dimensions() {
                assert_eq!(DimensionKind::parse(d.as_str()), Some(*d));
            }
        }
        for d in DimensionKind::ALL {
            assert_eq!(DimensionKind::parse(d.as_str()), Some(d));
        }
    }
}

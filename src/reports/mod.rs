//! Program outcome reports: aggregates computed inside the gateway from the sealed records and
//! the disclosure log, released only after disclosure control.
//!
//! Security role: a report joins police and mental-health data that no partner may copy, so
//! the numbers must not re-identify anyone. Three gates hold that:
//!
//! 1. **What is read.** A definition ([`definition::ReportDef`], a reviewed policy file) names
//!    the record kinds and fields each table needs; only [`definition::ReportDef::authorize`]
//!    makes the [`definition::Grant`] that lets the vault open them, and only for a runner the
//!    definition lists. People are linked only through keyed blind indexes
//!    ([`facts::link_people`]), never by an identifier.
//! 2. **What may leave.** [`run`] counts ([`aggregate`]), optionally adds calibrated noise
//!    ([`privacy`], for public reports whose definition asks for it) and applies the CMS
//!    cell-size suppression with complementary suppression over each whole table
//!    ([`suppress`], [`table`]). Its result is [`Protected`]: nothing in it is below the
//!    threshold or derivable, and its raw counts are gone.
//! 3. **When it leaves.** A [`Protected`] report becomes [`Released`] (the only form that
//!    serializes) only with the [`Receipt`] of its durable `report_generated` log entry.
//!
//! Pure: no I/O. The report service reads the data, writes the log entry and the privacy
//! ledger, and answers.

pub mod aggregate;
pub mod definition;
pub mod facts;
pub mod privacy;
pub mod render;
pub mod suppress;
pub mod table;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::Receipt;
pub use definition::{Grant, ReportDef};
pub use facts::{Facts, Period};
use table::{ProtectedTable, SuppressionSummary};

/// The rule applied to every count, as published with the numbers.
pub const SUPPRESSION_RULE: &str = "CMS cell size suppression policy: no count from 1 to 10 is \
     shown (zero may show), and no count, total or percentage from which such a value could \
     be derived; withheld cells are found over the whole table (complementary suppression)";

/// Where the rule comes from.
pub const SUPPRESSION_SOURCE: &str =
    "https://www.hhs.gov/guidance/document/cms-cell-suppression-policy";

/// The noise of a table under differential privacy, as published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableNoise {
    /// The table.
    pub table: String,
    /// Its noise.
    #[serde(flatten)]
    pub noise: privacy::Noise,
}

/// Differential privacy as applied to one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedPrivacy {
    /// How the noise is drawn.
    pub mechanism: &'static str,
    /// The run's privacy loss (split evenly over its tables).
    pub epsilon: f64,
    /// Each table's noise.
    pub tables: Vec<TableNoise>,
}

/// A report after disclosure control, before its log entry: nothing in it may be derived
/// below the threshold, but it leaves only as [`Released`].
#[derive(Debug, Clone, PartialEq)]
pub struct Protected {
    run_id: String,
    tables: Vec<ProtectedTable>,
    privacy: Option<AppliedPrivacy>,
}

impl Protected {
    /// The run's id (the log entry's decision id).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// What was withheld, over every table (what the log entry records).
    pub fn summary(&self) -> SuppressionSummary {
        self.tables
            .iter()
            .fold(SuppressionSummary::default(), |mut s, t| {
                s.counts += t.suppression.counts;
                s.primary += t.suppression.primary;
                s.complementary += t.suppression.complementary;
                s.derived += t.suppression.derived;
                s
            })
    }

    /// The privacy applied, if any.
    pub fn privacy(&self) -> Option<&AppliedPrivacy> {
        self.privacy.as_ref()
    }

    /// The report, once its log entry is durable: `receipt` must be that of the entry whose
    /// decision id is this run's id.
    pub fn release(
        self,
        receipt: &Receipt,
        about: ReleaseInfo,
    ) -> Result<Released, ReleaseRefused> {
        if receipt.decision_id() != Some(self.run_id.as_str()) {
            return Err(ReleaseRefused {
                run_id: self.run_id,
            });
        }
        let summary = self.summary();
        Ok(Released {
            report: about.report,
            title: about.title,
            description: about.description,
            release: about.release,
            definition_hash: about.definition_hash,
            policy_set: about.policy_set,
            period: about.period,
            generated_at: about.generated_at,
            run_id: self.run_id,
            log_entry: receipt.seq(),
            disclosure_control: DisclosureControl {
                rule: SUPPRESSION_RULE,
                source: SUPPRESSION_SOURCE,
                withheld_from: suppress::MIN_SUPPRESSED,
                withheld_to: suppress::MAX_SUPPRESSED,
                summary,
            },
            privacy: self.privacy.map(|p| PublishedPrivacy {
                applied: p,
                ledger: about.ledger,
            }),
            tables: self.tables,
        })
    }
}

/// A receipt of another entry was presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the log receipt does not belong to report run `{run_id}`")]
pub struct ReleaseRefused {
    /// The run.
    pub run_id: String,
}

/// What the release says about the run besides its tables.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseInfo {
    /// The report's id.
    pub report: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Internal or public.
    pub release: definition::Release,
    /// SHA-256 of the definition file.
    pub definition_hash: String,
    /// The policy set's hash.
    pub policy_set: String,
    /// The period.
    pub period: PeriodView,
    /// When it was computed.
    pub generated_at: DateTime<Utc>,
    /// The budget of the series, for a run under differential privacy.
    pub ledger: Option<Ledger>,
}

/// The period as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodView {
    /// First instant (inclusive).
    pub from: DateTime<Utc>,
    /// Instant after the last (exclusive).
    pub to: DateTime<Utc>,
}

impl From<&Period> for PeriodView {
    fn from(p: &Period) -> Self {
        Self {
            from: p.from(),
            to: p.to(),
        }
    }
}

/// A series' privacy budget after a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ledger {
    /// The series.
    pub series: String,
    /// Its total budget.
    pub budget: f64,
    /// Spent before this run.
    pub spent_before: f64,
    /// Spent including this run.
    pub spent_after: f64,
}

/// The disclosure control applied, as published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisclosureControl {
    /// The rule.
    pub rule: &'static str,
    /// Its source.
    pub source: &'static str,
    /// Smallest count withheld.
    pub withheld_from: i64,
    /// Largest count withheld.
    pub withheld_to: i64,
    /// What was withheld over every table.
    pub summary: SuppressionSummary,
}

/// Differential privacy as published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedPrivacy {
    /// The mechanism, epsilon and each table's noise scale.
    #[serde(flatten)]
    pub applied: AppliedPrivacy,
    /// The series' budget.
    pub ledger: Option<Ledger>,
}

/// A report as it leaves the gateway (JSON, CSV, SVG).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Released {
    /// The report's id.
    pub report: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Internal or public.
    pub release: definition::Release,
    /// SHA-256 of the definition file.
    pub definition_hash: String,
    /// The policy set's hash.
    pub policy_set: String,
    /// The period.
    pub period: PeriodView,
    /// When it was computed.
    pub generated_at: DateTime<Utc>,
    /// The run's id.
    pub run_id: String,
    /// Its `report_generated` log entry.
    pub log_entry: u64,
    /// The suppression applied.
    pub disclosure_control: DisclosureControl,
    /// Differential privacy, if applied.
    pub privacy: Option<PublishedPrivacy>,
    /// The tables.
    pub tables: Vec<ProtectedTable>,
}

/// A report could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Differential privacy could not be applied.
    #[error(transparent)]
    Privacy(#[from] privacy::PrivacyError),
}

/// Computes the report `def` over `facts` for `period`: counts, noise where the definition
/// asks for it, then suppression. `run_id` names the run (its log entry's decision id).
pub fn run(
    def: &ReportDef,
    facts: &Facts,
    period: &Period,
    run_id: String,
) -> Result<Protected, ReportError> {
    let share = def
        .privacy
        .as_ref()
        .map(|p| p.epsilon / def.tables.len().max(1) as f64);
    let mut tables = Vec::with_capacity(def.tables.len());
    let mut noises = Vec::new();
    for t in &def.tables {
        let cap = def.privacy.as_ref().map(|p| match t.metric {
            definition::Metric::Persons => 1,
            _ => p.max_contributions,
        });
        let mut grid = aggregate::tabulate(t, facts, period, cap);
        if let (Some(epsilon), Some(sensitivity)) = (share, cap) {
            let noise = privacy::calibrate(epsilon, sensitivity)?;
            grid.cells = privacy::add_noise(&noise, &grid.cells)?;
            noises.push(TableNoise {
                table: t.id.clone(),
                noise,
            });
        }
        tables.push(ProtectedTable::new(t, &grid));
    }
    Ok(Protected {
        run_id,
        tables,
        privacy: def.privacy.as_ref().map(|p| AppliedPrivacy {
            mechanism: privacy::MECHANISM,
            epsilon: p.epsilon,
            tables: noises,
        }),
    })
}

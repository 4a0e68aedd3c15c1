//! Program outcome reports: listing the reports a caller may run, and running one.
//!
//! A run is a use of the shared data, so it follows the disclosure path's rules:
//!
//! - **Who.** Only a runner the reviewed definition lists gets the grant that lets the vault
//!   open records for it; anyone else is refused, and the refusal is a `report_generated`
//!   entry with outcome `deny` before the answer.
//! - **What is read.** Only the record kinds and fields the definition's tables need (the
//!   grant), people only as blind indexes, log entries only as counts; everything in one
//!   read snapshot.
//! - **Legal basis.** The definition's `[basis]`: the MOU section under which the parties
//!   agreed to joint program evaluation and its citation (HIPAA health care operations, 45 CFR
//!   164.501 and 164.506(c)(1), for the mental-health side). The log entry names the MOU and
//!   section as its basis.
//! - **What leaves.** Only what passed disclosure control ([`crate::reports`]), and only after
//!   its `report_generated` entry is durable: the entry holds the definition's hash, the period,
//!   the caller, the kinds and fields read and what disclosure control withheld (how many
//!   numbers, never a withheld value), and for a run under differential privacy the epsilon
//!   charged, committed together with the charge in the series' budget ledger. A run that would
//!   pass the budget is refused (and logged) and charges nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;
use tracing::instrument;
use uuid::Uuid;

use super::{Caller, Error, Services, log_error, record_error};
use crate::audit::{EntryKind, LegalBasis, NewEntry, Outcome, query};
use crate::domain::Code;
use crate::domain::RecordKind;
use crate::reports::definition::{Metric, Release};
use crate::reports::facts::{DisclosureFact, IncidentFact, ReferralFact, ReviewFact};
use crate::reports::{self, Facts, Ledger, Period, Protected, Released, ReportDef, privacy};
use crate::store::privacy_ledger::{self, Charge};
use crate::vault::{self, ReportRow};

/// A report a caller may run, as listed (`GET /v1/reports`).
#[derive(Debug, Clone, Serialize)]
pub struct ReportListing {
    /// Id (`GET /v1/reports/{id}`).
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// `internal` or `public`.
    pub release: Release,
    /// SHA-256 of the definition file.
    pub definition_hash: String,
    /// The definition file.
    pub file: String,
    /// Who may run it.
    pub runners: String,
    /// The legal basis.
    pub basis: reports::definition::Basis,
    /// Its tables.
    pub tables: Vec<TableListing>,
    /// Differential privacy and the series' budget, if the definition uses it.
    pub privacy: Option<PrivacyListing>,
}

/// A table of a listed report.
#[derive(Debug, Clone, Serialize)]
pub struct TableListing {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Metric.
    pub metric: Metric,
    /// What is counted.
    pub unit: &'static str,
    /// Row dimension.
    pub rows: String,
    /// Column dimension.
    pub columns: Option<String>,
    /// Rate ids and titles.
    pub rates: Vec<(String, String)>,
}

/// A listed report's privacy settings and what its series has spent.
#[derive(Debug, Clone, Serialize)]
pub struct PrivacyListing {
    /// Epsilon per run.
    pub epsilon: f64,
    /// The series.
    pub series: String,
    /// Its budget.
    pub budget: f64,
    /// Spent so far.
    pub spent: f64,
    /// Runs the rest of the budget allows.
    pub runs_left: i64,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The basis of a run, as the log records it.
fn basis(def: &ReportDef) -> LegalBasis {
    LegalBasis::Mou {
        mou_id: def.basis.mou.clone(),
        rule: format!("section {}", def.basis.section),
    }
}

/// What a run read, for its log entry: kinds and fields (never values).
fn read_text(grant: &reports::Grant, def: &ReportDef) -> String {
    let mut parts: Vec<String> = grant
        .kinds()
        .iter()
        .map(|(kind, g)| {
            let mut s = format!(
                "{kind} fields {}",
                g.fields.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            if g.history {
                s.push_str(" (every version)");
            }
            if g.people {
                s.push_str(" and people by blind index");
            }
            s
        })
        .collect();
    let mut log = Vec::new();
    for t in &def.tables {
        let src = match t.metric {
            Metric::Disclosures | Metric::EmergencyAccesses => "disclosure log",
            Metric::EmergencyReviews => "emergency review queue",
            _ => continue,
        };
        if !log.contains(&src) {
            log.push(src);
        }
    }
    parts.extend(log.into_iter().map(str::to_owned));
    parts.join("; ")
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl Services {
    /// The reports `caller` may run, with their tables and, for a public report under
    /// differential privacy, what its series has spent: `GET /v1/reports`. Reading
    /// definitions discloses no data, so it is not logged.
    #[instrument(skip_all)]
    pub async fn list_reports(&self, caller: &Caller<'_>) -> Result<Vec<ReportListing>, Error> {
        let policy = self.policy();
        let mut out = Vec::new();
        for def in policy.reports.values() {
            if !def.may_run(caller.principal) {
                continue;
            }
            let privacy = match &def.privacy {
                Some(p) => {
                    let spent = {
                        let mut pooled = self.store.acquire().await?;
                        privacy_ledger::spent(&mut pooled.conn(), &p.series).await?
                    };
                    let left = privacy::budget_micros(p.budget) - spent;
                    let per_run = privacy::charge_micros(p.epsilon).max(1);
                    Some(PrivacyListing {
                        epsilon: p.epsilon,
                        series: p.series.clone(),
                        budget: p.budget,
                        spent: privacy::from_micros(spent),
                        runs_left: (left / per_run).max(0),
                    })
                }
                None => None,
            };
            out.push(ReportListing {
                id: def.id.clone(),
                title: def.title.clone(),
                description: def.description.clone(),
                release: def.release,
                definition_hash: def.hash.clone(),
                file: def.file.clone(),
                runners: def.runners_text(),
                basis: def.basis.clone(),
                tables: def
                    .tables
                    .iter()
                    .map(|t| TableListing {
                        id: t.id.clone(),
                        title: t.title.clone(),
                        metric: t.metric,
                        unit: t.metric.unit(),
                        rows: t.rows.kind.as_str().to_owned(),
                        columns: t.columns.as_ref().map(|c| c.kind.as_str().to_owned()),
                        rates: t
                            .rates
                            .iter()
                            .map(|r| (r.id.clone(), r.title.clone()))
                            .collect(),
                    })
                    .collect(),
                privacy,
            });
        }
        Ok(out)
    }

    /// Runs report `id` over `period` for `caller`: `GET /v1/reports/{id}` and
    /// `report run`. Refusals are logged before they are answered; the report leaves only
    /// after its durable `report_generated` entry.
    #[instrument(skip_all, fields(report = %id))]
    pub async fn run_report(
        &self,
        caller: &Caller<'_>,
        id: &str,
        period: Period,
    ) -> Result<Released, Error> {
        let policy = self.policy();
        let Some(def) = policy.reports.get(id) else {
            return Err(Error::not_found(
                Code::UnknownReport,
                format!("there is no report `{id}`; `GET /v1/reports` lists those you may run"),
            ));
        };
        let grant = match def.authorize(caller.principal) {
            Ok(g) => g,
            Err(refusal) => {
                self.refuse_report(
                    caller,
                    def,
                    &period,
                    Code::ReportNotPermitted,
                    &refusal.to_string(),
                )
                .await?;
                return Err(Error::forbidden(
                    Code::ReportNotPermitted,
                    refusal.to_string(),
                ));
            }
        };
        if let Some(p) = &def.privacy {
            let spent = {
                let mut pooled = self.store.acquire().await?;
                privacy_ledger::spent(&mut pooled.conn(), &p.series).await?
            };
            if let Err(e) = self.check_budget(def, spent) {
                self.refuse_report(caller, def, &period, e.code(), &e.to_string())
                    .await?;
                return Err(e);
            }
        }
        let facts = self.report_facts(def, &grant, &period).await?;
        let run_id = Uuid::now_v7().to_string();
        let protected = reports::run(def, &facts, &period, run_id)
            .map_err(|e| Error::internal(format!("report `{id}`: {e}")))?;
        drop(facts);
        self.release_report(caller, def, &grant, &period, protected, &policy.hash)
            .await
    }

    /// A refusal for when the series' budget cannot pay for one more run.
    fn check_budget(&self, def: &ReportDef, spent: i64) -> Result<(), Error> {
        let Some(p) = &def.privacy else {
            return Ok(());
        };
        let charge = privacy::charge_micros(p.epsilon);
        let budget = privacy::budget_micros(p.budget);
        if spent.saturating_add(charge) <= budget {
            return Ok(());
        }
        Err(Error::Conflict {
            code: Code::PrivacyBudgetExhausted,
            message: format!(
                "report `{}` would spend epsilon {} of series `{}`, which has spent {} of its \
                 budget of {}; no further run of the series can be released (raise the budget \
                 in the reviewed definition only with the privacy officer's approval)",
                def.id,
                p.epsilon,
                p.series,
                privacy::from_micros(spent),
                p.budget
            ),
            details: Some(json!({
                "series": p.series,
                "epsilon": p.epsilon,
                "spent": privacy::from_micros(spent),
                "budget": p.budget,
            })),
        })
    }

    /// Logs a refused run durably.
    async fn refuse_report(
        &self,
        caller: &Caller<'_>,
        def: &ReportDef,
        period: &Period,
        code: Code,
        why: &str,
    ) -> Result<(), Error> {
        let mut e = caller.entry(
            EntryKind::ReportGenerated,
            self.now(),
            Outcome::deny(code.as_str()),
        );
        e.policy_hash = Some(self.policy().hash.clone());
        e.detail = Some(bounded(
            format!(
                "report `{}` (sha256 {}) for {}..{} refused: {why}",
                def.id,
                def.hash,
                rfc3339(period.from()),
                rfc3339(period.to())
            ),
            crate::audit::MAX_TEXT - 8,
        ));
        self.log.append(e).await.map_err(log_error)?;
        Ok(())
    }

    /// Reads what the grant allows, in one snapshot, into facts.
    async fn report_facts(
        &self,
        def: &ReportDef,
        grant: &reports::Grant,
        period: &Period,
    ) -> Result<Facts, Error> {
        let mut tx = self.store.begin_read().await?;
        let mut rows: BTreeMap<String, Vec<ReportRow>> = BTreeMap::new();
        for kind in grant.kinds().keys() {
            let k: RecordKind = kind.parse().map_err(Error::internal)?;
            let read = vault::report_rows(&mut tx.conn(), &self.keyring, grant, &k)
                .await
                .map_err(record_error)?;
            rows.insert(kind.clone(), read);
        }
        // People across kinds: a person's incidents and referrals are linked through the blind
        // indexes of any identifier they share.
        let all: Vec<Vec<[u8; 32]>> = rows.values().flatten().map(|r| r.people.clone()).collect();
        let linked = reports::facts::link_people(&all);
        let mut people = linked.into_iter();
        let mut facts = Facts::default();
        for (kind, list) in &rows {
            for r in list {
                let person = people.next().filter(|_| !r.people.is_empty());
                match kind.as_str() {
                    reports::definition::INCIDENT_KIND => {
                        if let Some(f) = r
                            .versions
                            .last()
                            .and_then(|v| IncidentFact::from_values(r.owner.as_str(), v, person))
                        {
                            facts.incidents.push(f);
                        }
                    }
                    reports::definition::REFERRAL_KIND => {
                        if let Some(f) =
                            ReferralFact::from_versions(r.owner.as_str(), &r.versions, person)
                        {
                            facts.referrals.push(f);
                        }
                    }
                    _ => {}
                }
            }
        }
        let metrics: Vec<Metric> = def.tables.iter().map(|t| t.metric).collect();
        if metrics
            .iter()
            .any(|m| matches!(m, Metric::Disclosures | Metric::EmergencyAccesses))
        {
            let filter = query::Filter {
                kinds: vec![EntryKind::Disclosure],
                outcome: Some("permit".into()),
                since_us: Some(period.from().timestamp_micros()),
                until_us: Some(period.to().timestamp_micros() - 1),
                ..query::Filter::default()
            };
            let entries = query::list_all_ascending(&mut tx.conn(), &filter)
                .await
                .map_err(log_error)?;
            facts.disclosures = entries
                .into_iter()
                .map(|e| DisclosureFact {
                    at: e.data.at,
                    recipient: e.data.recipient_partner.unwrap_or_default(),
                    purpose: e.data.purpose.unwrap_or_default(),
                    basis: e
                        .data
                        .basis
                        .map(|b| b.kind().to_owned())
                        .unwrap_or_default(),
                })
                .collect();
        }
        if metrics.contains(&Metric::EmergencyReviews) {
            let reviews = crate::emergency::list(&mut tx.conn(), None, u32::MAX).await?;
            facts.reviews = reviews
                .into_iter()
                .map(|r| ReviewFact {
                    opened_at: r.opened_at,
                    recipient: r.partner,
                    outcome: r
                        .outcome
                        .map_or_else(|| "open".to_owned(), |o| o.as_str().to_owned()),
                })
                .collect();
        }
        drop(tx);
        Ok(facts)
    }

    /// Writes the run's entry (and its budget charge) durably, then releases the report.
    async fn release_report(
        &self,
        caller: &Caller<'_>,
        def: &ReportDef,
        grant: &reports::Grant,
        period: &Period,
        protected: Protected,
        policy_hash: &str,
    ) -> Result<Released, Error> {
        let now = self.now();
        let s = protected.summary();
        let mut detail = format!(
            "report `{}` (sha256 {}) for {}..{}; release {}; read: {}; disclosure control: {} \
             counts, {} withheld from 1 to 10, {} withheld as complements, {} rates or \
             statistics withheld",
            def.id,
            def.hash,
            rfc3339(period.from()),
            rfc3339(period.to()),
            def.release.as_str(),
            read_text(grant, def),
            s.counts,
            s.primary,
            s.complementary,
            s.derived,
        );
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let mut ledger = None;
        if let Some(p) = &def.privacy {
            let spent = privacy_ledger::spent(&mut tx.conn(), &p.series).await?;
            if let Err(e) = self.check_budget(def, spent) {
                // Another run spent the budget in the meantime: nothing is charged or released.
                drop(tx);
                self.refuse_report(caller, def, period, e.code(), &e.to_string())
                    .await?;
                return Err(e);
            }
            let charge = privacy::charge_micros(p.epsilon);
            privacy_ledger::charge(
                &mut tx.conn(),
                &Charge {
                    run_id: protected.run_id().to_owned(),
                    series: p.series.clone(),
                    report: def.id.clone(),
                    definition_hash: def.hash.clone(),
                    epsilon_micros: charge,
                    period_from_us: period.from().timestamp_micros(),
                    period_to_us: period.to().timestamp_micros(),
                    charged_at_us: now.timestamp_micros(),
                    charged_by_partner: caller.principal.partner.to_string(),
                    charged_by_user: caller.principal.user.to_string(),
                },
            )
            .await?;
            let scales: Vec<String> = protected
                .privacy()
                .map(|a| {
                    a.tables
                        .iter()
                        .map(|t| format!("{} scale {:.3}", t.table, t.noise.scale))
                        .collect()
                })
                .unwrap_or_default();
            detail.push_str(&format!(
                "; differential privacy: epsilon {} charged to series `{}` ({} -> {} of {}); {}",
                p.epsilon,
                p.series,
                privacy::from_micros(spent),
                privacy::from_micros(spent + charge),
                p.budget,
                scales.join(", ")
            ));
            ledger = Some(Ledger {
                series: p.series.clone(),
                budget: p.budget,
                spent_before: privacy::from_micros(spent),
                spent_after: privacy::from_micros(spent + charge),
            });
        }
        let mut entry: NewEntry = caller.entry(EntryKind::ReportGenerated, now, Outcome::Permit);
        entry.decision_id = Some(protected.run_id().to_owned());
        entry.policy_hash = Some(policy_hash.to_owned());
        entry.basis = Some(basis(def));
        entry.justification = Some(bounded(def.basis.citation.clone(), 1024));
        entry.detail = Some(bounded(detail, crate::audit::MAX_TEXT - 8));
        tx.append(entry).await.map_err(log_error)?;
        let receipts = tx.commit().await.map_err(log_error)?;
        let receipt = receipts
            .first()
            .ok_or_else(|| Error::internal("the report's log entry has no receipt"))?;
        protected
            .release(
                receipt,
                reports::ReleaseInfo {
                    report: def.id.clone(),
                    title: def.title.clone(),
                    description: def.description.clone(),
                    release: def.release,
                    definition_hash: def.hash.clone(),
                    policy_set: policy_hash.to_owned(),
                    period: period.into(),
                    generated_at: now,
                    ledger,
                },
            )
            .map_err(Error::internal)
    }
}

//! Policy: the partner registry, record kinds, MOU rules and the decision.
//!
//! Files live in the policy directory (`partners.toml`, `kinds/*.toml`, `mous/*.toml`; the
//! format is documented in `policies/README.md`). Parsing, validation and decision are separate
//! modules: [`PolicySet::check`] validates a directory and reports every problem with file,
//! line, column and hint; [`PolicySet::load`] also loads key material and refuses a set with
//! errors; [`decide()`] is pure. Report definitions (`reports/*.toml`) are validated with the
//! same diagnostics and kept in the set for [`crate::reports`].
//!
//! A [`PolicySet`] is immutable once loaded; the running gateway swaps a whole new set in on
//! reload (SIGHUP) only if it validates, so a bad edit never replaces a good set.

pub mod decide;
pub mod diag;
pub mod diff;
pub mod files;
pub mod limits;
mod load;
pub mod model;
pub mod partners;
pub mod report_diff;
mod reports;
pub mod schema;
pub mod term;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use decide::{
    Decision, EmergencyAssertion, FieldPlan, Inputs, MedicalEmergency, Outcome, Permit, Reason,
    Request, decide, decide_with,
};
pub use diag::{Diagnostic, Report, Severity};
pub use files::PolicyFiles;
pub use limits::HardLimit;
pub use load::{CASES_DIR, KINDS_DIR, MOUS_DIR};
pub use model::{
    Effect, FieldDef, FieldType, Generalization, KindDef, Label, LegalBasis, MaskKeep, Mou,
    PURPOSES, Rule, Transform,
};
pub use partners::{Partner, PartnerRegistry, RegistryError};
pub use reports::REPORTS_DIR;

use crate::domain::{PartnerId, PartnerKind};

/// Everything loaded from the policy directory.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Registered partner agencies.
    pub partners: PartnerRegistry,
    /// Record kinds by id.
    pub kinds: BTreeMap<String, KindDef>,
    /// MOUs, in file order.
    pub mous: Vec<Mou>,
    /// Report definitions by id (`reports/*.toml`).
    pub reports: BTreeMap<String, crate::reports::ReportDef>,
    /// Content hash of the policy files, recorded with every decision.
    pub hash: String,
    /// Warnings found while loading (e.g. expired MOUs); errors refuse the set.
    pub warnings: Vec<Diagnostic>,
    /// The files the set was built from (its hash is theirs).
    pub files: Arc<PolicyFiles>,
}

/// The policy directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The partner registry is invalid.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Validation found errors; the report lists every problem.
    #[error("the policy set has {count} error(s):\n{0}", count = .0.error_count())]
    Invalid(Report),
    /// A file could not be read.
    #[error("cannot read policy directory `{path}`: {source}")]
    Read {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl PolicySet {
    /// Loads and validates the policy directory, and loads key material from `keys_dir`
    /// (JWKS and encryption JWK files named by the registry). Any validation error refuses
    /// the whole set with the full report.
    pub fn load(dir: &Path, keys_dir: &Path) -> Result<Self, PolicyError> {
        Self::load_at(dir, keys_dir, Utc::now())
    }

    /// [`PolicySet::load`] with an explicit time (for which MOUs count as expired).
    pub fn load_at(dir: &Path, keys_dir: &Path, now: DateTime<Utc>) -> Result<Self, PolicyError> {
        let (set, _) = Self::build(PolicyFiles::read(dir)?, now, Some(keys_dir))?;
        Ok(set)
    }

    /// Validates a directory without key material (for `policy check`): every problem, errors
    /// and warnings, in one report.
    pub fn check(dir: &Path, now: DateTime<Utc>) -> Report {
        let built = PolicyFiles::read(dir).and_then(|files| Self::build(files, now, None));
        match built {
            Ok((_, report)) => report,
            Err(PolicyError::Invalid(report)) => report,
            Err(e) => {
                let mut r = Report::default();
                r.push(Diagnostic::file_level(
                    Severity::Error,
                    "unreadable",
                    dir,
                    e.to_string(),
                    None,
                ));
                r
            }
        }
    }

    /// Validates a directory and builds a set without key material (for `policy explain` and
    /// tests): no token can be verified and no field encrypted with it.
    pub fn load_unkeyed(dir: &Path, now: DateTime<Utc>) -> Result<(Self, Report), PolicyError> {
        Self::build(PolicyFiles::read(dir)?, now, None)
    }

    /// Builds a set without key material from a snapshot of its files (a set the gateway ran
    /// with earlier, kept in the database; or files a tool assembled). Validated like a
    /// directory.
    pub fn from_files(
        files: PolicyFiles,
        now: DateTime<Utc>,
    ) -> Result<(Self, Report), PolicyError> {
        Self::build(files, now, None)
    }

    fn build(
        files: PolicyFiles,
        now: DateTime<Utc>,
        keys_dir: Option<&Path>,
    ) -> Result<(Self, Report), PolicyError> {
        let checked = load::check_files(&files, now);
        let mut report = checked.report;
        let Some(file) = checked.registry.filter(|_| !report.has_errors()) else {
            return Err(PolicyError::Invalid(report));
        };
        let partners = match keys_dir {
            Some(keys) => {
                let path = Path::new(partners::PARTNERS_FILE);
                match PartnerRegistry::resolve(&file, path, keys) {
                    Ok(r) => r,
                    Err(e) => {
                        report.push(Diagnostic::file_level(
                            Severity::Error,
                            "key-material",
                            Path::new(partners::PARTNERS_FILE),
                            e.to_string(),
                            Some(
                                "check `identity.partner_keys_dir` in the gateway configuration"
                                    .into(),
                            ),
                        ));
                        return Err(PolicyError::Invalid(report));
                    }
                }
            }
            None => PartnerRegistry::resolve_unkeyed(&file),
        };
        let hash = files.hash();
        let warnings = report.diagnostics.clone();
        Ok((
            Self {
                partners,
                kinds: checked.kinds,
                mous: checked.mous,
                reports: checked.reports,
                hash,
                warnings,
                files: Arc::new(files),
            },
            report,
        ))
    }

    /// The kind of a registered partner.
    pub fn partner_kind(&self, id: &PartnerId) -> Option<PartnerKind> {
        self.partners.get(id).map(|p| p.kind)
    }
}

/// The policy-set hash of a directory: see [`PolicyFiles::hash`].
pub fn content_hash(dir: &Path) -> Result<String, PolicyError> {
    Ok(PolicyFiles::read(dir)?.hash())
}

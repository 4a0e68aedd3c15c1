//! Reading and validating the policy directory: `partners.toml`, `kinds/*.toml`,
//! `mous/*.toml`. Every problem becomes a [`Diagnostic`] with file, line, column and hint; the
//! walk never stops at the first one.
//!
//! This module reads the files and runs the checks in order; each concern has its own file:
//! `context` (reading typed values out of a TOML table, with positions), `partners` (the
//! registry), `kinds` (record kinds and their fields), `mous` (MOUs and overlapping rules),
//! `rules` (one rule of an MOU, step by step) and `transforms` (field transforms).

mod context;
mod kinds;
mod mous;
mod partners;
mod rules;
mod transforms;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use chrono::{DateTime, Utc};
use toml_edit::ImDocument;

use super::diag::{Diagnostic, Report, Severity, SourceFile};
use super::files::PolicyFiles;
use super::model::{KindDef, Mou};
use super::partners::{PARTNERS_FILE, RegistryFile};

pub(super) use context::Cx;
pub(super) use partners::PartnerFacts;

/// Sub-directory of record kinds.
pub const KINDS_DIR: &str = "kinds";
/// Sub-directory of MOUs.
pub const MOUS_DIR: &str = "mous";
/// Sub-directory of golden cases (not policy: excluded from loading and from the hash).
pub const CASES_DIR: &str = "cases";

pub(super) type Span = Option<Range<usize>>;

/// A value with where it was written.
#[derive(Debug, Clone)]
pub(super) struct Sp<T> {
    pub(super) v: T,
    pub(super) span: Span,
}

/// The result of checking a directory: the report and, when it has no errors, the parts.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) report: Report,
    pub(crate) registry: Option<RegistryFile>,
    pub(crate) kinds: BTreeMap<String, KindDef>,
    pub(crate) mous: Vec<Mou>,
    pub(crate) reports: BTreeMap<String, crate::reports::ReportDef>,
}

pub(super) fn parse_doc(file: &SourceFile, report: &mut Report) -> Option<ImDocument<String>> {
    match ImDocument::parse(file.text.to_string()) {
        Ok(doc) => Some(doc),
        Err(e) => {
            let msg = e.message().trim().to_lowercase();
            report.push(Diagnostic::at(
                Severity::Error,
                "syntax",
                file,
                e.span(),
                format!("invalid TOML: {msg}"),
                Some("see policies/README.md for the file format".into()),
            ));
            None
        }
    }
}

fn read_dir_files(files: &PolicyFiles, sub: &str, report: &mut Report) -> Vec<SourceFile> {
    if !files.has_dir(sub) {
        report.push(Diagnostic::file_level(
            Severity::Error,
            "unreadable",
            Path::new(sub),
            format!("cannot read directory `{sub}`: it does not exist"),
            Some(format!("create `{sub}/` in the policy directory")),
        ));
        return Vec::new();
    }
    files
        .in_dir(sub)
        .filter(|(path, _)| path.ends_with(".toml"))
        .map(|(path, text)| SourceFile::new(path.to_owned(), text.to_owned()))
        .collect()
}

pub(super) fn read_file(
    files: &PolicyFiles,
    name: &str,
    report: &mut Report,
) -> Option<SourceFile> {
    match files.get(name) {
        Some(text) => Some(SourceFile::new(name.to_owned(), text.to_owned())),
        None => {
            report.push(Diagnostic::file_level(
                Severity::Error,
                "unreadable",
                Path::new(name),
                format!("cannot read `{name}`: it does not exist"),
                None,
            ));
            None
        }
    }
}

/// Checks a policy set's files without key material. `now` decides which MOUs are expired.
pub(crate) fn check_files(files: &PolicyFiles, now: DateTime<Utc>) -> Checked {
    let mut report = Report::default();
    let (registry, partners) = match read_file(files, PARTNERS_FILE, &mut report) {
        Some(f) => partners::check_partners(&f, &mut report),
        None => (None, BTreeMap::new()),
    };
    let mut kinds = BTreeMap::new();
    for f in read_dir_files(files, KINDS_DIR, &mut report) {
        if let Some(k) = kinds::check_kind(&f, &mut report) {
            let mut cx = Cx {
                file: &f,
                report: &mut report,
            };
            if kinds.contains_key(&k.v.id) {
                cx.error(
                    "duplicate",
                    k.span,
                    format!("record kind `{}` is declared twice", k.v.id),
                    Some("each kind lives in exactly one file under `kinds/`".into()),
                );
            } else {
                kinds.insert(k.v.id.clone(), k.v);
            }
        }
    }
    let mut mous: Vec<(Mou, SourceFile, mous::MouSpans)> = Vec::new();
    for f in read_dir_files(files, MOUS_DIR, &mut report) {
        if let Some((m, spans)) = mous::check_mou(&f, &partners, &kinds, now, &mut report) {
            if mous.iter().any(|(o, _, _)| o.id == m.id) {
                let mut cx = Cx {
                    file: &f,
                    report: &mut report,
                };
                cx.error(
                    "duplicate",
                    spans.id.clone(),
                    format!("mou `{}` is declared twice", m.id),
                    Some("give each MOU its own id".into()),
                );
            } else {
                mous.push((m, f, spans));
            }
        }
    }
    mous::check_overlaps(&mous, &mut report);
    let mous: Vec<Mou> = mous.into_iter().map(|(m, _, _)| m).collect();
    let reports = super::reports::check_dir(files, &partners, &kinds, &mous, &mut report);
    report.sort();
    Checked {
        report,
        registry,
        kinds,
        mous,
        reports,
    }
}

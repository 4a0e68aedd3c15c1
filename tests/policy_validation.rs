//! Validation of intentionally broken policy directories: every problem class is reported with
//! its file, line, column, code and a hint, all in one run.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::path::Path;

use coresponse_gateway::policy::{PolicyError, PolicySet, Report, Severity};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn now() -> chrono::DateTime<chrono::Utc> {
    "2026-03-01T00:00:00Z".parse().unwrap()
}

fn find<'a>(
    report: &'a Report,
    file: &str,
    line: usize,
    column: usize,
    code: &str,
) -> &'a coresponse_gateway::policy::Diagnostic {
    report
        .diagnostics
        .iter()
        .find(|d| d.file == file && d.line == line && d.column == column && d.code == code)
        .unwrap_or_else(|| panic!("no `{code}` at {file}:{line}:{column} in:\n{report}"))
}

#[test]
fn every_problem_is_reported_with_its_location() {
    let report = PolicySet::check(&fixture("broken"), now());
    assert!(report.has_errors());
    let kind = "kinds/bad-kind.toml";
    let mou = "mous/broken.toml";
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        (kind, 4, 1, "unknown-key", "unknown key `colour`"),
        (kind, 8, 8, "unknown-type", "unknown field type `timestamp`"),
        (
            kind,
            14,
            11,
            "unknown-label",
            "unknown sensitivity label `idenity`",
        ),
        (
            mou,
            5,
            37,
            "unknown-partner",
            "party `fire-dept` is not a registered partner",
        ),
        (mou, 7, 11, "expired", "expired on 2021-12-31"),
        (mou, 13, 23, "unknown-role", "role `sergeant`"),
        (
            mou,
            14,
            26,
            "unknown-purpose",
            "unknown purpose of use `curiosity`",
        ),
        (mou, 20, 1, "unknown-field", "has no field `narative`"),
        (
            mou,
            21,
            19,
            "transform-type",
            "does not fit field `callback_number`",
        ),
        (mou, 22, 28, "hard-limit", "hard-limit-cji"),
        (
            mou,
            33,
            25,
            "hard-limit",
            "hard-limit-part2-law-enforcement",
        ),
        (
            mou,
            45,
            13,
            "transform-type",
            "does not fit field `narrative`",
        ),
        (mou, 94, 13, "overlap", "disagree on field `narrative`"),
        (
            mou,
            52,
            8,
            "unknown-kind",
            "unknown record kind `crisis-incidnet`",
        ),
        (
            mou,
            61,
            15,
            "not-a-party",
            "recipient `oversight` is not a party",
        ),
        (mou, 81, 25, "hard-limit", "hard-limit-part2-consent"),
        (mou, 82, 23, "hard-limit", "hard-limit-psychotherapy-notes"),
    ];
    for (file, line, col, code, text) in cases {
        let d = find(&report, file, *line, *col, code);
        assert!(d.message.contains(text), "{d}");
        assert!(d.hint.is_some(), "no hint: {d}");
    }
    let expired = find(&report, mou, 7, 11, "expired");
    assert_eq!(expired.severity, Severity::Warning);
    // Did-you-mean hints.
    assert!(
        find(&report, mou, 20, 1, "unknown-field")
            .hint
            .as_deref()
            .unwrap()
            .contains("`narrative`")
    );
    assert!(
        find(&report, mou, 52, 8, "unknown-kind")
            .hint
            .as_deref()
            .unwrap()
            .contains("`crisis-incident`")
    );
    assert!(
        find(&report, kind, 14, 11, "unknown-label")
            .hint
            .as_deref()
            .unwrap()
            .contains("`identity`")
    );
    // Rendering shows the source line.
    let rendered = report.render();
    assert!(rendered.contains("curiosity"), "{rendered}");
}

#[test]
fn load_refuses_a_set_with_errors_and_reports_them_all() {
    let err = PolicySet::load_at(&fixture("broken"), Path::new("/nonexistent"), now()).unwrap_err();
    let PolicyError::Invalid(report) = err else {
        panic!("expected a validation report, got {err}");
    };
    assert!(report.error_count() >= 15, "{report}");
}

#[test]
fn a_syntax_error_is_located() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("broken/partners.toml"),
        dir.path().join("partners.toml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("kinds")).unwrap();
    std::fs::create_dir(dir.path().join("mous")).unwrap();
    std::fs::write(
        dir.path().join("kinds/x.toml"),
        "[kind]\nid = \"x\"\nowner = \n",
    )
    .unwrap();
    let report = PolicySet::check(dir.path(), now());
    let d = report
        .diagnostics
        .iter()
        .find(|d| d.code == "syntax")
        .expect("syntax error");
    assert_eq!((d.file.as_str(), d.line), ("kinds/x.toml", 3));
}

#[test]
fn the_demo_policy_is_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let report = PolicySet::check(&dir, now());
    assert!(report.diagnostics.is_empty(), "{report}");
}

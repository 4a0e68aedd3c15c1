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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn witness_keys_are_checked_like_the_rest_of_the_registry() {
    use coresponse_gateway::crypto::note::{NoteSigner, TYPE_COSIGNATURE, TYPE_ED25519};
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        dir.path(),
    );
    let good = NoteSigner::new("metro-pd", TYPE_COSIGNATURE, &[1; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let note_key = NoteSigner::new("county-mh", TYPE_ED25519, &[2; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let path = dir.path().join("partners.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // metro-pd: a valid inline key; county-mh: a note-signing key (type 0x01), not a
    // cosignature key; oversight: both forms at once; then a key id that does not match.
    let text = text
        .replace(
            "vkey_file = \"metro-pd.witness.vkey\"",
            &format!("vkey = \"{good}\""),
        )
        .replace(
            "vkey_file = \"county-mh.witness.vkey\"",
            &format!("vkey = \"{note_key}\""),
        )
        .replace(
            "jwk_file = \"oversight.enc.jwk.json\"",
            "jwk_file = \"oversight.enc.jwk.json\"\n\n[partner.witness]\nvkey = \"a+00000000+AQ==\"\nvkey_file = \"x\"",
        );
    std::fs::write(&path, &text).unwrap();
    let report = PolicySet::check(dir.path(), now());
    let bad: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.code == "invalid-witness-key")
        .collect();
    assert_eq!(bad.len(), 2, "{report}");
    assert!(
        bad.iter()
            .any(|d| d.message.contains("county-mh") && d.message.contains("0x04"))
    );
    assert!(
        bad.iter()
            .any(|d| d.message.contains("oversight") && d.message.contains("exactly one"))
    );
    assert!(
        bad.iter().all(|d| d.file == "partners.toml" && d.line > 0),
        "{report}"
    );
    // A key id that does not match its key.
    let tampered = text.replace(&good, &good.replacen('+', "+f", 1).replacen("+f", "+", 0));
    let mut parts: Vec<&str> = good.splitn(3, '+').collect();
    let wrong_id = format!("{:08x}", u32::from_str_radix(parts[1], 16).unwrap() ^ 1);
    parts[1] = &wrong_id;
    let wrong = parts.join("+");
    std::fs::write(&path, tampered.replace(&good, &wrong)).unwrap();
    let report = PolicySet::check(dir.path(), now());
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.code == "invalid-witness-key" && d.message.contains("metro-pd")),
        "{report}"
    );
}

#[test]
fn report_definitions_get_the_same_located_diagnostics() {
    let report = PolicySet::check(&fixture("broken"), now());
    let file = "reports/bad-report.toml";
    let cases: &[(usize, usize, &str, &str)] = &[
        (7, 1, "unknown-key", "unknown key `colour`"),
        (
            10,
            16,
            "unknown-partner-kind",
            "unknown partner kind `fire`",
        ),
        (14, 7, "unknown-mou", "no MOU `no-such-mou`"),
        (21, 10, "unknown-metric", "unknown metric `arrests`"),
        (28, 8, "unknown-dimension", "no dimension `weekday`"),
        (
            34,
            13,
            "unknown-category",
            "`JAIL` is not a category of `disposition`",
        ),
        (41, 11, "unexpected-key", "one column of counts"),
        (
            43,
            1,
            "privacy-internal",
            "differential privacy is for `public` reports",
        ),
    ];
    for (line, col, code, text) in cases {
        let d = find(&report, file, *line, *col, code);
        assert_eq!(d.severity, Severity::Error, "{d}");
        assert!(d.message.contains(text), "{d}");
        assert!(d.hint.is_some(), "no hint: {d}");
    }
    assert!(
        find(&report, file, 10, 16, "unknown-partner-kind")
            .hint
            .as_deref()
            .unwrap()
            .contains("`mental-health`")
    );
}

#[test]
fn the_policy_set_hash_covers_report_definitions() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let files = coresponse_gateway::policy::PolicyFiles::read(&shipped).unwrap();
    assert!(
        files.files().keys().any(|k| k.starts_with("reports/")),
        "the snapshot holds the report definitions"
    );
    let mut edited = files.files().clone();
    let text = edited.get_mut("reports/engagement.toml").unwrap();
    *text = text.replacen("program-manager", "officer", 1);
    let edited = coresponse_gateway::policy::PolicyFiles::from_files(edited);
    assert_ne!(files.hash(), edited.hash());
}

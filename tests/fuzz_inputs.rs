//! The fuzz targets' seeds and regression inputs, replayed on every `cargo test` (no nightly
//! toolchain needed): each file under `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`
//! goes through the same harness the `cargo fuzz` targets run (`fuzz/src/lib.rs`). An input in
//! `regressions/` once made a target fail; it stays here so that the bug it found cannot
//! come back.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for set in ["seeds", "regressions"] {
        let dir = root.join(set).join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Runs every input of `target`; names the input that fails.
fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no seeds for fuzz target `{target}`");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "fuzz input {} fails", f.display());
    }
}

#[test]
fn policy_load_inputs() {
    replay("policy_load", harness::policy_load);
}

#[test]
fn json_bodies_inputs() {
    replay("json_bodies", harness::json_bodies);
}

#[test]
fn canonical_log_inputs() {
    replay("canonical_log", harness::canonical_log);
}

#[test]
fn fhir_resources_inputs() {
    replay("fhir_resources", harness::fhir_resources);
}

#[test]
fn consent_validate_inputs() {
    replay("consent_validate", harness::consent_validate);
}

#[test]
fn redaction_inputs() {
    replay("redaction", harness::redaction);
}

/// The policy seed that holds the demo set loads: the harness's container format is read as
/// intended (a format mistake would make every policy input a trivially empty directory).
#[test]
fn the_demo_policy_seed_is_the_demo_set() {
    let text = std::fs::read_to_string(
        inputs("policy_load")
            .iter()
            .find(|p| p.ends_with("demo-set"))
            .unwrap(),
    )
    .unwrap();
    let files = harness::policy_files(&text);
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    assert!(names.contains(&"partners.toml".to_owned()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("kinds/")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("mous/")), "{names:?}");
    let dir = tempfile::tempdir().unwrap();
    for sub in ["kinds", "mous"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for (name, body) in &files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let now = chrono::Utc::now();
    let loaded = coresponse_gateway::policy::PolicySet::load_unkeyed(dir.path(), now);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

/// The independent parser of the canonical encoding reads the documented example exactly.
#[test]
fn the_canonical_parser_reads_an_entry() {
    use coresponse_gateway::audit::{ChainHash, EntryKind, NewEntry, Outcome, encode_into};
    let mut e = NewEntry::new(
        EntryKind::LogRead,
        chrono::DateTime::from_timestamp_micros(1).unwrap(),
        Outcome::deny("x"),
    );
    e.purpose = Some("ab".into());
    let mut buf = Vec::new();
    encode_into(&mut buf, 2, &ChainHash([7; 32]), &e);
    let (seq, prev, back) = harness::parse_canonical(&buf).unwrap();
    assert_eq!((seq, prev, back), (2, ChainHash([7; 32]), e));
    buf.push(0);
    assert!(harness::parse_canonical(&buf).is_err());
}

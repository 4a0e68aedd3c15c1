//! The compliance console in a real browser: headless Chromium, driven by Playwright for
//! Python (`tests/console/console_test.py`), against a real gateway on the demo data, over
//! mutual TLS with the oversight agency's PKCS#12 file that `init` wrote.
//!
//! A missing browser, Python or Playwright fails this test loudly (`bash .ci/run` installs
//! them). Screenshots of every page go to `target/console-screenshots/` (ignored by git).

use std::process::Command;
use std::time::Duration;

use coresponse_gateway::audit::{EntryKind, query};
use coresponse_gateway::devinit::{pkcs12, seed};

use crate::records_api::{read, who};
use crate::support::{Db, pki, repo_root, spawn_with};

const EMERGENCY: [(&str, &str); 3] = [
    ("Emergency-Basis", "credible-representation"),
    (
        "Emergency-Source",
        "dispatch: caller is the person's sister",
    ),
    ("Emergency-Description", "person on a bridge with a knife"),
];

fn python() -> String {
    std::env::var("CONSOLE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// Fails with what to install when the browser or the driver is missing.
fn require_tools() {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import playwright.sync_api"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the browser test needs Python 3 with Playwright (`{py}`: `pip install playwright`; \
         never `playwright install`: the test uses Debian's Chromium). `bash .ci/run` installs it."
    );
    let browser = chromium();
    assert!(
        std::path::Path::new(&browser).exists(),
        "the browser test needs Chromium at `{browser}` (`apt-get install chromium`, or set \
         CHROMIUM). `bash .ci/run` installs it."
    );
}

#[tokio::test]
async fn the_console_works_in_a_real_browser_and_refuses_a_clinician() {
    require_tools();
    // Checkpoints every few entries, so the browser checks some signatures itself.
    let app = spawn_with(Db::Sqlite, |s| s.audit.checkpoint_every_entries = 4).await;
    seed::seed(app.services()).await.unwrap();
    // The README journeys, so the log holds what an officer would look for.
    let clin = who("county-mh", "clin-7", &["clinician"]);
    let officer = who("metro-pd", "officer-17", &["officer"]);
    for (w, path, purpose, status) in [
        (&clin, "/v1/referrals/REF-DEMO-1", "referral-followup", 200),
        (
            &clin,
            "/v1/records/crisis-incident/INC-2026-0042",
            "treatment",
            200,
        ),
        (
            &officer,
            "/v1/referrals/REF-DEMO-1",
            "referral-followup",
            200,
        ),
        (
            &officer,
            "/v1/subjects/metro-pd/P-2231/records?kind=safety-plan",
            "crisis-response",
            200,
        ),
        (
            &officer,
            "/v1/records/safety-plan/SP-1001",
            "investigation",
            403,
        ),
    ] {
        let (s, _, b) = read(&app, w, path, Some(purpose), &[]).await;
        assert_eq!(s, status, "{path}: {b}");
    }
    let (s, _, b) = read(
        &app,
        &officer,
        "/v1/records/safety-plan/SP-1001",
        Some("emergency"),
        &EMERGENCY,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let before = app
        .log_entries(&query::Filter {
            kinds: vec![EntryKind::LogRead, EntryKind::LogVerified],
            limit: 500,
            ..Default::default()
        })
        .await
        .len();

    let p = pki();
    let oversight = p.partner_cert("oversight");
    let clinician_cert = p.partner_cert("county-mh");
    let token = p.token("oversight", "aud-1", &["compliance"], &oversight.0);
    // A clinician of the mental-health agency, in a browser holding that agency's certificate.
    let clin_token = p.token("county-mh", "clin-7", &["clinician"], &clinician_cert.0);
    let mut expired_claims = p.claims("oversight", &oversight.0);
    let now = chrono::Utc::now().timestamp();
    expired_claims["sub"] = serde_json::json!("aud-1");
    expired_claims["roles"] = serde_json::json!(["compliance"]);
    expired_claims["iat"] = serde_json::json!(now - 900);
    expired_claims["nbf"] = serde_json::json!(now - 900);
    expired_claims["exp"] = serde_json::json!(now - 600);
    let expired = p.sign_claims("oversight", &expired_claims);
    let password = std::fs::read_to_string(p.dir.join(pkcs12::PASSWORD_FILE)).unwrap();
    let shots = repo_root().join("target").join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(repo_root().join("tests/console/console_test.py"))
        .env(
            "CONSOLE_ORIGIN",
            format!("https://localhost:{}", app.addr.port()),
        )
        .env("CONSOLE_PFX", p.dir.join("oversight.p12"))
        .env("CONSOLE_CLINICIAN_PFX", p.dir.join("county-mh.p12"))
        .env("CONSOLE_PFX_PASSWORD", password.trim())
        .env("CONSOLE_TOKEN", &token)
        .env("CONSOLE_CLINICIAN_TOKEN", &clin_token)
        .env("CONSOLE_EXPIRED_TOKEN", &expired)
        .env("CONSOLE_SCREENSHOTS", &shots)
        .env("CHROMIUM", chromium())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the browser test took more than 4 minutes")
        .expect("cannot start the browser test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    println!("{stdout}");

    // Every console read was a log_read entry like any other compliance read, and the review
    // was closed with its entry.
    let reads = app
        .log_entries(&query::Filter {
            kinds: vec![EntryKind::LogRead, EntryKind::LogVerified],
            limit: 500,
            ..Default::default()
        })
        .await;
    assert!(
        reads.len() >= before + 10,
        "{} log reads",
        reads.len() - before
    );
    let details: Vec<String> = reads.iter().filter_map(|e| e.data.detail.clone()).collect();
    for expected in [
        "overview of the disclosure log",
        "listed ",
        "read entry ",
        "verified the disclosure log",
        "exported ",
        "accounting of disclosures (csv)",
        "accounting of disclosures (json)",
        "emergency review",
        "refused: ",
    ] {
        assert!(
            details.iter().any(|d| d.contains(expected)),
            "no log_read entry mentions `{expected}`"
        );
    }
    let closed = app
        .log_entries(&query::Filter {
            kinds: vec![EntryKind::EmergencyReviewed],
            limit: 5,
            ..Default::default()
        })
        .await;
    assert_eq!(closed.len(), 1);
    assert_eq!(
        closed[0].data.justification.as_deref(),
        Some("dispatch record confirms the threat")
    );
    for name in [
        "overview",
        "search",
        "entry",
        "verify",
        "accounting",
        "reviews",
        "review",
        "coverage",
        "refused",
        "expired",
    ] {
        assert!(shots.join(format!("{name}.png")).is_file(), "{name}.png");
    }
    app.assert_log_verifies().await;
    app.stop().await;
}

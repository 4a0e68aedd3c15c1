//! Reloading the policy set (what SIGHUP does).

use crate::support::{Db, pki};

/// SIGHUP calls `AppState::reload`: a policy set with errors is refused, the running one stays
/// in force, and both outcomes are recorded.
#[tokio::test]
async fn a_bad_policy_set_on_reload_is_refused_and_the_running_one_kept() {
    let policies = tempfile::tempdir().unwrap();
    copy_dir(
        &crate::support::repo_root().join("policies"),
        policies.path(),
    );
    let dir = policies.path().to_owned();
    let app = crate::support::spawn_with(Db::Sqlite, |s| s.policy.dir = dir).await;
    let hash_before = app.services().policy.load().hash.clone();

    // A good reload succeeds.
    app.state.reload().expect("the unchanged set reloads");
    app.security_event("policy_reloaded").await;

    // Break an MOU: a rule naming a purpose that does not exist.
    let mou = policies.path().join("mous/metro-county-coresponse.toml");
    let text = std::fs::read_to_string(&mou).unwrap();
    let broken = text.replacen("\"referral-followup\"", "\"refferal-followup\"", 1);
    assert_ne!(broken, text, "the fixture edit must apply");
    std::fs::write(&mou, broken).unwrap();

    let err = app
        .state
        .reload()
        .expect_err("a broken set must be refused");
    assert!(format!("{err:#}").contains("refferal-followup"), "{err:#}");
    assert_eq!(
        app.services().policy.load().hash,
        hash_before,
        "the running set is kept"
    );
    let event = app.security_event("policy_reload_failed").await;
    assert!(event.detail.contains("running set kept"), "{event:?}");

    // Still serving with the old set.
    let identity = pki().partner_cert("metro-pd");
    let token = pki().token("metro-pd", "officer-17", &["officer"], &identity.0);
    let res = app
        .get(Some(&identity), "/v1/whoami", Some(&token))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

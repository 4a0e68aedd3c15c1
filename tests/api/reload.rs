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

    // A good reload succeeds, and is recorded durably before the reload returns.
    app.state.reload().await.expect("the unchanged set reloads");
    let reloads = app
        .log_entries(&coresponse_gateway::audit::query::Filter {
            kinds: vec![coresponse_gateway::audit::EntryKind::PolicyReloaded],
            limit: 10,
            ..Default::default()
        })
        .await;
    assert_eq!(reloads.len(), 2, "start-up and the reload");
    assert!(
        reloads[0]
            .data
            .detail
            .as_deref()
            .unwrap()
            .contains("the same policy set as before")
    );

    // Break an MOU: a rule naming a purpose that does not exist.
    let mou = policies.path().join("mous/metro-county-coresponse.toml");
    let text = std::fs::read_to_string(&mou).unwrap();
    let broken = text.replacen("\"referral-followup\"", "\"refferal-followup\"", 1);
    assert_ne!(broken, text, "the fixture edit must apply");
    std::fs::write(&mou, broken).unwrap();

    let err = app
        .state
        .reload()
        .await
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

/// Verified tokens are cached until they expire, but a reload of the partner registry empties
/// the cache: a key the registry no longer holds stops its tokens on the very next request.
#[tokio::test]
async fn a_reloaded_registry_drops_cached_tokens() {
    let keys = tempfile::tempdir().unwrap();
    copy_dir(&pki().dir.join("partner-keys"), keys.path());
    let keys_dir = keys.path().to_owned();
    let app =
        crate::support::spawn_with(Db::Sqlite, |s| s.identity.partner_keys_dir = keys_dir).await;
    let identity = pki().partner_cert("metro-pd");
    let token = pki().token("metro-pd", "officer-17", &["officer"], &identity.0);
    let whoami = || async {
        app.get(Some(&identity), "/v1/whoami", Some(&token))
            .await
            .unwrap()
    };
    assert_eq!(whoami().await.status(), 200);
    assert_eq!(
        whoami().await.status(),
        200,
        "answered from the token cache"
    );

    // The agency's identity provider key is replaced: the registry now holds another key.
    std::fs::copy(
        keys.path().join("county-mh.jwks.json"),
        keys.path().join("metro-pd.jwks.json"),
    )
    .unwrap();
    assert_eq!(
        whoami().await.status(),
        200,
        "until the registry is reloaded, the running set is the one in force"
    );
    app.state.reload().await.expect("the registry reloads");
    let res = whoami().await;
    assert_eq!(res.status(), 401, "the cached token is no longer accepted");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["code"].as_str().unwrap().starts_with("token_"),
        "{body}"
    );
    app.stop().await;
}

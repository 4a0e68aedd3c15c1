//! `audit verify` against a tree head a partner saved (a witness's state file, or the text of
//! `GET /v1/audit/checkpoint`): the stored tree must reach its size with its root. A saved
//! head larger than the stored tree is reported as a rollback (what a restore that lacks the
//! newest entries looks like), another root at its size as a rewrite; an older head that the
//! log has grown past still verifies. On both backends; `tests/scale_out/backup.rs` runs the
//! same check through the command line on a restored `pg_dump`.

use coresponse_gateway::audit::{self, note::TreeHead};

use crate::support::{Db, TestApp, pki, spawn_app};

async fn saved_head(app: &TestApp) -> TreeHead {
    app.services().log.checkpoint_now().await.unwrap();
    let res = app
        .get(
            Some(&pki().partner_cert("metro-pd")),
            "/v1/audit/checkpoint",
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let key = app
        .services()
        .log
        .checkpoint_signer()
        .unwrap()
        .note_verifier();
    audit::witness::observe(&key, &text).unwrap().head
}

async fn reads(app: &TestApp, n: usize) {
    let (s, b) = crate::records_api::put(
        app,
        &crate::records_api::officer(),
        "/v1/records/crisis-incident/INC-1",
        &crate::records_api::incident_body("P-2231"),
    )
    .await;
    assert!(s == 201 || s == 200, "{b}");
    for _ in 0..n {
        let (s, _, b) = crate::records_api::read(
            app,
            &crate::records_api::clinician(),
            "/v1/records/crisis-incident/INC-1",
            Some("treatment"),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
}

async fn verify(app: &TestApp, heads: &[TreeHead]) -> audit::StoreVerification {
    let key = app.services().log.checkpoint_key();
    audit::verify_store_against(app.store(), key.as_ref(), None, heads, &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn a_saved_tree_head_the_log_lacks_is_a_rollback() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        reads(&app, 3).await;
        let older = saved_head(&app).await;
        reads(&app, 3).await;
        let newest = saved_head(&app).await;
        assert!(newest.size > older.size);

        // The log holds both heads: it verifies against each, the older one a prefix.
        let v = verify(&app, &[older, newest]).await;
        assert!(v.ok(), "{db:?}: {:?}", v.tree);
        assert_eq!(v.tree.as_ref().unwrap().partner_heads_checked, 2);

        // A head of a larger tree than the stored one: entries the partner saw are missing.
        let ahead = TreeHead {
            size: newest.size + 3,
            root: newest.root,
        };
        let v = verify(&app, &[older, ahead]).await;
        assert!(!v.ok(), "{db:?}");
        let why = v.tree.unwrap().failure.unwrap();
        assert!(
            why.starts_with("rolled back")
                && why.contains(&format!("covers {} leaves", newest.size + 3))
                && why.contains(&format!("the tree has {}", newest.size)),
            "{db:?}: {why}"
        );

        // Another root at a size the log has: rewritten or forked.
        let forked = TreeHead {
            size: older.size,
            root: [7; 32],
        };
        let v = verify(&app, &[forked]).await;
        assert!(!v.ok(), "{db:?}");
        let why = v.tree.unwrap().failure.unwrap();
        assert!(why.contains("rewritten or forked"), "{db:?}: {why}");
    }
}

//! The transparency log: receipts on disclosures, C2SP checkpoints, RFC 6962 proofs checked by
//! an implementation that is not ours, witnesses that co-sign and catch every rewrite without
//! reading an entry, and a tree that stays verifiable across a retention purge.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use coresponse_gateway::audit::note::{Note, NoteSigner, VerifierKey};
use coresponse_gateway::audit::transparency::{ConsistencyProof, InclusionProof};
use coresponse_gateway::audit::tree::{self, Frontier, Hash};
use coresponse_gateway::audit::{self, CheckpointSigner, retention};
use coresponse_gateway::cli::witness::{WitnessOptions, WitnessOutcome, run_once};
use coresponse_gateway::domain::{Clock as _, ManualClock};
use coresponse_gateway::store::Backend;
use serde_json::Value;

use crate::records_api::{officer, put, who_at};
use crate::support::{self, Db, TestApp, exec, fetch_all, pki, spawn_app, spawn_with_clock};

fn cert(partner: &str) -> (String, String) {
    pki().partner_cert(partner)
}

async fn get_text(app: &TestApp, partner: &str, path: &str) -> (u16, String) {
    let res = app.get(Some(&cert(partner)), path, None).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn get_json(app: &TestApp, partner: &str, path: &str) -> (u16, Value) {
    let (s, t) = get_text(app, partner, path).await;
    (s, serde_json::from_str(&t).unwrap_or(Value::Null))
}

fn log_key(app: &TestApp) -> VerifierKey {
    app.services()
        .log
        .checkpoint_signer()
        .unwrap()
        .note_verifier()
}

fn b64(h: &str) -> Hash {
    STANDARD.decode(h).unwrap().try_into().unwrap()
}

/// Seeds an incident (the officer's) and reads it `n` times as the clinician for treatment;
/// returns the receipts (leaf index, leaf hash) of the reads.
async fn disclosures(app: &TestApp, n: usize) -> Vec<(u64, Hash)> {
    disclosures_at(app, n, chrono::Utc::now()).await
}

/// [`disclosures`] with tokens issued at `at` (the gateway's clock).
async fn disclosures_at(
    app: &TestApp,
    n: usize,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<(u64, Hash)> {
    let (s, b) = put(
        app,
        &who_at("metro-pd", "officer-17", &["officer"], at),
        "/v1/records/crisis-incident/INC-1",
        &crate::records_api::incident_body("P-2231"),
    )
    .await;
    assert!(s == 201 || s == 200, "{b}");
    reads_at(app, n, at).await
}

/// `n` reads of the seeded incident by the clinician; their receipts.
async fn reads_at(app: &TestApp, n: usize, at: chrono::DateTime<chrono::Utc>) -> Vec<(u64, Hash)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let w = who_at("county-mh", "clin-3", &["clinician"], at);
        let res = support::client(Some(&w.0))
            .get(app.url("/v1/records/crisis-incident/INC-1"))
            .bearer_auth(&w.1)
            .header("Purpose-Of-Use", "treatment")
            .send()
            .await
            .unwrap();
        let status = res.status();
        let h = res.headers().clone();
        assert_eq!(status, 200, "{}", res.text().await.unwrap());
        let index: u64 = h["log-leaf-index"].to_str().unwrap().parse().unwrap();
        let hash = b64(h["log-leaf-hash"].to_str().unwrap());
        out.push((index, hash));
    }
    out
}

async fn checkpoint(app: &TestApp) -> (String, audit::witness::Observed) {
    app.services().log.checkpoint_now().await.unwrap();
    let (s, text) = get_text(app, "metro-pd", "/v1/audit/checkpoint").await;
    assert_eq!(s, 200, "{text}");
    let seen = audit::witness::observe(&log_key(app), &text).unwrap();
    (text, seen)
}

#[tokio::test]
async fn every_disclosure_carries_a_receipt_provable_against_a_signed_checkpoint() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let receipts = disclosures(&app, 3).await;
        // A denial carries its receipt too.
        let w = officer();
        let res = support::client(Some(&w.0))
            .get(app.url("/v1/records/safety-plan/SP-1"))
            .bearer_auth(&w.1)
            .header("Purpose-Of-Use", "crisis-response")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        assert!(res.headers().contains_key("log-leaf-index"));
        assert!(res.headers().contains_key("log-leaf-hash"));
        let (text, seen) = checkpoint(&app).await;
        for (index, leaf) in &receipts {
            // Any partner's certificate suffices; no token.
            let (s, p) = get_json(
                &app,
                "county-mh",
                &format!(
                    "/v1/audit/proof/inclusion?index={index}&size={}",
                    seen.head.size
                ),
            )
            .await;
            assert_eq!(s, 200, "{p}");
            let p: InclusionProof = serde_json::from_value(p).unwrap();
            assert_eq!(b64(&p.leaf_hash), *leaf);
            let path: Vec<Hash> = p.hashes.iter().map(|h| b64(h)).collect();
            assert!(tree::verify_inclusion(
                *index,
                seen.head.size,
                leaf,
                &path,
                &seen.head.root
            ));
            // A different leaf does not verify with that path.
            assert!(!tree::verify_inclusion(
                *index,
                seen.head.size,
                &[0; 32],
                &path,
                &seen.head.root
            ));
        }
        // Proofs and checkpoints carry hashes only: nothing of the record or the person.
        let (_, incl) = get_text(
            &app,
            "metro-pd",
            &format!("/v1/audit/proof/inclusion?index=0&size={}", seen.head.size),
        )
        .await;
        let (_, cons) = get_text(
            &app,
            "metro-pd",
            &format!("/v1/audit/proof/consistency?from=1&to={}", seen.head.size),
        )
        .await;
        for body in [&text, &incl, &cons] {
            for secret in [
                "P-2231",
                "INC-1",
                "Jordan",
                "Elm St",
                "NARRATIVE-MARKER",
                "clin-3",
                "officer-17",
                "treatment",
            ] {
                assert!(!body.contains(secret), "`{secret}` in {body}");
            }
        }
        app.assert_log_verifies().await;
    }
}

#[tokio::test]
async fn proof_requests_out_of_range_get_clear_errors() {
    let app = spawn_app(Db::Sqlite).await;
    disclosures(&app, 1).await;
    let (_, seen) = checkpoint(&app).await;
    let n = seen.head.size;
    for (path, param) in [
        (
            format!("/v1/audit/proof/inclusion?index={n}&size={n}"),
            "index",
        ),
        (
            format!("/v1/audit/proof/inclusion?index=0&size={}", n + 100),
            "size",
        ),
        (
            "/v1/audit/proof/inclusion?index=0&size=0".to_owned(),
            "size",
        ),
        (
            "/v1/audit/proof/inclusion?index=x&size=1".to_owned(),
            "index",
        ),
        ("/v1/audit/proof/inclusion?size=1".to_owned(), "index"),
        (
            "/v1/audit/proof/inclusion?index=0&size=1&extra=1".to_owned(),
            "extra",
        ),
        (
            format!("/v1/audit/proof/consistency?from={}&to={n}", n + 1),
            "from",
        ),
        (format!("/v1/audit/proof/consistency?from=0&to={n}"), "from"),
        (
            format!("/v1/audit/proof/consistency?from=1&to={}", n + 1),
            "to",
        ),
    ] {
        let (s, b) = get_json(&app, "metro-pd", &path).await;
        assert_eq!(s, 400, "{path}: {b}");
        assert_eq!(b["code"], "invalid_parameter", "{path}: {b}");
        assert_eq!(b["details"]["parameter"], param, "{path}: {b}");
    }
    // Without a client certificate there is no connection at all; with an unregistered one,
    // no answer.
    let res = app
        .get(Some(&pki().unregistered), "/v1/audit/checkpoint", None)
        .await;
    assert!(res.is_err() || res.unwrap().status() == 403);
}

/// The interoperability test: the checkpoint, an inclusion proof and a consistency proof are
/// verified with Cloudflare's `signed_note` and `tlog_tiles` crates (ports of Go's
/// `golang.org/x/mod/sumdb/note` and `tlog`), and a leaf with their RFC 6962 record hash of
/// the entry's encoding. If our encoding drifts from the C2SP and RFC 6962 formats, this fails.
#[tokio::test]
async fn checkpoints_and_proofs_verify_with_an_independent_implementation() {
    use signed_note::{Note as SNote, StandardVerifier, VerifierList};
    use tlog_tiles::{
        Checkpoint as TCheckpoint, Hash as THash, check_record, check_tree, record_hash,
    };
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        disclosures(&app, 3).await;
        let (first_text, _) = checkpoint(&app).await;
        let receipts = disclosures(&app, 5).await;
        let (text, _) = checkpoint(&app).await;

        let vkey = log_key(&app).to_vkey();
        let verifier = StandardVerifier::new(&vkey).expect("their parser reads our vkey");
        let list = VerifierList::new(vec![Box::new(verifier)]);
        let parse = |t: &str| {
            let n = SNote::from_bytes(t.as_bytes()).expect("their parser reads our note");
            n.verify(&list)
                .expect("their verifier accepts our signature");
            TCheckpoint::from_bytes(n.text()).expect("their parser reads our checkpoint")
        };
        let old = parse(&first_text);
        let new = parse(&text);
        assert_eq!(new.origin(), log_key(&app).name);
        // A signature over a changed body fails with them too.
        let forged = text.replacen(&format!("\n{}\n", new.size()), "\n1\n", 1);
        let n = SNote::from_bytes(forged.as_bytes()).unwrap();
        assert!(n.verify(&list).is_err());

        // Inclusion of each receipt, checked by their `check_record`.
        for (index, leaf) in &receipts {
            let (s, p) = get_json(
                &app,
                "metro-pd",
                &format!(
                    "/v1/audit/proof/inclusion?index={index}&size={}",
                    new.size()
                ),
            )
            .await;
            assert_eq!(s, 200);
            let p: InclusionProof = serde_json::from_value(p).unwrap();
            let proof: Vec<THash> = p.hashes.iter().map(|h| THash(b64(h))).collect();
            check_record(&proof, new.size(), *new.hash(), *index, THash(*leaf))
                .expect("their check_record accepts our inclusion proof");
            assert!(check_record(&proof, new.size(), *new.hash(), *index, THash([7; 32])).is_err());
        }
        // Consistency between the two checkpoints, checked by their `check_tree`.
        let (s, p) = get_json(
            &app,
            "metro-pd",
            &format!(
                "/v1/audit/proof/consistency?from={}&to={}",
                old.size(),
                new.size()
            ),
        )
        .await;
        assert_eq!(s, 200);
        let p: ConsistencyProof = serde_json::from_value(p).unwrap();
        let proof: Vec<THash> = p.hashes.iter().map(|h| THash(b64(h))).collect();
        check_tree(&proof, new.size(), *new.hash(), old.size(), *old.hash())
            .expect("their check_tree accepts our consistency proof");
        assert!(check_tree(&proof, new.size(), THash([1; 32]), old.size(), *old.hash()).is_err());

        // A leaf is their RFC 6962 record hash of the entry's format-2 encoding.
        let base = audit::transparency::tree_base(app.store()).await.unwrap();
        let (index, leaf) = receipts[0];
        let e = app.log_entry(base + 1 + index).await.unwrap();
        let mut buf = Vec::new();
        audit::encode_v2_into(&mut buf, e.seq, &e.prev_hash, &e.data, e.sealed.as_deref());
        assert_eq!(record_hash(&buf), THash(leaf));

        // A witness cosignature, checked against the tlog-cosignature text (Ed25519 over
        // "cosignature/v1\ntime <t>\n" and the checkpoint body; key id with type 0x04).
        let dir = tempfile::tempdir().unwrap();
        let opts = witness_opts(&app, "metro-pd", dir.path());
        assert!(matches!(
            run_once(&client("metro-pd"), &opts).await.unwrap(),
            WitnessOutcome::Cosigned { .. }
        ));
        let (_, served) = get_text(&app, "county-mh", "/v1/audit/checkpoint").await;
        let n = SNote::from_bytes(served.as_bytes()).unwrap();
        let (_, unverified) = n.verify(&list).unwrap();
        let wk = opts.witness.verifier();
        let line = unverified
            .iter()
            .find(|s| s.name() == wk.name)
            .expect("the cosignature is served with the checkpoint");
        use sha2::Digest as _;
        let mut id_input = wk.name.as_bytes().to_vec();
        id_input.extend_from_slice(b"\n\x04");
        id_input.extend_from_slice(wk.key.as_bytes());
        let want_id = u32::from_be_bytes(sha2::Sha256::digest(&id_input)[..4].try_into().unwrap());
        assert_eq!(line.id(), want_id);
        let sig = line.signature();
        assert_eq!(sig.len(), 72);
        let t = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let mut msg = format!("cosignature/v1\ntime {t}\n").into_bytes();
        msg.extend_from_slice(n.text());
        let s = ed25519_dalek::Signature::from_slice(&sig[8..]).unwrap();
        use ed25519_dalek::Verifier as _;
        wk.key
            .verify(&msg, &s)
            .expect("the cosignature follows tlog-cosignature");
    }
}

fn client(partner: &str) -> reqwest::Client {
    support::client(Some(&cert(partner)))
}

fn witness_opts(app: &TestApp, partner: &str, dir: &Path) -> WitnessOptions {
    let skey = std::fs::read_to_string(pki().dir.join(format!("{partner}-witness.key"))).unwrap();
    WitnessOptions {
        url: app.url(""),
        log_key: log_key(app),
        witness: Arc::new(NoteSigner::parse(&skey).unwrap()),
        state: dir.join(format!("{partner}.state")),
    }
}

#[tokio::test]
async fn two_witnesses_cosign_and_verify_requires_them() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let dir = tempfile::tempdir().unwrap();
        disclosures(&app, 2).await;
        checkpoint(&app).await;
        let metro = witness_opts(&app, "metro-pd", dir.path());
        let county = witness_opts(&app, "county-mh", dir.path());
        let registry = |p: &str| {
            let policy = app.services().policy();
            (
                p.to_owned(),
                policy
                    .partners
                    .get(&p.parse().unwrap())
                    .unwrap()
                    .witness
                    .clone()
                    .unwrap(),
            )
        };
        let both = [registry("metro-pd"), registry("county-mh")];
        let key = app.services().log.checkpoint_key();
        // Before any cosignature, verification requiring witnesses fails and says why.
        let v = audit::verify_store_witnessed(app.store(), key.as_ref(), None, &both)
            .await
            .unwrap();
        assert!(!v.ok());
        assert!(
            v.tree
                .unwrap()
                .failure
                .unwrap()
                .contains("metro-pd, county-mh")
        );
        for o in [&metro, &county] {
            let out = run_once(&client(&o.witness.verifier().name), o)
                .await
                .unwrap();
            assert!(
                matches!(out, WitnessOutcome::Cosigned { from: 0, .. }),
                "{out:?}"
            );
        }
        // The checkpoint is served with both cosignatures.
        let (_, served) = get_text(&app, "oversight", "/v1/audit/checkpoint").await;
        let note = Note::parse(&served).unwrap();
        assert!(note.signed_by(&log_key(&app)));
        assert!(note.cosigned_by(&metro.witness.verifier()).is_some());
        assert!(note.cosigned_by(&county.witness.verifier()).is_some());
        let v = audit::verify_store_witnessed(app.store(), key.as_ref(), None, &both)
            .await
            .unwrap();
        assert!(v.ok(), "{v:?}");
        // The log grows; the next runs check consistency and cosign again.
        disclosures(&app, 3).await;
        let (_, seen) = checkpoint(&app).await;
        for o in [&metro, &county] {
            let out = run_once(&client(&o.witness.verifier().name), o)
                .await
                .unwrap();
            assert!(
                matches!(out, WitnessOutcome::Cosigned { size, from } if size == seen.head.size && from > 0),
                "{out:?}"
            );
        }
        // Each cosignature is a logged entry.
        let n = support::scalar(
            app.store(),
            "SELECT COUNT(*) FROM audit_log WHERE kind = 'witness_cosignature' AND outcome = 'permit'",
        )
        .await;
        assert_eq!(n, 4);
    }
}

#[tokio::test]
async fn cosignatures_the_gateway_cannot_trust_are_refused_and_logged() {
    let app = spawn_app(Db::Sqlite).await;
    disclosures(&app, 1).await;
    let (text, seen) = checkpoint(&app).await;
    let metro = witness_opts(&app, "metro-pd", Path::new("/nonexistent"));
    let post = |partner: &'static str, body: String| {
        let c = client(partner);
        let url = app.url("/v1/audit/cosignatures");
        async move {
            let res = c
                .post(url)
                .header("Content-Type", "text/plain")
                .body(body)
                .send()
                .await
                .unwrap();
            let s = res.status().as_u16();
            (s, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let cosigned = |body: &str, size_text: &str| {
        let mut n = Note::parse(size_text).unwrap();
        n.body = body.to_owned();
        n.signatures.push(metro.witness.cosign(body, 1_800_000_000));
        n.to_text()
    };
    // A checkpoint the gateway never issued (another root for the same size).
    let forged_body = audit::note::checkpoint_body(
        &log_key(&app).name,
        &audit::note::TreeHead {
            size: seen.head.size,
            root: [9; 32],
        },
    );
    let (s, b) = post("metro-pd", cosigned(&forged_body, &text)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (409, Some("checkpoint_unknown")),
        "{b}"
    );
    // The real checkpoint, cosigned with a key that is not metro-pd's.
    let stranger = NoteSigner::new("metro-pd", 0x04, &[42; 32]).unwrap();
    let mut n = Note::parse(&text).unwrap();
    n.signatures.push(stranger.cosign(&n.body, 1_800_000_000));
    let (s, b) = post("metro-pd", n.to_text()).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("cosignature_invalid")),
        "{b}"
    );
    // metro-pd's cosignature posted over county-mh's certificate: not county-mh's key.
    let (s, b) = post("county-mh", cosigned(&seen.note.body, &text)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("cosignature_invalid")),
        "{b}"
    );
    // A partner without a witness key.
    let (s, b) = post("oversight", cosigned(&seen.note.body, &text)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("witness_not_registered")),
        "{b}"
    );
    // Not a note at all.
    let (s, b) = post("metro-pd", "hello".into()).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_checkpoint")),
        "{b}"
    );
    // Each refusal is logged; nothing was stored.
    let refused = support::scalar(
        app.store(),
        "SELECT COUNT(*) FROM audit_log WHERE kind = 'witness_cosignature' AND outcome = 'deny'",
    )
    .await;
    assert_eq!(refused, 5);
    assert_eq!(
        support::scalar(app.store(), "SELECT COUNT(*) FROM audit_cosignatures").await,
        0
    );
    // And the real one is accepted.
    let (s, b) = post("metro-pd", cosigned(&seen.note.body, &text)).await;
    assert_eq!(s, 201, "{b}");
}

/// What an operator able to change the database and holding the log's signing key can do:
/// replace the stored tree by one over `leaves`, move the head, and sign a fresh checkpoint.
async fn rewrite_tree(app: &TestApp, leaves: &[Hash]) {
    let store = app.store();
    let mut f = Frontier::default();
    let mut nodes = Vec::new();
    for l in leaves {
        f.push(*l, |i, h| nodes.push((i, h)));
    }
    let blob = |b: &[u8]| match store.backend() {
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(b)),
        Backend::Sqlite => format!("x'{}'", hex::encode(b)),
    };
    let mut sql = String::from("DELETE FROM audit_tree;");
    for chunk in nodes.chunks(200) {
        sql.push_str("INSERT INTO audit_tree (idx, hash) VALUES ");
        let rows: Vec<String> = chunk
            .iter()
            .map(|(i, h)| format!("({i}, {})", blob(h)))
            .collect();
        sql.push_str(&rows.join(", "));
        sql.push(';');
    }
    let base = audit::transparency::tree_base(store).await.unwrap();
    sql.push_str(&format!(
        "UPDATE audit_head SET seq = {}, tree_size = {}, tree_peaks = {} WHERE id = 1;",
        base + f.size(),
        f.size(),
        blob(&f.to_bytes())
    ));
    sql.push_str(&format!(
        "DELETE FROM audit_tree_checkpoints WHERE tree_size >= {};",
        f.size()
    ));
    exec(store, &sql).await;
    let seed = std::fs::read_to_string(pki().dir.join("audit-checkpoint.key")).unwrap();
    let mut raw = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut raw).unwrap();
    let signer = CheckpointSigner::from_seed(&raw)
        .with_origin(&log_key(app).name)
        .unwrap();
    let cp = signer.sign_tree(f.size(), f.root(), 0);
    exec(
        store,
        &format!(
            "INSERT INTO audit_tree_checkpoints (tree_size, root_hash, at_us, note) VALUES \
             ({}, {}, 1, '{}')",
            cp.size,
            blob(&cp.root),
            cp.note.replace('\'', "''")
        ),
    )
    .await;
}

/// The stored leaves, in order.
async fn leaves(app: &TestApp) -> Vec<Hash> {
    let size = audit::transparency::tree_size(app.store()).await.unwrap();
    let rows: Vec<(i64, Vec<u8>)> =
        fetch_all(app.store(), "SELECT idx, hash FROM audit_tree ORDER BY idx").await;
    let all: std::collections::HashMap<u64, Vec<u8>> =
        rows.into_iter().map(|(i, h)| (i as u64, h)).collect();
    (0..size)
        .map(|n| all[&tree::stored_index(0, n)].clone().try_into().unwrap())
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Attack {
    /// An entry's content changed (and every hash after it recomputed).
    Tamper,
    /// Two entries swapped.
    Reorder,
    /// The newest entries removed.
    Truncate,
    /// A different history of the same size shown now.
    Fork,
}

#[tokio::test]
async fn a_witness_catches_every_rewrite_without_reading_an_entry() {
    for db in [Db::Sqlite, Db::Postgres] {
        for attack in [
            Attack::Tamper,
            Attack::Reorder,
            Attack::Truncate,
            Attack::Fork,
        ] {
            // No timed checkpoints: the test decides when one is signed.
            let app =
                crate::support::spawn_with(db, |s| s.audit.checkpoint_every_secs = 3600).await;
            let dir = tempfile::tempdir().unwrap();
            let metro = witness_opts(&app, "metro-pd", dir.path());
            let county = witness_opts(&app, "county-mh", dir.path());
            disclosures(&app, 6).await;
            let (_, seen) = checkpoint(&app).await;
            let m = seen.head.size as usize;
            for o in [&metro, &county] {
                let out = run_once(&client(&o.witness.verifier().name), o)
                    .await
                    .unwrap();
                assert!(matches!(out, WitnessOutcome::Cosigned { .. }), "{out:?}");
            }
            // The log has grown since (the cosignatures are entries too).
            let mut l = leaves(&app).await;
            assert!(l.len() > m);
            match attack {
                Attack::Tamper => {
                    l[2] = [0xAB; 32];
                    l.push([0xCD; 32]);
                }
                Attack::Reorder => {
                    l.swap(1, 2);
                    l.push([0xCD; 32]);
                }
                Attack::Truncate => l.truncate(m - 2),
                Attack::Fork => {
                    l.truncate(m);
                    l[m - 1] = [0xEF; 32];
                }
            }
            rewrite_tree(&app, &l).await;
            for o in [&metro, &county] {
                let out = run_once(&client(&o.witness.verifier().name), o)
                    .await
                    .unwrap();
                let WitnessOutcome::Conflict { reason, evidence } = out else {
                    panic!("{attack:?} on {db:?} not caught: {out:?}");
                };
                let text = std::fs::read_to_string(&evidence).unwrap();
                assert_eq!(text.matches("\n\n\u{2014} ").count(), 2, "{text}");
                assert!(!reason.is_empty());
                // Nothing was cosigned: the witness's state still holds the honest checkpoint.
                let state = std::fs::read_to_string(&o.state).unwrap();
                assert_eq!(
                    audit::witness::observe(&o.log_key, &state)
                        .unwrap()
                        .head
                        .size as usize,
                    m
                );
            }
        }
    }
}

#[tokio::test]
async fn a_purge_keeps_the_tree_and_proofs_across_it() {
    for db in [Db::Sqlite, Db::Postgres] {
        let clock = ManualClock::new(chrono::Utc::now());
        let app = spawn_with_clock(db, &clock, |s| {
            s.audit.checkpoint_every_secs = 3600;
            s.audit.retention_days = 30;
        })
        .await;
        let old = disclosures_at(&app, 4, clock.now()).await;
        let (_, first) = checkpoint(&app).await;
        clock.advance(Duration::days(40));
        let recent = disclosures_at(&app, 2, clock.now()).await;
        let (_, before) = checkpoint(&app).await;
        let report = retention::purge(&app.services().log, clock.now(), false)
            .await
            .unwrap();
        assert!(report.removed.is_some(), "{report:?}");
        // The purged entries are gone, their leaves are not.
        let (index, leaf) = old[0];
        let base = audit::transparency::tree_base(app.store()).await.unwrap();
        assert!(app.log_entry(base + 1 + index).await.is_none());
        let (_, after) = checkpoint(&app).await;
        assert!(after.head.size > before.head.size);
        app.assert_log_verifies().await;
        for (index, leaf) in [(index, leaf), recent[0]] {
            let (s, p) = get_json(
                &app,
                "metro-pd",
                &format!(
                    "/v1/audit/proof/inclusion?index={index}&size={}",
                    after.head.size
                ),
            )
            .await;
            assert_eq!(s, 200, "{p}");
            let p: InclusionProof = serde_json::from_value(p).unwrap();
            let path: Vec<Hash> = p.hashes.iter().map(|h| b64(h)).collect();
            assert!(tree::verify_inclusion(
                index,
                after.head.size,
                &leaf,
                &path,
                &after.head.root
            ));
        }
        let (s, p) = get_json(
            &app,
            "metro-pd",
            &format!(
                "/v1/audit/proof/consistency?from={}&to={}",
                first.head.size, after.head.size
            ),
        )
        .await;
        assert_eq!(s, 200);
        let p: ConsistencyProof = serde_json::from_value(p).unwrap();
        let path: Vec<Hash> = p.hashes.iter().map(|h| b64(h)).collect();
        assert!(tree::verify_consistency(
            first.head.size,
            after.head.size,
            &first.head.root,
            &after.head.root,
            &path
        ));
    }
}

#[tokio::test]
async fn replicas_on_one_database_build_one_tree() {
    let app = spawn_app(Db::Postgres).await;
    let replica = support::spawn_replica(&app).await;
    disclosures(&app, 1).await;
    // Both gateways append at once, each through its own group-commit writer.
    let now = chrono::Utc::now();
    let (a, b, c, d) = tokio::join!(
        reads_at(&app, 8, now),
        reads_at(&replica, 8, now),
        reads_at(&app, 8, now),
        reads_at(&replica, 8, now)
    );
    let mut receipts: Vec<(u64, Hash)> = [a, b, c, d].concat();
    receipts.sort();
    receipts.dedup_by_key(|r| r.0);
    assert_eq!(receipts.len(), 32, "every read has its own leaf");
    let (_, seen) = checkpoint(&replica).await;
    for (index, leaf) in &receipts {
        let (s, p) = get_json(
            &app,
            "metro-pd",
            &format!(
                "/v1/audit/proof/inclusion?index={index}&size={}",
                seen.head.size
            ),
        )
        .await;
        assert_eq!(s, 200, "{p}");
        let p: InclusionProof = serde_json::from_value(p).unwrap();
        let path: Vec<Hash> = p.hashes.iter().map(|h| b64(h)).collect();
        assert!(tree::verify_inclusion(
            *index,
            seen.head.size,
            leaf,
            &path,
            &seen.head.root
        ));
    }
    app.assert_log_verifies().await;
}

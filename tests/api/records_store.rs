//! Records at rest: encryption, integrity, history, blind indexes, rotation, on both backends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use coresponse_gateway::config::StorageSettings;
use coresponse_gateway::crypto::{Keyring, MasterVersion};
use coresponse_gateway::domain::{Author, RecordId, RecordKind, SubjectIdentifier};
use coresponse_gateway::service::keys::{self, KeyringError, RetireError};
use coresponse_gateway::store::{Store, on_conn};
use coresponse_gateway::vault::{
    self, DecryptedRecord, NewRecord, PutOutcome, RecordError, RecordRef, RecordVersionInfo,
};
use serde_json::{Value, json};

use crate::support::pg::PgCluster;
use crate::support::{Db, fetch_all};

struct Env {
    store: Store,
    keyring: Keyring,
    key_file: PathBuf,
    db_file: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

fn random_key_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

async fn open_store(db: Db, dir: &Path) -> (Store, Option<PathBuf>, StorageSettings) {
    let (url, file) = match db {
        Db::Sqlite => {
            let f = dir.join("gateway.db");
            (format!("sqlite://{}", f.display()), Some(f))
        }
        Db::Postgres => (PgCluster::get().fresh_database().await, None),
    };
    let settings = StorageSettings {
        max_connections: 4,
        ..StorageSettings::new(url)
    };
    (Store::open(&settings).await.unwrap(), file, settings)
}

async fn env(db: Db) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, random_key_hex()).unwrap();
    let (store, db_file, _) = open_store(db, dir.path()).await;
    let keyring = keys::open(&key_file, &store).await.unwrap();
    Env {
        store,
        keyring,
        key_file,
        db_file,
        _dir: dir,
    }
}

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

fn kind(s: &str) -> RecordKind {
    s.parse().unwrap()
}

fn rid(s: &str) -> RecordId {
    s.parse().unwrap()
}

fn subject(system: &str, value: &str) -> SubjectIdentifier {
    SubjectIdentifier::new(system, value).unwrap()
}

fn author(partner: &str, user: &str) -> Author {
    Author {
        partner: partner.parse().unwrap(),
        user: user.parse().unwrap(),
    }
}

fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 14, minute, 0).unwrap()
}

fn incident(id: &str, fields: Value, subjects: Vec<SubjectIdentifier>) -> NewRecord {
    let fields: BTreeMap<String, Value> = serde_json::from_value(fields).unwrap();
    NewRecord {
        kind: kind("crisis-incident"),
        id: rid(id),
        owner: "metro-pd".parse().unwrap(),
        subjects,
        fields,
    }
}

/// Writes `rec` in its own transaction and commits it.
async fn put_record(
    store: &Store,
    keyring: &Keyring,
    rec: &NewRecord,
    author: &Author,
    at: chrono::DateTime<Utc>,
) -> Result<PutOutcome, RecordError> {
    let mut tx = store.begin().await?;
    let out = vault::put_record(&mut tx.conn(), keyring, rec, author, at).await?;
    tx.commit()
        .await
        .map_err(|e| vault::write_error(e, &rec.kind, &rec.id))?;
    Ok(out)
}

/// Reads a record (`version`: `None` for the current one) on a pooled connection.
async fn get_record(
    store: &Store,
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
    version: Option<i64>,
) -> Result<Option<DecryptedRecord>, RecordError> {
    let mut pooled = store.acquire().await?;
    vault::get_record(&mut pooled.conn(), keyring, kind, id, version).await
}

async fn find_by_subject(
    store: &Store,
    keyring: &Keyring,
    subject: &SubjectIdentifier,
    kind: Option<&RecordKind>,
) -> Result<Vec<RecordRef>, RecordError> {
    let mut pooled = store.acquire().await?;
    vault::find_by_subject(&mut pooled.conn(), keyring, subject, kind).await
}

async fn record_history(
    env: &Env,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<Vec<RecordVersionInfo>, RecordError> {
    let mut pooled = env.store.acquire().await?;
    vault::record_history(&mut pooled.conn(), &env.keyring, kind, id).await
}

async fn put(env: &Env, rec: &NewRecord, minute: u32) -> i64 {
    put_record(
        &env.store,
        &env.keyring,
        rec,
        &author("metro-pd", "off-17"),
        at(minute),
    )
    .await
    .unwrap()
    .version
}

async fn get(env: &Env, k: &str, id: &str) -> Result<Option<BTreeMap<String, Value>>, RecordError> {
    get_record(&env.store, &env.keyring, &kind(k), &rid(id), None)
        .await
        .map(|r| r.map(|r| r.into_fields_unaudited()))
}

fn assert_integrity(result: Result<Option<BTreeMap<String, Value>>, RecordError>, what: &str) {
    match result {
        Err(RecordError::Integrity { .. }) => {}
        other => panic!("{what}: expected an integrity error, got {other:?}"),
    }
}

async fn blob(env: &Env, sql: &'static str, binds: &[&str]) -> Vec<u8> {
    let mut pooled = env.store.acquire().await.unwrap();
    let row: (Vec<u8>,) = on_conn!(&mut pooled.conn(), |c| {
        let mut q = sqlx::query_as(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_one(c).await
    })
    .unwrap();
    row.0
}

async fn exec(env: &Env, sql: &'static str, bytes: Option<Vec<u8>>, binds: &[&str]) {
    let mut pooled = env.store.acquire().await.unwrap();
    on_conn!(&mut pooled.conn(), |c| {
        let mut q = sqlx::query(sql);
        if let Some(b) = bytes {
            q = q.bind(b);
        }
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(c).await.map(|_| ())
    })
    .unwrap();
}

const FIELD_CT: &str = "SELECT ciphertext FROM record_fields WHERE kind = 'crisis-incident' AND id = $1 AND field = $2";
const SET_FIELD_CT: &str = "UPDATE record_fields SET ciphertext = $1 \
     WHERE kind = 'crisis-incident' AND id = $2 AND field = $3";

#[tokio::test]
async fn records_round_trip_and_keep_a_history_of_who_changed_what() {
    for db in BOTH {
        let env = env(db).await;
        let v1 = incident(
            "INC-1",
            json!({"narrative": "caller on the bridge", "safety_flags": {"weapon": false}}),
            vec![subject("metro-pd", "P-2231")],
        );
        let out = put_record(
            &env.store,
            &env.keyring,
            &v1,
            &author("metro-pd", "off-17"),
            at(1),
        )
        .await
        .unwrap();
        assert_eq!((out.version, out.created), (1, true));
        assert_eq!(out.changed_fields, ["narrative", "safety_flags"]);

        let got = get_record(
            &env.store,
            &env.keyring,
            &kind("crisis-incident"),
            &rid("INC-1"),
            None,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(got.subjects, v1.subjects);
        assert_eq!(got.owner.as_str(), "metro-pd");
        assert_eq!(got.version, 1);
        assert_eq!(got.into_fields_unaudited(), v1.fields);

        let mut v2 = v1.clone();
        v2.fields.insert(
            "narrative".into(),
            json!("caller calmed, walked off bridge"),
        );
        v2.fields.insert("disposition".into(), json!("referred"));
        v2.subjects.push(subject("county-mh", "MRN-88"));
        let out = put_record(
            &env.store,
            &env.keyring,
            &v2,
            &author("metro-pd", "sgt-4"),
            at(2),
        )
        .await
        .unwrap();
        assert_eq!((out.version, out.created), (2, false));
        assert_eq!(out.changed_fields, ["disposition", "narrative"]);
        assert!(out.subjects_changed);

        // The same content again adds no version.
        let out = put_record(
            &env.store,
            &env.keyring,
            &v2,
            &author("metro-pd", "sgt-4"),
            at(3),
        )
        .await
        .unwrap();
        assert_eq!((out.version, out.changed_fields.len()), (2, 0));

        // Removing a field is a change.
        let mut v3 = v2.clone();
        v3.fields.remove("safety_flags");
        assert_eq!(put(&env, &v3, 4).await, 3);

        let history = record_history(&env, &kind("crisis-incident"), &rid("INC-1"))
            .await
            .unwrap();
        let summary: Vec<_> = history
            .iter()
            .map(|h| {
                (
                    h.version,
                    h.author_user.as_str(),
                    h.changed_fields.clone(),
                    h.at,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    1,
                    "off-17",
                    vec!["narrative".to_owned(), "safety_flags".to_owned()],
                    at(1)
                ),
                (
                    2,
                    "sgt-4",
                    vec!["disposition".to_owned(), "narrative".to_owned()],
                    at(2)
                ),
                (3, "off-17", vec!["safety_flags".to_owned()], at(4)),
            ]
        );
        assert!(history.iter().all(|h| h.author_partner == "metro-pd"));

        let old = get_record(
            &env.store,
            &env.keyring,
            &kind("crisis-incident"),
            &rid("INC-1"),
            Some(1),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(old.current_version, 3);
        assert_eq!(old.into_fields_unaudited(), v1.fields);
        assert_eq!(
            get(&env, "crisis-incident", "INC-1")
                .await
                .unwrap()
                .unwrap(),
            v3.fields
        );

        // Only the owner may write.
        let mut foreign = v3.clone();
        foreign.owner = "county-mh".parse().unwrap();
        let err = put_record(
            &env.store,
            &env.keyring,
            &foreign,
            &author("county-mh", "clin-7"),
            at(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RecordError::OwnerMismatch { .. }), "{err:?}");
        assert_eq!(get(&env, "crisis-incident", "NOPE").await.unwrap(), None);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_sqlite_files_hold_none_of_the_clear_text_written() {
    let env = env(Db::Sqlite).await;
    let secrets = [
        "Quokka-Zanzibar-7731 threatened self-harm",
        "ZX-Olanzapine-Marker-42",
        "P-2231-QXV9",
        "MRN-Unique-55017",
        "555-0199-8841",
    ];
    let rec = incident(
        "INC-CLEARTEXT-CONTROL",
        json!({
            "narrative": secrets[0],
            "medications": [secrets[1]],
            "callback_number": secrets[4],
        }),
        vec![
            subject("metro-pd", secrets[2]),
            subject("county-mh", secrets[3]),
        ],
    );
    put(&env, &rec, 1).await;
    let mut rec2 = rec.clone();
    rec2.fields.insert(
        "disposition".into(),
        json!(format!("{} (update)", secrets[0])),
    );
    put(&env, &rec2, 2).await;
    let found = find_by_subject(
        &env.store,
        &env.keyring,
        &subject("metro-pd", secrets[2]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1);

    let db_file = env.db_file.clone().unwrap();
    let mut bytes = std::fs::read(&db_file).unwrap();
    let wal = PathBuf::from(format!("{}-wal", db_file.display()));
    let wal_bytes = std::fs::read(&wal).unwrap_or_default();
    assert!(!wal_bytes.is_empty(), "the test must also search the WAL");
    bytes.extend_from_slice(&wal_bytes);
    // Control: clear-text metadata is found, so the search itself works.
    assert!(contains(&bytes, b"INC-CLEARTEXT-CONTROL"));
    for s in secrets {
        assert!(
            !contains(&bytes, s.as_bytes()),
            "`{s}` is in the database files"
        );
        let lower = s.to_lowercase();
        assert!(
            !contains(&bytes, lower.as_bytes()),
            "`{lower}` is in the database files"
        );
    }
    // The key material is not there either.
    let key_hex = std::fs::read_to_string(&env.key_file).unwrap();
    let key = hex::decode(key_hex.trim()).unwrap();
    assert!(!contains(&bytes, &key));
    assert!(!contains(&bytes, key_hex.trim().as_bytes()));
}

#[tokio::test]
async fn a_tampered_ciphertext_is_detected_and_not_served() {
    for db in BOTH {
        let env = env(db).await;
        let rec = incident(
            "INC-T",
            json!({"narrative": "n", "disposition": "d"}),
            vec![subject("metro-pd", "P-1")],
        );
        put(&env, &rec, 1).await;
        assert!(
            get(&env, "crisis-incident", "INC-T")
                .await
                .unwrap()
                .is_some()
        );

        // One flipped bit in a field value's ciphertext.
        let original = blob(&env, FIELD_CT, &["INC-T", "narrative"]).await;
        let mut bad = original.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        exec(&env, SET_FIELD_CT, Some(bad), &["INC-T", "narrative"]).await;
        assert_integrity(
            get(&env, "crisis-incident", "INC-T").await,
            "flipped tag bit",
        );
        let mut bad = original.clone();
        bad[40] ^= 0x80;
        exec(&env, SET_FIELD_CT, Some(bad), &["INC-T", "narrative"]).await;
        assert_integrity(
            get(&env, "crisis-incident", "INC-T").await,
            "flipped body bit",
        );
        // Writing over a tampered record is refused too (it reads the current version first).
        let err = put_record(
            &env.store,
            &env.keyring,
            &rec,
            &author("metro-pd", "off-17"),
            at(2),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RecordError::Integrity { .. }), "{err:?}");
        exec(&env, SET_FIELD_CT, Some(original), &["INC-T", "narrative"]).await;
        assert!(
            get(&env, "crisis-incident", "INC-T")
                .await
                .unwrap()
                .is_some()
        );

        // A tampered subject identifier.
        let sql = "SELECT ciphertext FROM record_subjects WHERE id = $1";
        let original = blob(&env, sql, &["INC-T"]).await;
        let mut bad = original.clone();
        bad[30] ^= 0x04;
        exec(
            &env,
            "UPDATE record_subjects SET ciphertext = $1 WHERE id = $2",
            Some(bad),
            &["INC-T"],
        )
        .await;
        assert_integrity(get(&env, "crisis-incident", "INC-T").await, "subject");
        let err = find_by_subject(&env.store, &env.keyring, &subject("metro-pd", "P-1"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, RecordError::Integrity { .. }), "{err:?}");
        exec(
            &env,
            "UPDATE record_subjects SET ciphertext = $1 WHERE id = $2",
            Some(original),
            &["INC-T"],
        )
        .await;

        // A tampered wrapped data key.
        let sql = "SELECT wrapped FROM data_keys WHERE id = \
                   (SELECT data_key_id FROM records WHERE id = $1)";
        let original = blob(&env, sql, &["INC-T"]).await;
        let mut bad = original.clone();
        bad[20] ^= 0x10;
        exec(
            &env,
            "UPDATE data_keys SET wrapped = $1 WHERE id = (SELECT data_key_id FROM records WHERE id = $2)",
            Some(bad),
            &["INC-T"],
        )
        .await;
        assert_integrity(get(&env, "crisis-incident", "INC-T").await, "wrapped key");
        exec(
            &env,
            "UPDATE data_keys SET wrapped = $1 WHERE id = (SELECT data_key_id FROM records WHERE id = $2)",
            Some(original),
            &["INC-T"],
        )
        .await;

        // Edited history metadata.
        exec(
            &env,
            "UPDATE record_versions SET author_user = 'someone-else' WHERE id = $1",
            None,
            &["INC-T"],
        )
        .await;
        let err = record_history(&env, &kind("crisis-incident"), &rid("INC-T"))
            .await
            .unwrap_err();
        assert!(matches!(err, RecordError::Integrity { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_field_record_owner_or_version_is_detected() {
    for db in BOTH {
        let env = env(db).await;
        for id in ["INC-A", "INC-B"] {
            let rec = incident(
                id,
                json!({"narrative": format!("{id} narrative"), "disposition": "none"}),
                vec![],
            );
            put(&env, &rec, 1).await;
        }
        let a_narrative = blob(&env, FIELD_CT, &["INC-A", "narrative"]).await;
        let a_disposition = blob(&env, FIELD_CT, &["INC-A", "disposition"]).await;
        let b_narrative = blob(&env, FIELD_CT, &["INC-B", "narrative"]).await;

        // Into another field of the same record.
        exec(
            &env,
            SET_FIELD_CT,
            Some(a_narrative.clone()),
            &["INC-A", "disposition"],
        )
        .await;
        assert_integrity(
            get(&env, "crisis-incident", "INC-A").await,
            "moved to another field",
        );
        exec(
            &env,
            SET_FIELD_CT,
            Some(a_disposition),
            &["INC-A", "disposition"],
        )
        .await;
        assert!(
            get(&env, "crisis-incident", "INC-A")
                .await
                .unwrap()
                .is_some()
        );

        // Into the same field of another record.
        exec(
            &env,
            SET_FIELD_CT,
            Some(a_narrative.clone()),
            &["INC-B", "narrative"],
        )
        .await;
        assert_integrity(
            get(&env, "crisis-incident", "INC-B").await,
            "moved to another record",
        );
        exec(
            &env,
            SET_FIELD_CT,
            Some(b_narrative),
            &["INC-B", "narrative"],
        )
        .await;

        // Another record's data key pointed to: every ciphertext names its own key.
        exec(
            &env,
            "UPDATE records SET data_key_id = (SELECT data_key_id FROM records WHERE id = 'INC-A') \
             WHERE id = $1",
            None,
            &["INC-B"],
        )
        .await;
        assert_integrity(
            get(&env, "crisis-incident", "INC-B").await,
            "swapped data key",
        );

        // Another owner.
        exec(
            &env,
            "UPDATE records SET owner = 'county-mh' WHERE id = $1",
            None,
            &["INC-A"],
        )
        .await;
        assert_integrity(get(&env, "crisis-incident", "INC-A").await, "changed owner");
        exec(
            &env,
            "UPDATE records SET owner = 'metro-pd' WHERE id = $1",
            None,
            &["INC-A"],
        )
        .await;
        assert!(
            get(&env, "crisis-incident", "INC-A")
                .await
                .unwrap()
                .is_some()
        );

        // An older version's value put into the current version, or the current version
        // pointer moved back (rollback), or a field row deleted.
        let rec = incident(
            "INC-A",
            json!({"narrative": "revised", "disposition": "none"}),
            vec![],
        );
        put(&env, &rec, 2).await;
        exec(
            &env,
            "UPDATE record_fields SET ciphertext = $1 WHERE id = $2 AND field = 'narrative' AND version = 2",
            Some(a_narrative),
            &["INC-A"],
        )
        .await;
        assert_integrity(
            get(&env, "crisis-incident", "INC-A").await,
            "older version's value",
        );
        exec(
            &env,
            "UPDATE records SET current_version = 1 WHERE id = $1",
            None,
            &["INC-A"],
        )
        .await;
        assert_integrity(get(&env, "crisis-incident", "INC-A").await, "rolled back");
        exec(
            &env,
            "UPDATE records SET current_version = 2 WHERE id = $1",
            None,
            &["INC-A"],
        )
        .await;
        exec(
            &env,
            "DELETE FROM record_fields WHERE id = $1 AND version = 2 AND field = 'narrative'",
            None,
            &["INC-A"],
        )
        .await;
        assert_integrity(get(&env, "crisis-incident", "INC-A").await, "deleted field");
    }
}

#[tokio::test]
async fn lookup_by_subject_identifier_uses_the_blind_index() {
    for db in BOTH {
        let env = env(db).await;
        let p = subject("metro-pd", "P-2231");
        put(
            &env,
            &incident("INC-1", json!({"n": 1}), vec![p.clone()]),
            1,
        )
        .await;
        put(
            &env,
            &incident(
                "INC-2",
                json!({"n": 2}),
                vec![subject("county-mh", "M-1"), p.clone()],
            ),
            1,
        )
        .await;
        put(
            &env,
            &incident("INC-3", json!({"n": 3}), vec![subject("metro-pd", "P-9")]),
            1,
        )
        .await;
        let mut referral = incident("REF-1", json!({"n": 4}), vec![p.clone()]);
        referral.kind = kind("referral");
        put(&env, &referral, 1).await;

        let ids = |refs: Vec<RecordRef>| {
            refs.into_iter()
                .map(|r| format!("{}/{}", r.kind, r.id))
                .collect::<Vec<_>>()
        };
        let all = find_by_subject(&env.store, &env.keyring, &p, None)
            .await
            .unwrap();
        assert_eq!(
            ids(all),
            [
                "crisis-incident/INC-1",
                "crisis-incident/INC-2",
                "referral/REF-1"
            ]
        );
        let only = find_by_subject(&env.store, &env.keyring, &p, Some(&kind("referral")))
            .await
            .unwrap();
        assert_eq!(ids(only), ["referral/REF-1"]);
        // Same value under another system is another identifier.
        let none = find_by_subject(
            &env.store,
            &env.keyring,
            &subject("county-mh", "P-2231"),
            None,
        )
        .await
        .unwrap();
        assert!(none.is_empty());

        // Changing a record's identifiers moves it in the index.
        put(
            &env,
            &incident("INC-1", json!({"n": 1}), vec![subject("metro-pd", "P-9")]),
            2,
        )
        .await;
        let all = find_by_subject(&env.store, &env.keyring, &p, None)
            .await
            .unwrap();
        assert_eq!(ids(all), ["crisis-incident/INC-2", "referral/REF-1"]);

        // No clear-text identifier and only 32-byte indexes in the table.
        let rows: Vec<(Vec<u8>, Vec<u8>)> = fetch_all(
            &env.store,
            "SELECT blind_index, ciphertext FROM record_subjects",
        )
        .await;
        for (index, ct) in rows {
            assert_eq!(index.len(), 32);
            assert!(!contains(&ct, b"P-2231"));
        }

        // A blind index copied onto another record's identifier is caught, not followed.
        exec(
            &env,
            "UPDATE record_subjects SET blind_index = \
             (SELECT blind_index FROM record_subjects WHERE id = 'REF-1') WHERE id = $1",
            None,
            &["INC-3"],
        )
        .await;
        let err = find_by_subject(&env.store, &env.keyring, &p, None)
            .await
            .unwrap_err();
        assert!(matches!(err, RecordError::Integrity { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn rotate_and_rewrap_keep_every_record_readable() {
    for db in BOTH {
        let env = env(db).await;
        let p = subject("metro-pd", "P-77");
        let mut written = Vec::new();
        for n in 0..5 {
            let rec = incident(
                &format!("INC-{n}"),
                json!({"narrative": format!("n{n}")}),
                vec![p.clone()],
            );
            put(&env, &rec, 1).await;
            written.push(rec);
        }
        let original_key_file = std::fs::read_to_string(&env.key_file).unwrap();
        let pseudonym_key_before = keys::open(&env.key_file, &env.store)
            .await
            .unwrap()
            .subject_pseudonym_key();
        let keys_before: Vec<(String, i64, Vec<u8>)> = fetch_all(
            &env.store,
            "SELECT id, master_version, wrapped FROM data_keys ORDER BY id",
        )
        .await;
        assert_eq!(
            keys_before.len(),
            8,
            "five records, the blind-index key, the subject-pseudonym key and the log's \
             free-text key"
        );
        let fields_before: Vec<(String, String, Vec<u8>)> = fetch_all(
            &env.store,
            "SELECT id, field, ciphertext FROM record_fields ORDER BY id, field",
        )
        .await;

        let v2 = keys::rotate(&env.key_file, &env.store).await.unwrap();
        assert_eq!(v2.get(), 2);
        let keyring = keys::open(&env.key_file, &env.store).await.unwrap();
        assert_eq!(keyring.master().current(), v2);
        // Before the rewrap, old data keys still open with version 1; new ones use version 2.
        for rec in &written {
            let got = get_record(&env.store, &keyring, &rec.kind, &rec.id, None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.into_fields_unaudited(), rec.fields);
        }
        let late = incident("INC-LATE", json!({"narrative": "late"}), vec![p.clone()]);
        put_record(
            &env.store,
            &keyring,
            &late,
            &author("metro-pd", "off-17"),
            at(3),
        )
        .await
        .unwrap();
        written.push(late);

        // Version 1 cannot be retired while data keys use it.
        let err = keys::retire(&keyring, &env.store, MasterVersion::new(1).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, RetireError::InUse { count: 8, .. }), "{err}");

        let report = keys::rewrap(&keyring, &env.store).await.unwrap();
        assert_eq!((report.current, report.rewrapped), (v2, 8));
        assert_eq!(
            keys::rewrap(&keyring, &env.store).await.unwrap().rewrapped,
            0,
            "idempotent"
        );

        let keys_after: Vec<(String, i64, Vec<u8>)> = fetch_all(
            &env.store,
            "SELECT id, master_version, wrapped FROM data_keys ORDER BY id",
        )
        .await;
        for (id, version, wrapped) in &keys_before {
            let (_, v, w) = keys_after.iter().find(|(i, _, _)| i == id).unwrap();
            assert_eq!(*version, 1);
            assert_eq!(*v, 2);
            assert_ne!(w, wrapped, "data key {id} was not re-wrapped");
        }
        let fields_after: Vec<(String, String, Vec<u8>)> = fetch_all(&env.store, "SELECT id, field, ciphertext FROM record_fields WHERE id <> 'INC-LATE' ORDER BY id, field").await;
        assert_eq!(
            fields_after, fields_before,
            "field ciphertexts must not change"
        );

        // Everything reads, and lookups work, through a fresh keyring after retiring v1.
        keys::retire(&keyring, &env.store, MasterVersion::new(1).unwrap())
            .await
            .unwrap();
        let keyring = keys::open(&env.key_file, &env.store).await.unwrap();
        assert_eq!(keyring.master().versions().count(), 1);
        // The disclosure log's subject pseudonyms survive rotation and retirement.
        assert_eq!(keyring.subject_pseudonym_key(), pseudonym_key_before);
        for rec in &written {
            let got = get_record(&env.store, &keyring, &rec.kind, &rec.id, None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.into_fields_unaudited(), rec.fields);
        }
        let found = find_by_subject(&env.store, &keyring, &p, None)
            .await
            .unwrap();
        assert_eq!(found.len(), 6);

        // The old key file alone cannot open the data any more, and says what to do.
        std::fs::write(&env.key_file, &original_key_file).unwrap();
        let err = keys::open(&env.key_file, &env.store).await.unwrap_err();
        assert!(matches!(err, KeyringError::MissingVersions { .. }), "{err}");
        assert!(err.to_string().contains("version(s) 2"), "{err}");
    }
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_start_up_with_what_to_do() {
    for db in BOTH {
        let workdir = tempfile::tempdir().unwrap();
        let settings = crate::support::settings(db, workdir.path()).await;
        // First start records the key's check value.
        let app = coresponse_gateway::startup::Application::build(settings.clone())
            .await
            .unwrap();
        drop(app);
        let wrong = workdir.path().join("wrong.key");
        std::fs::write(&wrong, random_key_hex()).unwrap();
        let mut bad = settings.clone();
        bad.crypto.master_key_file = wrong;
        let err = match coresponse_gateway::startup::Application::build(bad).await {
            Ok(_) => panic!("a wrong master key was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("master key version 1"), "{err}");
        assert!(err.contains("crypto.master_key_file"), "{err}");
        assert!(err.contains("key backup"), "{err}");
        // The right key still starts.
        coresponse_gateway::startup::Application::build(settings)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn concurrent_writers_of_one_record_queue_instead_of_forking_its_history() {
    for db in BOTH {
        let env = std::sync::Arc::new(env(db).await);
        put(
            &env,
            &incident("INC-C", json!({"narrative": "start"}), vec![]),
            1,
        )
        .await;
        let mut tasks = Vec::new();
        for n in 0..6 {
            let env = env.clone();
            tasks.push(tokio::spawn(async move {
                let rec = incident("INC-C", json!({"narrative": format!("writer {n}")}), vec![]);
                put_record(
                    &env.store,
                    &env.keyring,
                    &rec,
                    &author("metro-pd", "off-17"),
                    at(2),
                )
                .await
            }));
        }
        let mut written = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => written += 1,
                Err(RecordError::Conflict { .. }) => {}
                Err(e) => panic!("{db:?}: unexpected error {e:?}"),
            }
        }
        assert!(written >= 1);
        let history = record_history(&env, &kind("crisis-incident"), &rid("INC-C"))
            .await
            .unwrap();
        assert_eq!(history.len(), written + 1, "{db:?}");
        let versions: Vec<i64> = history.iter().map(|h| h.version).collect();
        assert_eq!(
            versions,
            (1..=i64::try_from(written).unwrap() + 1).collect::<Vec<_>>()
        );
        assert!(
            get(&env, "crisis-incident", "INC-C")
                .await
                .unwrap()
                .is_some()
        );
    }
}

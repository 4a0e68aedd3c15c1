//! End to end over the pure layers: dev key material, `PolicySet::load` with keys, `decide`,
//! then `redaction::apply`; the encrypted field is opened by an independent JOSE
//! implementation (josekit, on OpenSSL) with the recipient's private key.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::collections::BTreeMap;
use std::path::Path;

use coresponse_gateway::consent::SubjectRef;
use coresponse_gateway::devinit::{self, InitOptions};
use coresponse_gateway::domain::{CertFingerprint, PartnerId, Principal, Purpose};
use coresponse_gateway::policy::{PolicySet, Request, decide};
use coresponse_gateway::redaction::{self, PART2_NOTICE, Record, RedactionKeys};
use serde_json::json;

struct Env {
    _dir: tempfile::TempDir,
    /// Where `init` writes each partner's own material (its private encryption key).
    dir: std::path::PathBuf,
    set: PolicySet,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    devinit::init(&InitOptions {
        dir: dir.path().to_owned(),
        policy_dir: policies.clone(),
        listen: "127.0.0.1:0".into(),
        force: false,
    })
    .unwrap();
    let keys = dir.path().join("partner-keys");
    let set =
        PolicySet::load_at(&policies, &keys, "2026-03-01T00:00:00Z".parse().unwrap()).unwrap();
    Env {
        dir: dir.path().to_owned(),
        _dir: dir,
        set,
    }
}

fn principal(set: &PolicySet, partner: &str, role: &str) -> Principal {
    let partner: PartnerId = partner.parse().unwrap();
    Principal {
        partner_kind: set.partner_kind(&partner).unwrap(),
        partner,
        user: "u-1".parse().unwrap(),
        roles: [role.parse().unwrap()].into(),
        cert_fingerprint: CertFingerprint::of_der(b"x"),
    }
}

fn referral() -> Record {
    Record {
        kind: "referral".into(),
        id: "ref-1".into(),
        fields: BTreeMap::from([
            ("referral_id".into(), json!("ref-1")),
            ("referring_officer".into(), json!("badge-4411")),
            ("subject_name".into(), json!("Jordan Example")),
            ("subject_phone".into(), json!("555-867-5309")),
            ("status".into(), json!("ASSIGNED")),
            ("reason".into(), json!("welfare concern")),
        ]),
    }
}

#[test]
fn an_encrypted_field_opens_with_an_independent_jose_library() {
    let env = env();
    let p = principal(&env.set, "county-mh", "intake-coordinator");
    let purpose: Purpose = "referral-followup".parse().unwrap();
    let subject: SubjectRef = "subj-1".parse().unwrap();
    let holder: PartnerId = "metro-pd".parse().unwrap();
    let now = "2026-03-01T12:00:00Z".parse().unwrap();
    let req = Request {
        principal: &p,
        purpose: &purpose,
        kind: "referral",
        holder: &holder,
        subject: &subject,
        emergency: None,
    };
    let decision = decide(&req, &[], &env.set, now);
    let permit = decision.permit().expect("permit");
    let key = env
        .set
        .partners
        .get(&p.partner)
        .unwrap()
        .encryption
        .as_ref()
        .unwrap();
    let secret = [7u8; 32];
    let out = redaction::apply(
        permit,
        &referral(),
        &RedactionKeys {
            pseudonym_secret: &secret,
            recipient_key: Some(key),
        },
    )
    .unwrap();
    assert_eq!(out.decision_id, decision.id);
    assert_eq!(out.fields["status"], json!("ASSIGNED"));
    let officer = out.fields["referring_officer"].as_str().unwrap();
    assert!(officer.starts_with("ps_") && !officer.contains("4411"));
    assert!(out.notices.is_empty(), "no Part 2 field, no notice");

    let jwe = out.fields["subject_phone"].as_str().unwrap();
    assert!(!jwe.contains("867"));
    let private = std::fs::read(env.dir.join("county-mh-encryption-key.jwk.json")).unwrap();
    let jwk = josekit::jwk::Jwk::from_bytes(&private).unwrap();
    let decrypter = josekit::jwe::ECDH_ES.decrypter_from_jwk(&jwk).unwrap();
    let (plain, header) = josekit::jwe::deserialize_compact(jwe, &decrypter).unwrap();
    assert_eq!(plain, br#""555-867-5309""#);
    assert_eq!(header.content_encryption(), Some("A256GCM"));

    // Another partner's key cannot open it.
    let other = std::fs::read(env.dir.join("metro-pd-encryption-key.jwk.json")).unwrap();
    let other = josekit::jwe::ECDH_ES
        .decrypter_from_jwk(&josekit::jwk::Jwk::from_bytes(&other).unwrap())
        .unwrap();
    assert!(josekit::jwe::deserialize_compact(jwe, &other).is_err());

    // A key of another partner is refused by the redaction step.
    let wrong = env
        .set
        .partners
        .get(&holder)
        .unwrap()
        .encryption
        .as_ref()
        .unwrap();
    assert!(
        redaction::apply(
            permit,
            &referral(),
            &RedactionKeys {
                pseudonym_secret: &secret,
                recipient_key: Some(wrong)
            }
        )
        .is_err()
    );
}

#[test]
fn pseudonyms_differ_across_recipients_and_a_kind_mismatch_fails_closed() {
    let env = env();
    let subject: SubjectRef = "subj-1".parse().unwrap();
    let holder: PartnerId = "metro-pd".parse().unwrap();
    let now = "2026-03-01T12:00:00Z".parse().unwrap();
    let secret = [7u8; 32];
    let mut seen = Vec::new();
    for (partner, role, purpose) in [
        ("county-mh", "intake-coordinator", "referral-followup"),
        ("oversight", "compliance", "audit"),
    ] {
        let p = principal(&env.set, partner, role);
        let purpose: Purpose = purpose.parse().unwrap();
        let req = Request {
            principal: &p,
            purpose: &purpose,
            kind: "referral",
            holder: &holder,
            subject: &subject,
            emergency: None,
        };
        let d = decide(&req, &[], &env.set, now);
        let permit = d.permit().unwrap();
        let key = env
            .set
            .partners
            .get(&p.partner)
            .unwrap()
            .encryption
            .as_ref();
        let out = redaction::apply(
            permit,
            &referral(),
            &RedactionKeys {
                pseudonym_secret: &secret,
                recipient_key: key,
            },
        )
        .unwrap();
        seen.push(out.fields["referring_officer"].clone());
        let mut other = referral();
        other.kind = "safety-plan".into();
        assert!(
            redaction::apply(
                permit,
                &other,
                &RedactionKeys {
                    pseudonym_secret: &secret,
                    recipient_key: key
                }
            )
            .is_err()
        );
    }
    assert_ne!(seen[0], seen[1]);
    assert!(!PART2_NOTICE.is_empty());
}

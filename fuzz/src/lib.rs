//! Fuzz harness: one function per target, each taking arbitrary bytes.
//!
//! Security role: everything here is input a partner or an operator controls (policy files,
//! request bodies, consent directives, record values) or that an auditor must be able to parse
//! back (the canonical log encoding). A panic on any of it is a bug: in the gateway it would
//! abort a request (or, at start-up or on `SIGHUP`, the policy load) instead of answering with
//! a clear error. The functions also assert properties the library promises; a failed
//! assertion is a bug too.
//!
//! The `fuzz_targets/` binaries call these functions under libFuzzer (`cargo +nightly fuzz run
//! TARGET`). The same file is compiled into the stable test suite (`tests/fuzz_inputs.rs`),
//! which replays every seed under `fuzz/seeds/` and every input that once failed under
//! `fuzz/regressions/`, so a fixed bug stays fixed without a nightly toolchain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone as _, Utc};
use coresponse_gateway::api::{
    NewReferralBody, RecordBody, ReviewBody, RevokeBody, SuspensionBody, TransitionBody,
    check_depth,
};
use coresponse_gateway::audit::{
    Anchor, ChainHash, ENTRY_DOMAIN, Entry, EntryFormat, EntryKind, FieldDisclosure, LegalBasis,
    NewEntry, Outcome, RecordRef, SubjectPseudonym, encode_into, entry_hash, verify_entries,
};
use coresponse_gateway::consent::directive::{self, ConsentDirective};
use coresponse_gateway::consent::{Consent, SubjectRef};
use coresponse_gateway::domain::{
    CertFingerprint, Code, Generalization, MaskKeep, PartnerId, PartnerKind, Principal, Purpose,
    RecordId, Role, SubjectIdentifier,
};
use coresponse_gateway::emergency::ReviewOutcome;
use coresponse_gateway::error::ApiError;
use coresponse_gateway::policy::{
    EmergencyAssertion, PURPOSES, PolicyError, PolicySet, Request, Transform, decide, schema,
};
use coresponse_gateway::redaction::{self, RecipientKey, Record, RedactionKeys, transforms};
use coresponse_gateway::referral::{Actor, ReferralState, transition};
use coresponse_gateway::service;
use serde_json::{Value, json};

/// The time every target decides and validates at: inside the demo MOU's term.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The repository's `policies/` directory (this file is compiled from `fuzz/` and from the
/// repository root).
fn policies_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("policies").is_dir() {
        here.join("policies")
    } else {
        here.join("../policies")
    }
}

/// The reviewed demo policy set, loaded once.
fn demo_policy() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| match PolicySet::load_unkeyed(&policies_dir(), now()) {
        Ok((set, _)) => set,
        Err(e) => panic!("the demo policy set must load: {e}"),
    })
}

/// Reads structured values from fuzz bytes; reads past the end give zeros and empty strings.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| (acc << 8) | u64::from(self.byte()))
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    /// A string of up to 255 bytes (invalid UTF-8 is replaced).
    fn text(&mut self) -> String {
        let n = usize::from(self.byte());
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    /// `None` when the next byte is even.
    fn opt_text(&mut self) -> Option<String> {
        (self.byte() % 2 == 1).then(|| self.text())
    }

    fn rest(&mut self) -> &[u8] {
        self.take(usize::MAX)
    }
}

// ---------------------------------------------------------------------------------------------
// Policy loader
// ---------------------------------------------------------------------------------------------

/// Splits `text` into policy files: a line `=== NAME` starts the file `NAME`
/// (`partners.toml`, `kinds/X.toml` or `mous/X.toml`); text before the first such line is the
/// partner registry. Names are reduced to safe file names.
pub fn policy_files(text: &str) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut name = PathBuf::from("partners.toml");
    let mut body = String::new();
    for line in text.split_inclusive('\n') {
        if let Some(next) = line.strip_prefix("=== ") {
            files.push((name, std::mem::take(&mut body)));
            name = safe_policy_path(next.trim());
        } else {
            body.push_str(line);
        }
    }
    files.push((name, body));
    files
}

fn safe_policy_path(raw: &str) -> PathBuf {
    let (dir, file) = match raw.split_once('/') {
        Some(("kinds", f)) => ("kinds", f),
        Some(("mous", f)) => ("mous", f),
        _ => return PathBuf::from("partners.toml"),
    };
    let mut clean: String = file
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if clean.trim_matches('.').is_empty() {
        clean = "x.toml".to_owned();
    }
    Path::new(dir).join(clean)
}

/// Writes `files` into `dir` (emptied first).
fn write_policy_dir(dir: &Path, files: &[(PathBuf, String)]) -> std::io::Result<()> {
    for sub in ["kinds", "mous"] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
        std::fs::create_dir_all(&p)?;
    }
    let partners = dir.join("partners.toml");
    if partners.exists() {
        std::fs::remove_file(&partners)?;
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// Target `policy_load`: a policy directory built from the input (see [`policy_files`]) is
/// validated and loaded as at start-up; the report is rendered as `policy check` prints it,
/// and a set that loads is asked for a decision on every partner, kind and purpose (with a
/// consent covering everything, and with an emergency basis).
pub fn policy_load(data: &[u8]) {
    thread_local! {
        static DIR: Option<tempfile::TempDir> =
            tempfile::Builder::new().prefix("fuzz-policy-").tempdir().ok();
    }
    let text = String::from_utf8_lossy(data);
    let files = policy_files(&text);
    DIR.with(|dir| {
        let Some(dir) = dir else { return };
        if write_policy_dir(dir.path(), &files).is_err() {
            return;
        }
        let (set, report) = match PolicySet::load_unkeyed(dir.path(), now()) {
            Ok((set, report)) => (Some(set), report),
            Err(PolicyError::Invalid(report)) => (None, report),
            Err(_) => return,
        };
        let rendered = report.render();
        let plain = report.to_string();
        assert_eq!(report.has_errors(), set.is_none());
        if report.has_errors() {
            assert!(!rendered.is_empty() && !plain.is_empty());
        }
        if let Some(set) = set {
            decide_everything(&set);
        }
    });
}

/// A consent of `subject` covering every partner, purpose, kind and category of `set`.
fn blanket_consent(set: &PolicySet, subject: &str) -> Option<Consent> {
    let partners: Vec<String> = set.partners.iter().map(|p| p.id.to_string()).collect();
    let purposes: Vec<&str> = PURPOSES.iter().map(|(p, _)| *p).collect();
    let kinds: Vec<&String> = set.kinds.keys().collect();
    serde_json::from_value(json!({
        "id": "fuzz-consent",
        "subject": subject,
        "disclosers": partners,
        "recipients": partners,
        "purposes": purposes,
        "scope": {
            "kinds": kinds,
            "categories": ["identity", "contact", "incident", "safety", "clinical", "sud",
                           "psychotherapy-notes", "cji"],
        },
        "valid_from": "2020-01-01T00:00:00Z",
        "expiry_event": "end of the fuzz run",
    }))
    .ok()
}

/// Every decision a set can be asked for (bounded), with and without a consent and an
/// emergency basis. Returns the decisions.
fn decide_everything(set: &PolicySet) -> Vec<coresponse_gateway::policy::Decision> {
    let mut out = Vec::new();
    let Ok(subject) = "fuzz-subject".parse::<SubjectRef>() else {
        return out;
    };
    let Ok(user) = "fuzz-user".parse() else {
        return out;
    };
    let consents: Vec<Consent> = blanket_consent(set, subject.as_str()).into_iter().collect();
    let purposes: Vec<Purpose> = PURPOSES
        .iter()
        .filter_map(|(p, _)| p.parse().ok())
        .collect();
    let emergency = EmergencyAssertion {
        basis: "actual-knowledge".into(),
        threat: "a stated threat".into(),
    };
    for partner in set.partners.iter().take(8) {
        let mut roles: BTreeSet<Role> = partner.roles.iter().cloned().collect();
        for m in &set.mous {
            for r in &m.rules {
                roles.extend(r.roles.iter().cloned());
            }
        }
        let principal = Principal {
            partner: partner.id.clone(),
            partner_kind: partner.kind,
            user: Clone::clone(&user),
            roles,
            cert_fingerprint: CertFingerprint::of_der(b"fuzz"),
        };
        for (kind, def) in set.kinds.iter().take(8) {
            let Some(holder) = set.partners.iter().find(|p| p.kind == def.owner) else {
                continue;
            };
            for purpose in &purposes {
                for with_consent in [false, true] {
                    let is_emergency = purpose.as_str() == "emergency";
                    let req = Request {
                        principal: &principal,
                        purpose,
                        kind,
                        holder: &holder.id,
                        subject: &subject,
                        emergency: is_emergency.then_some(&emergency),
                    };
                    let cs: &[Consent] = if with_consent { &consents } else { &[] };
                    let d = decide(&req, cs, set, now());
                    if let Some(p) = d.permit() {
                        assert_eq!(p.kind(), kind.as_str());
                        assert_eq!(p.recipient(), &partner.id);
                    }
                    out.push(d);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JSON bodies
// ---------------------------------------------------------------------------------------------

/// The deepest JSON a body may nest (`server.max_json_depth`'s default).
const MAX_DEPTH: usize = 16;

/// An API error must render as the client would see it: a status and a JSON body with a code.
fn renders(e: ApiError) {
    use actix_web::ResponseError as _;
    let status = e.status_code();
    assert!(
        status.is_client_error(),
        "bad input must be a 4xx, got {status}: {e:?}"
    );
    let _ = e.error_response();
}

fn service_error(e: service::Error) {
    renders(ApiError::from(e));
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Some(v),
        Err(e) => {
            renders(ApiError::bad_request(
                Code::InvalidJson,
                format!("invalid JSON body: {e}"),
            ));
            None
        }
    }
}

/// Target `json_bodies`: the first byte picks a route's body type, the rest is the body. It
/// goes through what the gateway does with a body before it touches the database: the depth
/// bound, deserialization into the route's type, and the checks the service applies (subject
/// identifiers, schema checks for every kind and writer, referral states and transitions,
/// review outcomes, consent validation, revocations, suspensions). Every refusal must render
/// as a 4xx answer.
pub fn json_bodies(data: &[u8]) {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    if let Err(e) = check_depth(body, MAX_DEPTH) {
        renders(e);
        return;
    }
    let policy = demo_policy();
    match route % 7 {
        0 => record_body(body, policy),
        1 => referral_body(body, policy),
        2 => transition_body(body),
        3 => review_body(body),
        4 => consent_body(body, policy, now()),
        5 => revoke_body(body),
        _ => suspension_body(body),
    }
}

const WRITERS: [PartnerKind; 3] = [
    PartnerKind::Police,
    PartnerKind::MentalHealth,
    PartnerKind::Compliance,
];

fn record_body(body: &[u8], policy: &PolicySet) {
    let Some(b) = parse::<RecordBody>(body) else {
        return;
    };
    if let Err(e) = service::records::check_subjects(&b.subjects) {
        service_error(e);
    }
    for kind in policy.kinds.values() {
        for writer in WRITERS {
            match schema::check_write(kind, writer, &b.fields, None) {
                Ok(written) => {
                    for (name, v) in &written {
                        let def = kind.field(name);
                        assert!(def.is_some(), "check_write kept the unknown field `{name}`");
                        if let Some(def) = def {
                            assert!(schema::check_value(def, v).is_ok() || v.is_null());
                        }
                    }
                    // The same write again, on top of what it wrote.
                    let again = schema::check_write(kind, writer, &b.fields, Some(&written));
                    assert!(again.is_ok(), "a write that fit once must fit again");
                }
                Err(problems) => service_error(service::records::problems_error(problems)),
            }
        }
    }
}

fn referral_body(body: &[u8], policy: &PolicySet) {
    let Some(b) = parse::<NewReferralBody>(body) else {
        return;
    };
    if let Err(e) = service::records::check_subjects(&b.subjects) {
        service_error(e);
    }
    let _ = b.receiving_agency.parse::<PartnerId>();
    let _ = b.incident_id.parse::<RecordId>();
    // The fields the service writes from the body, checked against the referral kind.
    let Some(kind) = policy.kinds.get("referral") else {
        return;
    };
    let mut fields = serde_json::Map::new();
    fields.insert("reason".into(), json!(b.reason));
    fields.insert("urgency".into(), json!(b.urgency));
    for (k, v) in [
        ("consent_reference", b.consent_reference),
        ("subject_name", b.subject_name),
        ("subject_phone", b.subject_phone),
    ] {
        if let Some(v) = v {
            fields.insert(k.into(), json!(v));
        }
    }
    if let Err(problems) = schema::check_write(kind, PartnerKind::Police, &fields, None) {
        service_error(service::records::problems_error(problems));
    }
}

const STATES: [&str; 10] = [
    "SUBMITTED",
    "RECEIVED",
    "ASSIGNED",
    "CONTACT_ATTEMPTED",
    "ENGAGED",
    "DECLINED",
    "UNABLE_TO_CONTACT",
    "CLOSED",
    "WITHDRAWN",
    "REJECTED",
];

fn transition_body(body: &[u8]) {
    let Some(b) = parse::<TransitionBody>(body) else {
        return;
    };
    let Some(to) = ReferralState::parse(&b.to) else {
        return;
    };
    for from in STATES.iter().filter_map(|s| ReferralState::parse(s)) {
        for actor in [Actor::Receiver, Actor::Referrer, Actor::Other] {
            if let Err(e) = transition(from, to, actor) {
                assert!(!e.allowed.contains(&to));
                let _ = e.to_string();
            }
        }
    }
    let _ = (b.note, b.clinician_contact);
}

fn review_body(body: &[u8]) {
    let Some(b) = parse::<ReviewBody>(body) else {
        return;
    };
    if let Some(o) = ReviewOutcome::parse(&b.outcome) {
        assert_eq!(ReviewOutcome::parse(o.as_str()), Some(o));
    }
    let _ = b.note.trim().chars().count();
}

fn consent_body(body: &[u8], policy: &PolicySet, at: DateTime<Utc>) {
    let Some(d) = parse::<ConsentDirective>(body) else {
        return;
    };
    check_consent(&d, policy, at);
}

/// Validates a directive; a valid one must validate again to itself (validation is
/// idempotent), survive a JSON round trip, and turn into a decision input.
fn check_consent(d: &ConsentDirective, policy: &PolicySet, at: DateTime<Utc>) {
    match directive::validate(d, policy, at) {
        Ok(valid) => {
            let again = directive::validate(&valid.directive, policy, at);
            match again {
                Ok(v2) => assert!(v2.directive == valid.directive && v2.part2 == valid.part2),
                Err(r) => panic!("a validated consent fails validation again: {r:?}"),
            }
            if let Ok(text) = serde_json::to_vec(&valid.directive) {
                let back: Result<ConsentDirective, _> = serde_json::from_slice(&text);
                assert!(
                    back.as_ref().is_ok_and(|b| *b == valid.directive),
                    "a validated consent must survive a JSON round trip: {back:?}"
                );
            }
            assert_eq!(
                valid.part2,
                directive::covers_part2(&valid.directive.scope, policy)
            );
            if let Ok(subject) = "fuzz-subject".parse::<SubjectRef>() {
                let c = valid.directive.to_consent("fuzz-consent", &subject, None);
                let _ = c.is_active(at);
            }
        }
        Err(rejection) => service_error(service::consents::rejection(&rejection)),
    }
}

fn revoke_body(body: &[u8]) {
    let Some(b) = parse::<RevokeBody>(body) else {
        return;
    };
    let req = service::consents::RevokeRequest {
        received_at: b.received_at,
        received_how: b.received_how,
        note: b.note,
    };
    if let Err(e) = service::consents::revocation(req, now()) {
        service_error(e);
    }
}

fn suspension_body(body: &[u8]) {
    let Some(b) = parse::<SuspensionBody>(body) else {
        return;
    };
    if let (Some(sys), Some(val)) = (&b.subject_system, &b.subject_value) {
        let _ = SubjectIdentifier::new(sys.as_str(), val.as_str());
    }
    let _ = DateTime::parse_from_rfc3339(&b.until);
    let _ = (b.recipient.parse::<PartnerId>(), b.statement.len());
}

// ---------------------------------------------------------------------------------------------
// Consent validation
// ---------------------------------------------------------------------------------------------

/// Target `consent_validate`: the first 8 bytes pick the validation time (any second from 2000
/// to 2100), the rest is a `POST /v1/consents` body; see [`check_consent`].
pub fn consent_validate(data: &[u8]) {
    let mut b = Bytes(data);
    const SPAN: u64 = 100 * 366 * 24 * 3600;
    let offset = i64::try_from(b.u64() % SPAN).unwrap_or(0);
    let at = Utc
        .timestamp_opt(946_684_800 + offset, 0)
        .single()
        .unwrap_or_else(now);
    let body = b.rest();
    if check_depth(body, MAX_DEPTH).is_err() {
        return;
    }
    if let Ok(d) = serde_json::from_slice::<ConsentDirective>(body) {
        check_consent(&d, demo_policy(), at);
    }
}

// ---------------------------------------------------------------------------------------------
// FHIR resources
// ---------------------------------------------------------------------------------------------

/// A FHIR `Consent` or `ServiceRequest` as a partner posts it under `/fhir/r4` (the first byte
/// picks which): the mapping never panics; a refusal names each problem's element and says
/// what to fix; a mapped consent goes through the same validation as `/v1` (with its
/// properties, see `consent_validate`).
pub fn fhir_resources(data: &[u8]) {
    let mut b = Bytes(data);
    let consent = b.byte() % 2 == 0;
    let body = b.rest();
    if check_depth(body, MAX_DEPTH).is_err() {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let problems = if consent {
        match coresponse_gateway::fhir::consent::parse(value) {
            Ok(parsed) => {
                check_consent(&parsed.directive, demo_policy(), now());
                return;
            }
            Err(p) => p,
        }
    } else {
        match coresponse_gateway::fhir::referral::parse(value) {
            Ok(_) => return,
            Err(p) => p,
        }
    };
    assert!(!problems.is_empty(), "a refusal names at least one problem");
    for p in &problems {
        assert!(!p.field.is_empty() && !p.code.is_empty() && !p.message.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical log encoding
// ---------------------------------------------------------------------------------------------

fn new_entry(b: &mut Bytes<'_>) -> NewEntry {
    let kinds = EntryKind::ALL;
    let kind = kinds
        .get(usize::from(b.byte()) % kinds.len())
        .copied()
        .unwrap_or(EntryKind::Disclosure);
    // Any microsecond chrono can represent.
    let micros = i64::from_be_bytes(b.u64().to_be_bytes());
    let at = DateTime::from_timestamp_micros(micros)
        .or_else(|| DateTime::from_timestamp_micros(micros % 1_000_000_000_000_000))
        .unwrap_or_default();
    let outcome = if b.byte().is_multiple_of(2) {
        Outcome::Permit
    } else {
        Outcome::deny(b.text())
    };
    let mut e = NewEntry::new(kind, at, outcome);
    e.request_id = b.opt_text();
    e.decision_id = b.opt_text();
    e.policy_hash = b.opt_text();
    e.recipient_partner = b.opt_text();
    e.recipient_user = b.opt_text();
    e.recipient_role = b.opt_text();
    e.purpose = b.opt_text();
    e.basis = match b.byte() % 4 {
        0 => None,
        1 => Some(LegalBasis::Mou {
            mou_id: b.text(),
            rule: b.text(),
        }),
        2 => Some(LegalBasis::Consent {
            consent_id: b.text(),
        }),
        _ => Some(LegalBasis::Emergency {
            stated_basis: b.text(),
        }),
    };
    e.justification = b.opt_text();
    e.subject = if b.byte() % 2 == 1 {
        SubjectPseudonym::from_hex(&hex32(b.take(32)))
    } else {
        None
    };
    e.record = (b.byte() % 2 == 1).then(|| RecordRef {
        kind: b.text(),
        id: b.text(),
    });
    let n = usize::from(b.byte() % 8);
    e.fields_disclosed = (0..n)
        .map(|_| FieldDisclosure::new(b.text(), b.text()))
        .collect();
    e.fields_withheld = u32::try_from(b.u64() & 0xffff_ffff).unwrap_or(0);
    e.source_addr = b.opt_text();
    e.cert_sha256 = b.opt_text();
    e.detail = b.opt_text();
    e
}

fn hex32(bytes: &[u8]) -> String {
    let mut full = [0u8; 32];
    for (d, s) in full.iter_mut().zip(bytes) {
        *d = *s;
    }
    full.iter().map(|b| format!("{b:02x}")).collect()
}

/// An independent parser of the canonical encoding, written from the table in the `audit`
/// module documentation (as an auditor re-implementing verification would): returns the
/// sequence number, the previous hash and the entry, or why the bytes are not an encoding.
pub fn parse_canonical(bytes: &[u8]) -> Result<(u64, ChainHash, NewEntry), String> {
    struct P<'a>(&'a [u8]);
    impl<'a> P<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err(format!(
                    "truncated: wanted {n} bytes, {} left",
                    self.0.len()
                ));
            }
            let (h, r) = self.0.split_at(n);
            self.0 = r;
            Ok(h)
        }
        fn byte(&mut self) -> Result<u8, String> {
            Ok(self.take(1)?.first().copied().unwrap_or(0))
        }
        fn u32(&mut self) -> Result<u32, String> {
            let b = self.take(4)?;
            Ok(b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)))
        }
        fn u64(&mut self) -> Result<u64, String> {
            let b = self.take(8)?;
            Ok(b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
        }
        fn str(&mut self) -> Result<String, String> {
            let n = usize::try_from(self.u32()?).map_err(|e| e.to_string())?;
            String::from_utf8(self.take(n)?.to_vec()).map_err(|e| e.to_string())
        }
        fn opt(&mut self) -> Result<Option<String>, String> {
            match self.byte()? {
                0 => Ok(None),
                1 => Ok(Some(self.str()?)),
                t => Err(format!("opt-str tag {t}")),
            }
        }
    }
    let mut p = P(bytes);
    if p.take(ENTRY_DOMAIN.len())? != ENTRY_DOMAIN {
        return Err("wrong domain".into());
    }
    let mut prev = [0u8; 32];
    prev.copy_from_slice(p.take(32)?);
    let seq = p.u64()?;
    let micros = i64::from_be_bytes(p.u64()?.to_be_bytes());
    let at = DateTime::from_timestamp_micros(micros).ok_or("time out of range")?;
    let kind: EntryKind = p.str()?.parse()?;
    let request_id = p.opt()?;
    let decision_id = p.opt()?;
    let policy_hash = p.opt()?;
    let recipient_partner = p.opt()?;
    let recipient_user = p.opt()?;
    let recipient_role = p.opt()?;
    let purpose = p.opt()?;
    let basis = match p.byte()? {
        0 => None,
        1 => Some(LegalBasis::Mou {
            mou_id: p.str()?,
            rule: p.str()?,
        }),
        2 => Some(LegalBasis::Consent {
            consent_id: p.str()?,
        }),
        3 => Some(LegalBasis::Emergency {
            stated_basis: p.str()?,
        }),
        t => return Err(format!("basis tag {t}")),
    };
    let justification = p.opt()?;
    let subject = match p.byte()? {
        0 => None,
        1 => Some(SubjectPseudonym::from_hex(&hex32(p.take(32)?)).ok_or("pseudonym")?),
        t => return Err(format!("subject tag {t}")),
    };
    let record = match p.byte()? {
        0 => None,
        1 => Some(RecordRef {
            kind: p.str()?,
            id: p.str()?,
        }),
        t => return Err(format!("record tag {t}")),
    };
    let n = p.u32()?;
    let mut fields_disclosed = Vec::new();
    for _ in 0..n {
        fields_disclosed.push(FieldDisclosure::new(p.str()?, p.str()?));
    }
    let fields_withheld = p.u32()?;
    let outcome = match p.byte()? {
        0 => Outcome::Permit,
        1 => Outcome::deny(p.str()?),
        t => return Err(format!("outcome tag {t}")),
    };
    let source_addr = p.opt()?;
    let cert_sha256 = p.opt()?;
    let detail = p.opt()?;
    if !p.0.is_empty() {
        return Err(format!("{} bytes after the entry", p.0.len()));
    }
    let mut e = NewEntry::new(kind, at, outcome);
    e.request_id = request_id;
    e.decision_id = decision_id;
    e.policy_hash = policy_hash;
    e.recipient_partner = recipient_partner;
    e.recipient_user = recipient_user;
    e.recipient_role = recipient_role;
    e.purpose = purpose;
    e.basis = basis;
    e.justification = justification;
    e.subject = subject;
    e.record = record;
    e.fields_disclosed = fields_disclosed;
    e.fields_withheld = fields_withheld;
    e.source_addr = source_addr;
    e.cert_sha256 = cert_sha256;
    e.detail = detail;
    Ok((seq, ChainHash(prev), e))
}

/// Target `canonical_log`: one to three entries built from the input are encoded; each
/// encoding must parse back, with the documented grammar, to exactly the entry (so no two
/// entries share an encoding, and so a hash); the entries chained after an anchor must verify,
/// and changing any one of them must be caught.
pub fn canonical_log(data: &[u8]) {
    let mut b = Bytes(data);
    let n = 1 + usize::from(b.byte() % 3);
    let anchor = Anchor {
        seq: b.u64() >> 2,
        hash: ChainHash({
            let mut h = [0u8; 32];
            for (d, s) in h.iter_mut().zip(b.take(32)) {
                *d = *s;
            }
            h
        }),
    };
    let mut entries: Vec<Entry> = Vec::new();
    let mut prev = anchor.hash;
    let mut buf = Vec::new();
    for i in 0..n {
        let e = new_entry(&mut b);
        let _ = e.validate();
        let seq = anchor.seq + 1 + i as u64;
        encode_into(&mut buf, seq, &prev, &e);
        match parse_canonical(&buf) {
            Ok((s, p, back)) => {
                assert_eq!((s, p), (seq, prev), "sequence or previous hash changed");
                assert_eq!(back, e, "the encoding does not parse back to the entry");
            }
            Err(why) => panic!("the canonical encoding does not parse: {why}"),
        }
        let hash = entry_hash(seq, &prev, &e);
        entries.push(Entry {
            seq,
            // The clear-text encoding of entries written before free text was sealed; the
            // sealed (v2) encoding is exercised by the audit module's own tests.
            format: EntryFormat::V1,
            sealed: None,
            data: e,
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    let head = entries.last().map(|e| (e.seq, e.hash));
    let ok = verify_entries(anchor, &entries, head);
    assert!(
        ok.failure.is_none(),
        "an honest chain fails verification: {ok:?}"
    );
    // Change one entry (which one and how from the input): verification must catch it.
    let victim = usize::from(b.byte()) % entries.len();
    if let Some(e) = entries.get_mut(victim) {
        match b.byte() % 3 {
            0 => e.data.fields_withheld = e.data.fields_withheld.wrapping_add(1),
            1 => e.data.at += chrono::Duration::microseconds(1),
            _ => e.data.detail = Some(format!("{}x", e.data.detail.clone().unwrap_or_default())),
        }
    }
    let bad = verify_entries(anchor, &entries, head);
    assert!(bad.failure.is_some(), "a changed entry was not caught");
}

// ---------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------

/// Permits the demo policy set gives (with and without consent, and for emergencies), and
/// each recipient's field-encryption key, computed once.
fn permits() -> &'static (Vec<coresponse_gateway::policy::Decision>, Vec<RecipientKey>) {
    static P: OnceLock<(Vec<coresponse_gateway::policy::Decision>, Vec<RecipientKey>)> =
        OnceLock::new();
    P.get_or_init(|| {
        let set = demo_policy();
        let decisions: Vec<_> = decide_everything(set)
            .into_iter()
            .filter(|d| d.is_permit())
            .collect();
        let keys = set
            .partners
            .iter()
            .filter_map(|p| recipient_key(&p.id))
            .collect();
        (decisions, keys)
    })
}

fn recipient_key(partner: &PartnerId) -> Option<RecipientKey> {
    let secret = p256::SecretKey::from_slice(&[0x42; 32]).ok()?;
    let jwk = secret.public_key().to_jwk_string();
    RecipientKey::from_jwk(partner.clone(), &jwk).ok()
}

/// A JSON value from fuzz bytes: strings, numbers, booleans, nulls, addresses and arrays.
fn value(b: &mut Bytes<'_>) -> Value {
    match b.byte() % 8 {
        0 => Value::Null,
        1 => json!(b.byte().is_multiple_of(2)),
        2 => json!(i64::from_be_bytes(b.u64().to_be_bytes())),
        3 => json!(f64::from_bits(b.u64())),
        4 => json!({"street": b.text(), "city": b.text(), "state": b.text(), "zip": b.text()}),
        5 => json!([b.text(), b.text()]),
        6 => json!(i64::from(b.byte()) - 20),
        _ => json!(b.text()),
    }
}

/// Target `redaction`: the transforms on values from the input (mask, generalize to year,
/// month, age band, city or ZIP3, pseudonymize), then `redaction::apply` with every permit
/// the demo policy set gives, on a record of values from the input. What leaves must be
/// exactly the plan: no field outside it, each revealed value unchanged, each masked one the
/// same length.
pub fn redaction(data: &[u8]) {
    let mut b = Bytes(data);
    // The transforms one by one.
    let s = b.text();
    let keep = if b.byte().is_multiple_of(2) {
        MaskKeep::First
    } else {
        MaskKeep::Last
    };
    let chars = b.byte();
    let masked = transforms::mask(&s, keep, chars);
    assert_eq!(masked.chars().count(), s.chars().count());
    let shown = masked.chars().filter(|c| *c != '*').count();
    assert!(shown <= usize::from(chars) && shown < s.chars().count().max(1));
    for to in [
        Generalization::Year,
        Generalization::Month,
        Generalization::AgeBand,
        Generalization::City,
        Generalization::Zip3,
    ] {
        let _ = transforms::generalize_date(&s, to);
        let _ = transforms::generalize_address(&value(&mut b), to);
    }
    let _ = transforms::age_band(i64::from_be_bytes(b.u64().to_be_bytes()));
    if let Ok(z) = transforms::zip3(&s) {
        assert_eq!(z.len(), 3);
    }
    let v = value(&mut b);
    if let Ok(p) = "county-mh".parse::<PartnerId>() {
        let secret = [7u8; 32];
        let a = transforms::pseudonymize(&secret, &p, &v);
        assert_eq!(a, transforms::pseudonymize(&secret, &p, &v));
    }

    // A whole record through a permit.
    let (decisions, keys) = permits();
    if decisions.is_empty() {
        return;
    }
    let which = usize::from(b.byte()) % decisions.len();
    let Some(permit) = decisions.get(which).and_then(|d| d.permit()) else {
        return;
    };
    let Some(kind) = demo_policy().kinds.get(permit.kind()) else {
        return;
    };
    let mut fields = BTreeMap::new();
    for f in &kind.fields {
        if !b.byte().is_multiple_of(4) {
            fields.insert(f.name.clone(), value(&mut b));
        }
    }
    let record = Record {
        kind: permit.kind().to_owned(),
        id: "R-1".into(),
        fields,
    };
    let key = keys.iter().find(|k| &k.partner == permit.recipient());
    let out = redaction::apply(
        permit,
        &record,
        &RedactionKeys {
            pseudonym_secret: &[9u8; 32],
            recipient_key: key,
        },
    );
    let Ok(disclosed) = out else { return };
    for (name, v) in &disclosed.fields {
        let plan = permit.fields().iter().find(|p| &p.field == name);
        let Some(plan) = plan else {
            panic!("field `{name}` left without a plan");
        };
        let input = record.fields.get(name);
        match plan.transform {
            Transform::Omit => panic!("omitted field `{name}` left"),
            Transform::Reveal => assert_eq!(Some(v), input),
            Transform::Mask { .. } if !v.is_null() => {
                let len = |x: Option<&Value>| x.and_then(Value::as_str).map(|s| s.chars().count());
                assert_eq!(len(Some(v)), len(input));
            }
            _ => {}
        }
    }
}

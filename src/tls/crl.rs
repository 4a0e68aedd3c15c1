//! Certificate revocation lists: loading them, proving where they come from, and judging
//! whether they are still current.
//!
//! Security role: a CRL decides which partner certificates are refused, and rustls checks its
//! signature only during a handshake, where a bad CRL would refuse every certificate of its
//! issuer. So every CRL is checked when it is loaded, at start-up and on reload, and the whole
//! set is refused if one of them
//!
//! - is not issued by a CA of the client CA bundle (`tls.client_ca`),
//! - has a signature that does not verify with that CA's key (same algorithms as the
//!   handshake), or a CA whose key usage does not allow CRL signing,
//! - has no CRL number or no nextUpdate, or is one of two CRLs of one issuer,
//! - carries a CRL number lower than the CRL of its issuer now in force (a rollback, which
//!   would un-revoke certificates), or leaves out an issuer the set in force covers.
//!
//! Freshness is judged at run time, with the time as a parameter: before nextUpdate a CRL is
//! current; from nextUpdate until nextUpdate + grace it is stale (still used, and warned
//! about); after that it is expired, and the certificates of its issuer are refused because
//! their revocation status can no longer be known.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::WebPkiClientVerifier;
use serde::Serialize;
use x509_parser::asn1_rs::{Any, Tag};
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::identity::{RevocationKey, revocation_key};
use super::{TlsSetupError, provider};

/// What the CRL checks need to know about one CA of the client CA bundle.
#[derive(Debug, Clone)]
pub(super) struct ClientCa {
    /// Raw subject DN (CRL issuers are matched by these bytes, as rustls matches them).
    subject: Vec<u8>,
    /// The subject, readable.
    name: String,
    /// Contents of the SubjectPublicKeyInfo's AlgorithmIdentifier.
    key_algorithm: Vec<u8>,
    /// The public key bits.
    key: Vec<u8>,
    /// Whether the key usage (if present) allows CRL signing.
    may_sign_crls: bool,
}

impl ClientCa {
    /// Reads a CA certificate of the bundle.
    pub(super) fn from_der(der: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| format!("a certificate cannot be parsed: {e}"))?;
        let spki = cert.public_key();
        let key_algorithm = sequence_contents(spki.raw)
            .and_then(|(contents, _)| sequence_contents(contents))
            .map(|(alg, _)| alg.to_vec())
            .ok_or_else(|| format!("the public key of `{}` cannot be parsed", cert.subject()))?;
        let may_sign_crls = match cert.key_usage() {
            Ok(Some(ku)) => ku.value.crl_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        Ok(Self {
            subject: cert.subject().as_raw().to_vec(),
            name: cert.subject().to_string(),
            key_algorithm,
            key: spki.subject_public_key.data.to_vec(),
            may_sign_crls,
        })
    }
}

/// One loaded and authenticated CRL.
#[derive(Debug, Clone)]
pub(super) struct CrlInfo {
    /// The file it was read from.
    path: PathBuf,
    /// Raw issuer DN.
    issuer_der: Vec<u8>,
    /// The issuer, readable.
    issuer: String,
    /// The CRL number.
    number: BigUint,
    /// thisUpdate, Unix seconds.
    this_update: i64,
    /// nextUpdate, Unix seconds.
    next_update: i64,
}

/// Where a CRL stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum CrlStatus {
    /// Before its nextUpdate.
    Ok,
    /// Past nextUpdate, within the grace period: still used, and warned about.
    Stale,
    /// Past nextUpdate + grace: the issuer's certificates are refused.
    Expired,
}

impl CrlStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Stale => "stale",
            Self::Expired => "expired",
        }
    }
}

impl CrlInfo {
    /// The end of the grace period: nextUpdate + `grace_secs`.
    pub(super) fn grace_ends(&self, grace_secs: u64) -> i64 {
        self.next_update
            .saturating_add(i64::try_from(grace_secs).unwrap_or(i64::MAX))
    }

    /// Where this CRL stands at `now` (Unix seconds).
    pub(super) fn status(&self, now: i64, grace_secs: u64) -> CrlStatus {
        if now < self.next_update {
            CrlStatus::Ok
        } else if now < self.grace_ends(grace_secs) {
            CrlStatus::Stale
        } else {
            CrlStatus::Expired
        }
    }

    /// The issuer, readable.
    pub(super) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// nextUpdate, Unix seconds.
    pub(super) fn next_update(&self) -> i64 {
        self.next_update
    }

    /// A sentence for the operator's log about this CRL's state at `now`.
    pub(super) fn describe(&self, now: i64, grace_secs: u64) -> String {
        let next = rfc3339(self.next_update);
        let grace = rfc3339(self.grace_ends(grace_secs));
        match self.status(now, grace_secs) {
            CrlStatus::Ok => format!(
                "the CRL of `{}` (number {}, `{}`) is current until {next}",
                self.issuer,
                self.number,
                self.path.display()
            ),
            CrlStatus::Stale => format!(
                "the CRL of `{}` (number {}, `{}`) is past its nextUpdate {next}; it is still \
                 used until {grace} (tls.crl_grace_secs), after which certificates issued by \
                 `{}` are refused: install a current CRL and reload (SIGHUP)",
                self.issuer,
                self.number,
                self.path.display(),
                self.issuer
            ),
            CrlStatus::Expired => format!(
                "the CRL of `{}` (number {}, `{}`) passed its nextUpdate {next} and the grace \
                 period ended {grace}: certificates issued by `{}` are refused until a current \
                 CRL is installed and reloaded (SIGHUP)",
                self.issuer,
                self.number,
                self.path.display(),
                self.issuer
            ),
        }
    }
}

/// An authenticated set of CRLs, at most one per issuer.
#[derive(Debug, Clone, Default)]
pub(super) struct CrlSet {
    /// The CRLs as rustls takes them.
    pub(super) ders: Vec<CertificateRevocationListDer<'static>>,
    /// What was learnt about each.
    pub(super) lists: Vec<CrlInfo>,
    /// (issuer DN, serial) of every revoked certificate, for the per-request re-check.
    pub(super) revoked: HashSet<RevocationKey>,
}

impl CrlSet {
    /// Reads and authenticates the CRLs in `paths` against the client CAs. `running` is the set
    /// in force (none at start-up): a CRL older than the one it holds for the same issuer, or a
    /// set that leaves out one of its issuers, is refused.
    pub(super) fn load(
        paths: &[PathBuf],
        cas: &[ClientCa],
        roots: &Arc<RootCertStore>,
        running: Option<&CrlSet>,
    ) -> Result<Self, TlsSetupError> {
        let mut set = CrlSet::default();
        let mut by_issuer: HashMap<Vec<u8>, usize> = HashMap::new();
        for path in paths {
            let ders = read_crl_file(path)?;
            for der in ders {
                let info = authenticate(path, &der, cas, roots)?;
                if let Some(other) = by_issuer
                    .get(&info.issuer_der)
                    .and_then(|&i| set.lists.get(i))
                {
                    return Err(refused(
                        path,
                        format!(
                            "a second CRL of `{}` (the first is in `{}`): configure exactly \
                             one CRL per issuing CA",
                            info.issuer,
                            other.path.display()
                        ),
                    ));
                }
                if let Some(current) = running.and_then(|r| r.for_issuer(&info.issuer_der))
                    && info.number < current.number
                {
                    return Err(refused(
                        path,
                        format!(
                            "its CRL number {} is lower than number {} of the CRL of `{}` in \
                             force: loading an older CRL would un-revoke certificates; install \
                             a CRL at least as recent as the one in force",
                            info.number, current.number, info.issuer
                        ),
                    ));
                }
                set.revoked.extend(revoked_keys(&der)?);
                by_issuer.insert(info.issuer_der.clone(), set.lists.len());
                set.lists.push(info);
                set.ders.push(der);
            }
        }
        if let Some(running) = running {
            for current in &running.lists {
                if set.for_issuer(&current.issuer_der).is_none() {
                    return Err(refused(
                        &current.path,
                        format!(
                            "the CRLs in force include one of `{}` (number {}) and the new set \
                             has none: certificates of `{}` could no longer be checked for \
                             revocation; configure a current CRL of `{}`",
                            current.issuer, current.number, current.issuer, current.issuer
                        ),
                    ));
                }
            }
        }
        Ok(set)
    }

    /// The CRL of the issuer with raw DN `issuer`, if any.
    pub(super) fn for_issuer(&self, issuer: &[u8]) -> Option<&CrlInfo> {
        self.lists.iter().find(|l| l.issuer_der == issuer)
    }

    /// The CRL of `issuer`, if it is expired at `now`.
    pub(super) fn expired_for(&self, issuer: &[u8], now: i64, grace_secs: u64) -> Option<&CrlInfo> {
        self.for_issuer(issuer)
            .filter(|l| l.status(now, grace_secs) == CrlStatus::Expired)
    }

    /// The CRLs that are not current at `now`, worst first.
    pub(super) fn not_current(&self, now: i64, grace_secs: u64) -> Vec<&CrlInfo> {
        let mut out: Vec<&CrlInfo> = self
            .lists
            .iter()
            .filter(|l| l.status(now, grace_secs) != CrlStatus::Ok)
            .collect();
        out.sort_by_key(|l| (std::cmp::Reverse(l.status(now, grace_secs)), l.next_update));
        out
    }

    /// The health report at `now`.
    pub(super) fn health(&self, now: i64, grace_secs: u64) -> CrlHealth {
        let lists: Vec<CrlListHealth> = self
            .lists
            .iter()
            .map(|l| CrlListHealth {
                issuer: l.issuer.clone(),
                crl_number: l.number.to_string(),
                status: l.status(now, grace_secs).as_str(),
                this_update: rfc3339(l.this_update),
                next_update: rfc3339(l.next_update),
                grace_ends: rfc3339(l.grace_ends(grace_secs)),
            })
            .collect();
        // The list that determines the overall status: the worst, and of those the one whose
        // nextUpdate came (or comes) first.
        let decisive = self
            .lists
            .iter()
            .max_by_key(|l| (l.status(now, grace_secs), std::cmp::Reverse(l.next_update)));
        match decisive {
            None => CrlHealth {
                status: "none",
                next_update: None,
                grace_ends: None,
                message: None,
                lists,
            },
            Some(l) => {
                let status = l.status(now, grace_secs);
                CrlHealth {
                    status: status.as_str(),
                    next_update: Some(rfc3339(l.next_update)),
                    grace_ends: Some(rfc3339(l.grace_ends(grace_secs))),
                    message: (status != CrlStatus::Ok)
                        .then(|| public_description(l, now, grace_secs)),
                    lists,
                }
            }
        }
    }
}

/// The revocation lists' state, as `/healthz` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct CrlHealth {
    /// `none` (no CRL configured), `ok`, `stale` (past nextUpdate, within the grace period) or
    /// `expired` (past the grace period: the issuer's certificates are refused).
    pub status: &'static str,
    /// nextUpdate of the CRL that determines `status` (the worst, then the earliest).
    pub next_update: Option<String>,
    /// When its grace period ends (or ended).
    pub grace_ends: Option<String>,
    /// What is wrong and what to do, when `status` is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each CRL.
    pub lists: Vec<CrlListHealth>,
}

impl CrlHealth {
    /// Whether some partner certificates are refused because a CRL is past its grace period.
    pub fn is_expired(&self) -> bool {
        self.status == CrlStatus::Expired.as_str()
    }
}

/// One CRL in the health report.
#[derive(Debug, Clone, Serialize)]
pub struct CrlListHealth {
    /// The issuing CA.
    pub issuer: String,
    /// The CRL number, decimal.
    pub crl_number: String,
    /// `ok`, `stale` or `expired`.
    pub status: &'static str,
    /// thisUpdate, RFC 3339.
    pub this_update: String,
    /// nextUpdate, RFC 3339.
    pub next_update: String,
    /// nextUpdate + `tls.crl_grace_secs`, RFC 3339.
    pub grace_ends: String,
}

/// Like [`CrlInfo::describe`], without the file path (the health answer goes to partners).
fn public_description(l: &CrlInfo, now: i64, grace_secs: u64) -> String {
    let next = rfc3339(l.next_update);
    let grace = rfc3339(l.grace_ends(grace_secs));
    match l.status(now, grace_secs) {
        CrlStatus::Ok => format!("the CRL of `{}` is current until {next}", l.issuer),
        CrlStatus::Stale => format!(
            "the CRL of `{}` is past its nextUpdate {next}; it is used until {grace}, then \
             certificates issued by `{}` are refused: the operator must install a current CRL",
            l.issuer, l.issuer
        ),
        CrlStatus::Expired => format!(
            "crl_expired: the CRL of `{}` passed its nextUpdate {next} and the grace period \
             ended {grace}; certificates issued by `{}` are refused until the operator installs \
             a current CRL",
            l.issuer, l.issuer
        ),
    }
}

/// RFC 3339 (UTC, seconds) for a Unix time; out-of-range times are shown as the number.
pub(super) fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

fn refused(path: &Path, reason: String) -> TlsSetupError {
    TlsSetupError::Crl {
        path: path.to_owned(),
        reason,
    }
}

/// Reads one CRL file, PEM (one or more CRLs) or DER (one CRL). A file holding no CRL is an
/// error, so a truncated or emptied file cannot silently drop its issuer's revocations.
fn read_crl_file(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
    use rustls::pki_types::pem::PemObject as _;
    let bytes = std::fs::read(path).map_err(|e| TlsSetupError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let ders = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused(path, format!("not a valid PEM file: {e}")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if ders.is_empty() {
        return Err(refused(
            path,
            "the file holds no `X509 CRL` PEM block".to_owned(),
        ));
    }
    Ok(ders)
}

/// Parses one CRL and proves it was signed by a client CA; returns what the checks need.
fn authenticate(
    path: &Path,
    der: &CertificateRevocationListDer<'static>,
    cas: &[ClientCa],
    roots: &Arc<RootCertStore>,
) -> Result<CrlInfo, TlsSetupError> {
    let (rest, crl) = CertificateRevocationList::from_der(der.as_ref())
        .map_err(|e| refused(path, format!("not a valid CRL: {e}")))?;
    if !rest.is_empty() {
        return Err(refused(path, "data follows the CRL".to_owned()));
    }
    // rustls parses the CRL again when it builds the verifier; asking it here names the file
    // when it refuses one (unsupported critical extension, delta CRL, ...).
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .with_crls([der.clone()])
        .build()
        .map_err(|e| refused(path, format!("refused by the TLS library: {e}")))?;

    let issuer_der = crl.issuer().as_raw().to_vec();
    let issuer = crl.issuer().to_string();
    let candidates: Vec<&ClientCa> = cas.iter().filter(|ca| ca.subject == issuer_der).collect();
    if candidates.is_empty() {
        return Err(refused(
            path,
            format!(
                "it is issued by `{issuer}`, which is not a CA of the client CA bundle \
                 (tls.client_ca): a CRL must come from the CA that issues the partner \
                 certificates it revokes"
            ),
        ));
    }
    let signed = signed_parts(der.as_ref()).ok_or_else(|| {
        refused(
            path,
            "its signed structure cannot be parsed (tbsCertList, signatureAlgorithm, signature)"
                .to_owned(),
        )
    })?;
    if crl.tbs_cert_list.signature != crl.signature_algorithm {
        return Err(refused(
            path,
            "its inner and outer signature algorithms differ".to_owned(),
        ));
    }
    let mut unsupported = true;
    let mut signer = None;
    for ca in &candidates {
        match verify_signature(&signed, ca) {
            Verified::Yes => {
                signer = Some(*ca);
                break;
            }
            Verified::No => unsupported = false,
            Verified::Unsupported => {}
        }
    }
    let signer = signer.ok_or_else(|| {
        refused(
            path,
            if unsupported {
                format!(
                    "its signature algorithm is not supported for the key of `{issuer}` in \
                     tls.client_ca"
                )
            } else {
                format!(
                    "its signature does not verify with the key of `{issuer}` in tls.client_ca: \
                     the CRL is forged, corrupt or signed by another key; obtain the CRL from \
                     the CA that issued the partner certificates"
                )
            },
        )
    })?;
    if !signer.may_sign_crls {
        return Err(refused(
            path,
            format!(
                "the certificate of `{}` in tls.client_ca does not allow CRL signing (its key \
                 usage lacks cRLSign)",
                signer.name
            ),
        ));
    }
    let next_update = crl.next_update().ok_or_else(|| {
        refused(
            path,
            "it has no nextUpdate: the gateway cannot tell when it goes out of date".to_owned(),
        )
    })?;
    let number = crl.crl_number().cloned().ok_or_else(|| {
        refused(
            path,
            "it has no CRL number (RFC 5280 section 5.2.3): without one a rollback to an older \
             CRL cannot be detected; configure the CA to number its CRLs"
                .to_owned(),
        )
    })?;
    Ok(CrlInfo {
        path: path.to_owned(),
        issuer_der,
        issuer,
        number,
        this_update: crl.last_update().timestamp(),
        next_update: next_update.timestamp(),
    })
}

/// The signed parts of a CRL: `tbsCertList` (whole), the contents of `signatureAlgorithm`, and
/// the signature bits.
struct SignedParts<'a> {
    tbs: &'a [u8],
    algorithm: &'a [u8],
    signature: &'a [u8],
}

fn signed_parts(der: &[u8]) -> Option<SignedParts<'_>> {
    let (contents, rest) = sequence_contents(der)?;
    if !rest.is_empty() {
        return None;
    }
    let (after_tbs, tbs_any) = Any::from_der(contents).ok()?;
    if tbs_any.header.tag() != Tag::Sequence {
        return None;
    }
    let tbs = contents.get(..contents.len().checked_sub(after_tbs.len())?)?;
    let (algorithm, after_alg) = sequence_contents(after_tbs)?;
    let (after_sig, sig_any) = Any::from_der(after_alg).ok()?;
    if sig_any.header.tag() != Tag::BitString || !after_sig.is_empty() {
        return None;
    }
    // A signature is a whole number of bytes: the unused-bits count must be zero.
    let (&unused, signature) = sig_any.data.split_first()?;
    if unused != 0 {
        return None;
    }
    Some(SignedParts {
        tbs,
        algorithm,
        signature,
    })
}

/// The contents of the DER SEQUENCE at the start of `input`, and what follows it.
fn sequence_contents(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (rest, any) = Any::from_der(input).ok()?;
    (any.header.tag() == Tag::Sequence).then_some((any.data, rest))
}

enum Verified {
    Yes,
    No,
    Unsupported,
}

/// Verifies with the signature algorithms of the TLS crypto provider, chosen the way rustls
/// chooses them when it checks a CRL during a handshake: the algorithm identifiers of the
/// signature and of the CA's public key must both match.
fn verify_signature(signed: &SignedParts<'_>, ca: &ClientCa) -> Verified {
    let mut result = Verified::Unsupported;
    for alg in provider().signature_verification_algorithms.all {
        if alg.signature_alg_id().as_ref() != signed.algorithm
            || alg.public_key_alg_id().as_ref() != ca.key_algorithm.as_slice()
        {
            continue;
        }
        match alg.verify_signature(&ca.key, signed.tbs, signed.signature) {
            Ok(()) => return Verified::Yes,
            Err(_) => result = Verified::No,
        }
    }
    result
}

/// The revocation key of every certificate the CRL revokes.
fn revoked_keys(
    der: &CertificateRevocationListDer<'_>,
) -> Result<Vec<RevocationKey>, TlsSetupError> {
    let (_, parsed) = CertificateRevocationList::from_der(der.as_ref())
        .map_err(|e| TlsSetupError::Rustls(format!("CRL: {e}")))?;
    let issuer = parsed.issuer().as_raw();
    Ok(parsed
        .iter_revoked_certificates()
        .map(|r| revocation_key(issuer, r.raw_serial()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, PKCS_ECDSA_P256_SHA256,
        SerialNumber,
    };
    use rustls::pki_types::pem::PemObject;
    use time::OffsetDateTime;

    /// A self-signed CA for these tests (rcgen directly: the dev CA lives in a layer above).
    struct DevCa {
        cert_pem: String,
        key_pem: String,
    }

    impl DevCa {
        fn generate(common_name: &str) -> Result<Self, rcgen::Error> {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let mut params = rcgen::CertificateParams::default();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            let cert = params.self_signed(&key)?;
            Ok(Self {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        }
    }

    const HOUR: i64 = 3600;
    const WEEK: u64 = 7 * 24 * 3600;

    /// A CRL of `ca_cert_pem`'s subject, signed by `key_pem`, with `number`, nextUpdate
    /// `next_update` (Unix seconds) and no revoked certificate.
    fn crl(ca_cert_pem: &str, key_pem: &str, number: u64, next_update: i64) -> String {
        let issuer =
            Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(key_pem).unwrap()).unwrap();
        let next = OffsetDateTime::from_unix_timestamp(next_update).unwrap();
        CertificateRevocationListParams {
            this_update: next - time::Duration::days(30),
            next_update: next,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        dir: PathBuf,
        ca: DevCa,
        cas: Vec<ClientCa>,
        roots: Arc<RootCertStore>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate("Unit Test CA").unwrap();
        let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        Fixture {
            dir: dir.path().to_owned(),
            _dir: dir,
            cas: vec![ClientCa::from_der(&der).unwrap()],
            ca,
            roots: Arc::new(roots),
        }
    }

    impl Fixture {
        fn write(&self, name: &str, pem: &str) -> PathBuf {
            let p = self.dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        }
        fn load(&self, paths: &[PathBuf], running: Option<&CrlSet>) -> Result<CrlSet, String> {
            CrlSet::load(paths, &self.cas, &self.roots, running).map_err(|e| e.to_string())
        }
        fn good(&self, name: &str, number: u64, next_update: i64) -> PathBuf {
            self.write(
                name,
                &crl(&self.ca.cert_pem, &self.ca.key_pem, number, next_update),
            )
        }
    }

    fn now() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn a_crl_signed_by_the_client_ca_loads() {
        let f = fixture();
        let p = f.good("crl.pem", 7, now() + HOUR);
        let set = f.load(&[p], None).unwrap();
        assert_eq!(set.lists.len(), 1);
        assert_eq!(set.ders.len(), 1);
    }

    #[test]
    fn a_crl_naming_the_ca_but_signed_by_another_key_is_refused() {
        let f = fixture();
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let p = f.write(
            "forged.pem",
            &crl(&f.ca.cert_pem, &other.serialize_pem(), 7, now() + HOUR),
        );
        let err = f.load(&[p], None).unwrap_err();
        assert!(err.contains("forged.pem"), "{err}");
        assert!(err.contains("signature does not verify"), "{err}");
    }

    #[test]
    fn a_crl_of_another_ca_is_refused() {
        let f = fixture();
        let other = DevCa::generate("Other CA").unwrap();
        let p = f.write(
            "other.pem",
            &crl(&other.cert_pem, &other.key_pem, 7, now() + HOUR),
        );
        let err = f.load(&[p], None).unwrap_err();
        assert!(err.contains("not a CA of the client CA bundle"), "{err}");
        assert!(err.contains("Other CA"), "{err}");
    }

    #[test]
    fn a_tampered_crl_is_refused() {
        let f = fixture();
        let pem = crl(&f.ca.cert_pem, &f.ca.key_pem, 7, now() + HOUR);
        let mut der = CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        // Flip a bit of the last signature byte.
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let p = f.dir.join("tampered.der");
        std::fs::write(&p, &der).unwrap();
        let err = f.load(&[p], None).unwrap_err();
        assert!(err.contains("signature does not verify"), "{err}");
    }

    #[test]
    fn a_lower_crl_number_than_the_one_in_force_is_refused_and_an_equal_one_accepted() {
        let f = fixture();
        let running = f.load(&[f.good("a.pem", 10, now() + HOUR)], None).unwrap();
        let err = f
            .load(&[f.good("b.pem", 9, now() + 2 * HOUR)], Some(&running))
            .unwrap_err();
        assert!(
            err.contains("CRL number 9 is lower than number 10"),
            "{err}"
        );
        f.load(&[f.good("c.pem", 10, now() + HOUR)], Some(&running))
            .unwrap();
        f.load(&[f.good("d.pem", 11, now() + HOUR)], Some(&running))
            .unwrap();
    }

    #[test]
    fn two_crls_of_one_issuer_or_an_empty_file_are_refused() {
        let f = fixture();
        let a = f.good("a.pem", 1, now() + HOUR);
        let b = f.good("b.pem", 2, now() + HOUR);
        let err = f.load(&[a, b], None).unwrap_err();
        assert!(err.contains("a second CRL"), "{err}");
        let empty = f.write(
            "empty.pem",
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        );
        assert!(f.load(&[empty], None).is_err());
    }

    #[test]
    fn a_set_that_drops_an_issuer_in_force_is_refused() {
        let f = fixture();
        let running = f.load(&[f.good("a.pem", 1, now() + HOUR)], None).unwrap();
        let err = f.load(&[], Some(&running)).unwrap_err();
        assert!(err.contains("new set has none"), "{err}");
    }

    #[test]
    fn freshness_is_a_function_of_now_and_the_grace_period() {
        let f = fixture();
        let next = 1_900_000_000;
        let set = f.load(&[f.good("a.pem", 1, next)], None).unwrap();
        let l = &set.lists[0];
        assert_eq!(l.status(next - 1, WEEK), CrlStatus::Ok);
        assert_eq!(l.status(next, WEEK), CrlStatus::Stale);
        assert_eq!(l.status(next + WEEK as i64 - 1, WEEK), CrlStatus::Stale);
        assert_eq!(l.status(next + WEEK as i64, WEEK), CrlStatus::Expired);
        assert_eq!(l.status(next, 0), CrlStatus::Expired);
        assert_eq!(l.grace_ends(u64::MAX), i64::MAX);

        let issuer = l.issuer_der.clone();
        assert!(set.expired_for(&issuer, next + HOUR, WEEK).is_none());
        assert!(
            set.expired_for(&issuer, next + 8 * 24 * HOUR, WEEK)
                .is_some()
        );

        let h = set.health(next + HOUR, WEEK);
        assert_eq!(h.status, "stale");
        assert_eq!(h.next_update.as_deref(), Some("2030-03-17T17:46:40Z"));
        assert_eq!(h.grace_ends.as_deref(), Some("2030-03-24T17:46:40Z"));
        assert!(!h.is_expired());
        let h = set.health(next + 8 * 24 * HOUR, WEEK);
        assert!(h.is_expired());
        assert!(h.message.unwrap().starts_with("crl_expired"));
        assert_eq!(set.health(next - 1, WEEK).status, "ok");
        assert_eq!(CrlSet::default().health(next, WEEK).status, "none");
    }
}

//! Certificate revocation lists: loading them and proving where they come from.
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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::WebPkiClientVerifier;
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
    crl.next_update().ok_or_else(|| {
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
    use crate::devinit::pki::DevCa;
    use rcgen::{
        CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, PKCS_ECDSA_P256_SHA256,
        SerialNumber,
    };
    use rustls::pki_types::pem::PemObject;
    use time::OffsetDateTime;

    const HOUR: i64 = 3600;

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
}

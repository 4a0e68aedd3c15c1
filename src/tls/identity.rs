//! Reading a partner identity out of an X.509 certificate.

use std::collections::HashSet;

use rustls::pki_types::CertificateRevocationListDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::CertIdentityError;
use crate::domain::{CertFingerprint, PartnerId};

/// The verified client certificate of a connection, as handlers see it.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// DER of the leaf certificate.
    pub der: Vec<u8>,
    /// SHA-256 of `der`.
    pub fingerprint: CertFingerprint,
    /// Raw issuer distinguished name.
    pub issuer_dn: Vec<u8>,
    /// Raw serial number.
    pub serial: Vec<u8>,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
}

impl PeerCertificate {
    /// Parses the fields the gateway needs from a DER certificate.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(Self {
            der: der.to_vec(),
            fingerprint: CertFingerprint::of_der(der),
            issuer_dn: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// The partner id in a certificate's URI SAN `spiffe://<trust_domain>/partner/<id>`.
/// Exactly one such SAN must be present.
pub fn partner_from_san(der: &[u8], trust_domain: &str) -> Result<PartnerId, CertIdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| CertIdentityError::Unparsable)?;
    let prefix = format!("spiffe://{trust_domain}/partner/");
    let no_san = || CertIdentityError::NoPartnerSan(trust_domain.to_owned());
    let san = cert
        .subject_alternative_name()
        .map_err(|_| CertIdentityError::Unparsable)?
        .ok_or_else(no_san)?;
    let mut ids = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => uri.strip_prefix(prefix.as_str()),
        _ => None,
    });
    let id = ids.next().ok_or_else(no_san)?;
    if ids.next().is_some() {
        // Two partner SANs would make the identity ambiguous.
        return Err(no_san());
    }
    id.parse::<PartnerId>()
        .map_err(|_| CertIdentityError::Unregistered(id.chars().take(64).collect()))
}

/// (issuer DN, serial number) identifying one revoked certificate.
pub(super) type RevokedSerial = (Vec<u8>, Vec<u8>);

/// (issuer DN, serial) of every certificate revoked by `crls`.
pub(super) fn revoked_serials(
    crls: &[CertificateRevocationListDer<'_>],
) -> Result<HashSet<RevokedSerial>, String> {
    let mut out = HashSet::new();
    for crl in crls {
        let (_, parsed) =
            CertificateRevocationList::from_der(crl.as_ref()).map_err(|e| e.to_string())?;
        let issuer = parsed.issuer().as_raw().to_vec();
        for revoked in parsed.iter_revoked_certificates() {
            out.insert((issuer.clone(), revoked.raw_serial().to_vec()));
        }
    }
    Ok(out)
}

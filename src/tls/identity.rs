//! Reading a partner identity out of an X.509 certificate.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::CertIdentityError;
use crate::domain::{CertFingerprint, PartnerId};

/// The verified client certificate of a connection, as handlers see it. Parsed once when the
/// connection opens, so the per-request re-checks do no X.509 work.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// SHA-256 of the DER certificate.
    pub fingerprint: CertFingerprint,
    /// The partner named by the URI SAN, or why none is.
    pub san_partner: Result<PartnerId, CertIdentityError>,
    /// Issuer and serial number, in the form CRL entries are looked up by.
    pub revocation_key: RevocationKey,
    /// The raw issuer DN, by which the issuer's CRL is found.
    pub issuer: Vec<u8>,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
}

impl PeerCertificate {
    /// Parses the fields the gateway needs from a DER certificate; `trust_domain` is the one
    /// partner SANs must use.
    pub fn from_der(der: &[u8], trust_domain: &str) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(Self {
            fingerprint: CertFingerprint::of_der(der),
            san_partner: partner_from_san(der, trust_domain),
            revocation_key: revocation_key(cert.issuer().as_raw(), cert.raw_serial()),
            issuer: cert.issuer().as_raw().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// The raw issuer DN of a DER certificate.
pub(super) fn issuer_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.issuer().as_raw().to_vec())
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

/// Identifies a certificate for revocation: the issuer DN's length (u32, big-endian), the raw
/// issuer DN, then the raw serial number.
pub type RevocationKey = Vec<u8>;

pub(super) fn revocation_key(issuer: &[u8], serial: &[u8]) -> RevocationKey {
    let len = u32::try_from(issuer.len()).unwrap_or(u32::MAX);
    let mut key = Vec::with_capacity(4 + issuer.len() + serial.len());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(issuer);
    key.extend_from_slice(serial);
    key
}

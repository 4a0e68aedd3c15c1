//! A small certificate authority for development and tests: a CA, a server certificate,
//! partner client certificates with SPIFFE URI SANs, and CRLs.
//!
//! Nothing here is used by a production deployment, whose certificates come from the
//! partners' own PKI (see `certs/README.md`).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate PEM.
    pub cert_pem: String,
    /// PKCS#8 private key PEM.
    pub key_pem: String,
    /// Serial number bytes.
    pub serial: Vec<u8>,
}

/// A development certificate authority.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

impl DevCa {
    /// Generates a new CA named `common_name`, valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial());
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        eku: ExtendedKeyUsagePurpose,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, rcgen::Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.not_before = not_before;
        params.not_after = not_after;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: serial.to_bytes(),
        })
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), valid for two years.
    pub fn issue_server(&self, hosts: &[&str]) -> Result<Issued, rcgen::Error> {
        let mut sans = Vec::new();
        for h in hosts {
            match h.parse::<std::net::IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName((*h).try_into()?)),
            }
        }
        let now = OffsetDateTime::now_utc();
        self.issue(
            hosts.first().copied().unwrap_or("gateway"),
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            now - Duration::days(1),
            now + Duration::days(730),
        )
    }

    /// A partner client certificate carrying `spiffe://<trust_domain>/partner/<partner>`.
    pub fn issue_partner(&self, trust_domain: &str, partner: &str) -> Result<Issued, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        self.issue_client(
            partner,
            vec![partner_uri(trust_domain, partner)?],
            now - Duration::days(1),
            now + Duration::days(365),
        )
    }

    /// A client certificate with arbitrary SANs and validity (tests use it for the attacks:
    /// expired, not yet valid, no partner SAN, unregistered partner).
    pub fn issue_client(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, rcgen::Error> {
        self.issue(
            common_name,
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
            not_before,
            not_after,
        )
    }

    /// A CRL revoking `serials`, valid for a year.
    pub fn crl(&self, serials: &[Vec<u8>]) -> Result<String, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(365),
            // Increasing with time (Unix microseconds), as RFC 5280 5.2.3 asks: a CRL made
            // later always has the higher number, so the gateway's rollback check accepts
            // it on reload.
            crl_number: SerialNumber::from_slice(
                &u64::try_from(now.unix_timestamp_nanos() / 1000)
                    .unwrap_or(u64::MAX)
                    .to_be_bytes(),
            ),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer)?.pem()
    }
}

/// The URI SAN of a partner certificate.
pub fn partner_uri(trust_domain: &str, partner: &str) -> Result<SanType, rcgen::Error> {
    Ok(SanType::URI(
        format!("spiffe://{trust_domain}/partner/{partner}").try_into()?,
    ))
}

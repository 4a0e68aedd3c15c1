//! PKCS#12 files for browsers: `init` writes `<partner>.p12` next to each partner's PEM
//! certificate and key, so a compliance officer's browser can import the oversight agency's
//! client certificate and open the console (the README gives the import steps).
//!
//! Written in Rust (the `p12-keystore` crate) with PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC)
//! and an HMAC-SHA-256 MAC, which current Chromium (NSS) and Firefox import; the legacy
//! RC2/3DES schemes are not compiled in. Dev material only, like every file `init` writes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// Name of the file holding the password of the `.p12` files `init` writes.
pub const PASSWORD_FILE: &str = "p12-password.txt";

/// A fresh random password for the `.p12` files (24 URL-safe characters, 144 bits).
pub fn new_password() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

/// A PKCS#12 file holding `key_pem` (PKCS#8) with its certificate chain (`cert_pem`, then
/// `ca_pem`), under `alias`, encrypted with `password`.
pub fn write(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    alias: &str,
    password: &str,
) -> anyhow::Result<Vec<u8>> {
    let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("certificate PEM: {e}"))?;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("CA certificate PEM: {e}"))?;
    let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("private key PEM (PKCS#8 expected): {e}"))?;
    let local_id = Sha256::digest(leaf.as_ref()).to_vec();
    let chain = PrivateKeyChain::new(
        local_id,
        PrivateKey::from_der(key.secret_pkcs8_der())
            .map_err(|e| anyhow::anyhow!("private key: {e}"))?,
        [
            Certificate::from_der(leaf.as_ref())
                .map_err(|e| anyhow::anyhow!("certificate: {e}"))?,
            Certificate::from_der(ca.as_ref())
                .map_err(|e| anyhow::anyhow!("CA certificate: {e}"))?,
        ],
    );
    let mut store = KeyStore::new();
    store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(chain));
    // The crate's default 10,000 PBKDF2 iterations: the password is 144 random bits, so the
    // iteration count adds nothing that matters.
    store
        .writer(password)
        .write()
        .map_err(|e| anyhow::anyhow!("cannot write the PKCS#12 file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p12_keystore::Pkcs12ImportPolicy;

    #[test]
    fn the_file_holds_the_key_and_its_chain_and_needs_the_password() {
        let ca = super::super::pki::DevCa::generate("Test CA").unwrap();
        let issued = ca.issue_partner("example.org", "oversight").unwrap();
        let password = new_password();
        let der = write(
            &issued.cert_pem,
            &issued.key_pem,
            &ca.cert_pem,
            "oversight",
            &password,
        )
        .unwrap();
        let store = KeyStore::from_pkcs12(&der, &password, Pkcs12ImportPolicy::Strict).unwrap();
        let (alias, chain) = store.private_key_chain().unwrap();
        assert_eq!(alias, "oversight");
        assert_eq!(chain.certs().len(), 2);
        let leaf = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(chain.certs()[0].as_der(), leaf.as_ref());
        let key = PrivatePkcs8KeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
        assert_eq!(chain.key().as_der(), key.secret_pkcs8_der());
        assert!(KeyStore::from_pkcs12(&der, "wrong", Pkcs12ImportPolicy::Strict).is_err());
    }
}

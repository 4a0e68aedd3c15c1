//! The partner registry: which agencies exist, what kind each is, how its users' tokens are
//! verified. It lives in `policies/partners.toml` because it is policy, reviewed like the MOUs.
//!
//! Security role: this file decides whose certificates and tokens the gateway trusts. Loading
//! refuses anything ambiguous: duplicate ids or issuers, HMAC algorithms (a shared secret would
//! let the gateway's copy forge tokens, and an HMAC algorithm next to a public key is the
//! classic key-confusion attack), keys without a pinned algorithm, unknown keys in the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::crypto::RecipientKey;
use crate::crypto::note::{TYPE_COSIGNATURE, VerifierKey};
use crate::domain::{PartnerId, PartnerKind, Role};

/// Name of the registry file inside the policy directory.
pub const PARTNERS_FILE: &str = "partners.toml";

/// A problem found while loading the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for the registry's format (the message holds line and column).
    #[error("`{path}`: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and the offending key.
        message: String,
    },
    /// A rule of the registry is broken.
    #[error("`{path}`: partner `{partner}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The partner entry at fault.
        partner: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The registry as written in `partners.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// One entry per partner agency.
    #[serde(rename = "partner", default)]
    pub partners: Vec<PartnerEntry>,
}

/// One partner agency as written in the registry file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerEntry {
    /// The id named by the certificate's URI SAN.
    pub id: PartnerId,
    /// police | mental-health | compliance.
    pub kind: PartnerKind,
    /// Name shown in accounting reports.
    pub display_name: String,
    /// Postal address shown in accounting reports (HIPAA 164.528 "address if known").
    #[serde(default)]
    pub postal_address: Option<String>,
    /// How this partner's user tokens are verified.
    pub token: TokenEntry,
    /// Roles this partner's identity provider issues (MOU rules may name only these).
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Which of those roles are held by medical personnel (42 CFR 2.51): only they may
    /// receive Part 2 information in a bona fide medical emergency. Never a police partner's.
    #[serde(default)]
    pub medical_roles: Vec<Role>,
    /// The partner's public encryption key, for fields MOUs encrypt to it.
    #[serde(default)]
    pub encryption: Option<EncryptionEntry>,
    /// The partner's witness key, if it witnesses the disclosure log.
    #[serde(default)]
    pub witness: Option<WitnessEntry>,
}

/// A partner's witness key (C2SP `tlog-cosignature`, Ed25519), as written in the registry
/// file: a vkey `<name>+<key id>+<base64(0x04 || public key)>`, inline or in a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// The vkey, inline.
    #[serde(default)]
    pub vkey: Option<String>,
    /// A file holding the vkey, relative to the gateway's `identity.partner_keys_dir`.
    #[serde(default)]
    pub vkey_file: Option<PathBuf>,
}

impl WitnessEntry {
    /// Parses an inline vkey as a witness key: type 0x04 (Ed25519 cosignature).
    pub fn parse_vkey(text: &str) -> Result<VerifierKey, String> {
        let vk = VerifierKey::parse(text).map_err(|e| e.to_string())?;
        if vk.kind != TYPE_COSIGNATURE {
            return Err(format!(
                "`{}` is a note-signing key (type {:#04x}); a witness key is an Ed25519 \
                 cosignature key, type 0x04",
                vk.name, vk.kind
            ));
        }
        Ok(vk)
    }
}

/// Where a partner's public encryption key is, as written in the registry file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionEntry {
    /// A public P-256 JWK file, relative to the gateway's `identity.partner_keys_dir`.
    pub jwk_file: PathBuf,
}

/// Token verification settings of one partner, as written in the registry file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The exact `iss` claim of the partner's identity provider.
    pub issuer: String,
    /// Algorithms accepted from this partner; every key must use one of them.
    pub algorithms: Vec<String>,
    /// Whether tokens must carry `cnf.x5t#S256` (RFC 8705) bound to the client certificate.
    #[serde(default = "default_true")]
    pub binding_required: bool,
    /// The claim that holds the user's roles (an array of strings).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// A JWKS file, relative to the gateway's `identity.partner_keys_dir`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Public keys written inline.
    #[serde(default)]
    pub keys: Vec<InlineKey>,
}

/// A public key written inline in the registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineKey {
    /// Key id matched against the token header's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub algorithm: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
}

fn default_true() -> bool {
    true
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

/// A verification key with its pinned algorithm.
#[derive(Clone)]
pub struct PartnerKey {
    /// Key id, if the key has one.
    pub kid: Option<String>,
    /// The only algorithm this key verifies.
    pub algorithm: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for PartnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Token settings with keys loaded.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Whether `cnf.x5t#S256` is required.
    pub binding_required: bool,
    /// Claim holding the roles.
    pub roles_claim: String,
    /// Verification keys; at least one.
    pub keys: Vec<PartnerKey>,
}

/// A registered partner agency.
#[derive(Debug, Clone)]
pub struct Partner {
    /// Its id.
    pub id: PartnerId,
    /// Its kind.
    pub kind: PartnerKind,
    /// Name for reports.
    pub display_name: String,
    /// Postal address for reports.
    pub postal_address: Option<String>,
    /// Token verification settings.
    pub token: TokenSettings,
    /// Roles its identity provider issues.
    pub roles: Vec<Role>,
    /// The roles held by medical personnel (42 CFR 2.51), a subset of `roles`.
    pub medical_roles: Vec<Role>,
    /// Its public encryption key, if registered.
    pub encryption: Option<RecipientKey>,
    /// Its witness key (cosignatures of the log's checkpoints), if registered.
    pub witness: Option<VerifierKey>,
}

impl Partner {
    /// Whether a user with `roles` acts as medical personnel of this partner (42 CFR 2.51):
    /// one of the roles is marked medical in the registry.
    pub fn is_medical(&self, roles: &std::collections::BTreeSet<Role>) -> bool {
        self.medical_roles.iter().any(|r| roles.contains(r))
    }
}

/// The loaded, validated partner registry.
#[derive(Debug, Clone, Default)]
pub struct PartnerRegistry {
    partners: BTreeMap<PartnerId, Partner>,
}

/// Algorithms a partner may use. HMAC is refused outright (see the module documentation).
fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    let alg = match s {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" | "HS384" | "HS512" => {
            return Err(format!(
                "algorithm `{s}` is refused: the gateway accepts only asymmetric signatures \
                 (ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA)"
            ));
        }
        other => {
            return Err(format!(
                "unknown algorithm `{other}`: use one of ES256, ES384, RS256, RS384, RS512, \
                 PS256, PS384, PS512, EdDSA"
            ));
        }
    };
    Ok(alg)
}

fn algorithm_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

impl RegistryFile {
    /// Parses the registry text. `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Self, RegistryError> {
        toml_edit::de::from_str(text).map_err(|e| RegistryError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads and parses `dir/partners.toml`.
    pub fn load(policy_dir: &Path) -> Result<Self, RegistryError> {
        let path = policy_dir.join(PARTNERS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| RegistryError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&path, &text)
    }
}

impl PartnerRegistry {
    /// Validates the registry and loads every key. Relative JWKS paths resolve against
    /// `keys_dir`. `path` is the registry file, for messages.
    pub fn resolve(
        file: &RegistryFile,
        path: &Path,
        keys_dir: &Path,
    ) -> Result<Self, RegistryError> {
        let mut partners = BTreeMap::new();
        let mut issuers: BTreeMap<&str, &PartnerId> = BTreeMap::new();
        for entry in &file.partners {
            let invalid = |message: String| RegistryError::Invalid {
                path: path.to_owned(),
                partner: entry.id.to_string(),
                message,
            };
            if partners.contains_key(&entry.id) {
                return Err(invalid("the id is registered twice; keep one entry".into()));
            }
            if let Some(other) = issuers.insert(entry.token.issuer.as_str(), &entry.id) {
                return Err(invalid(format!(
                    "issuer `{}` is already used by partner `{other}`; each partner needs its \
                     own issuer so that a token names exactly one agency",
                    entry.token.issuer
                )));
            }
            if entry.token.issuer.trim().is_empty() {
                return Err(invalid("`token.issuer` is empty".into()));
            }
            let algorithms = entry
                .token
                .algorithms
                .iter()
                .map(|a| parse_algorithm(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            if algorithms.is_empty() {
                return Err(invalid(
                    "`token.algorithms` is empty; name the algorithms the partner signs with"
                        .into(),
                ));
            }
            let mut keys = Vec::new();
            for k in &entry.token.keys {
                let algorithm = parse_algorithm(&k.algorithm).map_err(&invalid)?;
                let key = decoding_key_from_pem(algorithm, k.public_key_pem.as_bytes())
                    .map_err(|e| invalid(format!("inline key {:?}: {e}", k.kid)))?;
                keys.push(PartnerKey {
                    kid: k.kid.clone(),
                    algorithm,
                    key,
                });
            }
            if let Some(jwks) = &entry.token.jwks_file {
                let jwks_path = keys_dir.join(jwks);
                keys.extend(load_jwks(&jwks_path).map_err(&invalid)?);
            }
            if keys.is_empty() {
                return Err(invalid(
                    "no verification key: set `token.jwks_file` or add `[[partner.token.keys]]`"
                        .into(),
                ));
            }
            for k in &keys {
                if !algorithms.contains(&k.algorithm) {
                    return Err(invalid(format!(
                        "key {:?} uses {} which is not in `token.algorithms`",
                        k.kid,
                        algorithm_name(k.algorithm)
                    )));
                }
            }
            let encryption = match &entry.encryption {
                Some(enc) => {
                    let path = keys_dir.join(&enc.jwk_file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        invalid(format!(
                            "cannot read encryption JWK `{}`: {e}",
                            path.display()
                        ))
                    })?;
                    Some(
                        RecipientKey::from_jwk(entry.id.clone(), &text).map_err(|e| {
                            invalid(format!("encryption JWK `{}`: {e}", path.display()))
                        })?,
                    )
                }
                None => None,
            };
            let witness = match &entry.witness {
                None => None,
                Some(w) => {
                    let text = match (&w.vkey, &w.vkey_file) {
                        (Some(v), None) => v.clone(),
                        (None, Some(file)) => {
                            let path = keys_dir.join(file);
                            std::fs::read_to_string(&path).map_err(|e| {
                                invalid(format!(
                                    "cannot read witness key `{}`: {e}",
                                    path.display()
                                ))
                            })?
                        }
                        _ => {
                            return Err(invalid(
                                "`[partner.witness]` needs exactly one of `vkey` and `vkey_file`"
                                    .into(),
                            ));
                        }
                    };
                    Some(
                        WitnessEntry::parse_vkey(&text)
                            .map_err(|e| invalid(format!("witness key: {e}")))?,
                    )
                }
            };
            partners.insert(
                entry.id.clone(),
                Partner {
                    id: entry.id.clone(),
                    kind: entry.kind,
                    display_name: entry.display_name.clone(),
                    postal_address: entry.postal_address.clone(),
                    token: TokenSettings {
                        issuer: entry.token.issuer.clone(),
                        algorithms,
                        binding_required: entry.token.binding_required,
                        roles_claim: entry.token.roles_claim.clone(),
                        keys,
                    },
                    roles: entry.roles.clone(),
                    medical_roles: entry.medical_roles.clone(),
                    encryption,
                    witness,
                },
            );
        }
        // A cosignature line names its witness by key name (C2SP signed-note): two partners'
        // witnesses under one name would make a checkpoint's cosigners ambiguous to every
        // reader, so the registry refuses it (inline vkeys are also caught by `policy check`).
        let mut witness_names: BTreeMap<&str, &PartnerId> = BTreeMap::new();
        for p in partners.values() {
            if let Some(w) = &p.witness
                && let Some(other) = witness_names.insert(w.name.as_str(), &p.id)
            {
                return Err(RegistryError::Invalid {
                    path: path.to_owned(),
                    partner: p.id.to_string(),
                    message: format!(
                        "the witness key is named `{}`, like the witness key of partner \
                         `{other}`; each witness needs its own key name (make a new key with \
                         `audit witness-key --name {}`)",
                        w.name, p.id
                    ),
                });
            }
        }
        Ok(Self { partners })
    }

    /// The registry without any key material: ids, kinds, names and roles only. Tokens cannot
    /// be verified with it (every key list is empty, so every token is refused); it serves
    /// `policy check` and `policy explain`, which run where the keys are not.
    pub fn resolve_unkeyed(file: &RegistryFile) -> Self {
        let partners = file
            .partners
            .iter()
            .map(|entry| {
                (
                    entry.id.clone(),
                    Partner {
                        id: entry.id.clone(),
                        kind: entry.kind,
                        display_name: entry.display_name.clone(),
                        postal_address: entry.postal_address.clone(),
                        token: TokenSettings {
                            issuer: entry.token.issuer.clone(),
                            algorithms: Vec::new(),
                            binding_required: entry.token.binding_required,
                            roles_claim: entry.token.roles_claim.clone(),
                            keys: Vec::new(),
                        },
                        roles: entry.roles.clone(),
                        medical_roles: entry.medical_roles.clone(),
                        encryption: None,
                        witness: entry
                            .witness
                            .as_ref()
                            .and_then(|w| w.vkey.as_deref())
                            .and_then(|v| WitnessEntry::parse_vkey(v).ok()),
                    },
                )
            })
            .collect();
        Self { partners }
    }

    /// Loads `policy_dir/partners.toml` and its keys.
    pub fn load(policy_dir: &Path, keys_dir: &Path) -> Result<Self, RegistryError> {
        let file = RegistryFile::load(policy_dir)?;
        Self::resolve(&file, &policy_dir.join(PARTNERS_FILE), keys_dir)
    }

    /// The partner with this id.
    pub fn get(&self, id: &PartnerId) -> Option<&Partner> {
        self.partners.get(id)
    }

    /// The partner whose token issuer is `issuer`.
    pub fn by_issuer(&self, issuer: &str) -> Option<&Partner> {
        self.partners.values().find(|p| p.token.issuer == issuer)
    }

    /// All partners, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &Partner> {
        self.partners.values()
    }
}

fn decoding_key_from_pem(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    };
    key.map_err(|e| format!("not a usable public key for {}: {e}", algorithm_name(alg)))
}

fn load_jwks(path: &Path) -> Result<Vec<PartnerKey>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JWKS `{}`: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| format!("JWKS `{}` is not valid: {e}", path.display()))?;
    set.keys.iter().map(|jwk| jwk_to_key(path, jwk)).collect()
}

fn jwk_to_key(path: &Path, jwk: &Jwk) -> Result<PartnerKey, String> {
    let kid = jwk.common.key_id.clone();
    let alg = jwk.common.key_algorithm.ok_or_else(|| {
        format!(
            "JWKS `{}`: key {kid:?} has no `alg`; pin each key to one algorithm",
            path.display()
        )
    })?;
    let name = serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let algorithm = parse_algorithm(&name)?;
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| format!("JWKS `{}`: key {kid:?} is not usable: {e}", path.display()))?;
    Ok(PartnerKey {
        kid,
        algorithm,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .public_key_pem()
    }

    fn registry(toml_text: &str) -> Result<PartnerRegistry, RegistryError> {
        let p = Path::new("partners.toml");
        let file = RegistryFile::parse(p, toml_text)?;
        PartnerRegistry::resolve(&file, p, Path::new("."))
    }

    fn entry(id: &str, issuer: &str, alg: &str) -> String {
        format!(
            r#"
[[partner]]
id = "{id}"
kind = "police"
display_name = "X"
[partner.token]
issuer = "{issuer}"
algorithms = ["{alg}"]
[[partner.token.keys]]
algorithm = "{alg}"
public_key_pem = """{pem}"""
"#,
            pem = pem()
        )
    }

    #[test]
    fn loads_a_valid_entry() {
        let r = registry(&entry("metro-pd", "https://idp.metro", "ES256")).unwrap();
        let p = r.get(&"metro-pd".parse().unwrap()).unwrap();
        assert_eq!(p.token.algorithms, vec![Algorithm::ES256]);
        assert!(p.token.binding_required);
        assert_eq!(p.token.roles_claim, "roles");
        assert!(r.by_issuer("https://idp.metro").is_some());
    }

    #[test]
    fn refuses_hmac_algorithms() {
        let err = registry(&entry("metro-pd", "i", "HS256")).unwrap_err();
        assert!(err.to_string().contains("only asymmetric"), "{err}");
    }

    #[test]
    fn refuses_duplicate_ids_and_issuers() {
        let twice = entry("a", "i1", "ES256") + &entry("a", "i2", "ES256");
        assert!(registry(&twice).unwrap_err().to_string().contains("twice"));
        let shared = entry("a", "i", "ES256") + &entry("b", "i", "ES256");
        assert!(
            registry(&shared)
                .unwrap_err()
                .to_string()
                .contains("already used")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = registry("[[partner]]\nid = \"a\"\ncolour = \"red\"\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn two_witnesses_under_one_key_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vkey = |name: &str, seed: u8| {
            crate::crypto::note::NoteSigner::new(name, TYPE_COSIGNATURE, &[seed; 32])
                .unwrap()
                .verifier()
                .to_vkey()
        };
        let p = dir.path().join("partners.toml");
        let load = |inline: &str| {
            let text = entry("county-mh", "i1", "ES256")
                + "[partner.witness]\nvkey_file = \"county-mh.vkey\"\n"
                + &entry("metro-pd", "i2", "ES256")
                + &format!("[partner.witness]\nvkey = \"{inline}\"\n");
            let file = RegistryFile::parse(&p, &text).unwrap();
            PartnerRegistry::resolve(&file, &p, dir.path())
        };
        std::fs::write(dir.path().join("county-mh.vkey"), vkey("county-mh", 1)).unwrap();
        // Two different keys under one name: one read from a file, one inline.
        let err = load(&vkey("county-mh", 2)).unwrap_err();
        assert!(err.to_string().contains("its own key name"), "{err}");
        // Named apart, both load.
        let r = load(&vkey("metro-pd", 2)).unwrap();
        assert_eq!(
            r.get(&"county-mh".parse().unwrap())
                .and_then(|p| p.witness.as_ref())
                .map(|w| w.name.as_str()),
            Some("county-mh")
        );
    }

    #[test]
    fn a_key_outside_the_pinned_algorithms_is_refused() {
        let text = entry("a", "i", "ES256")
            .replace("algorithms = [\"ES256\"]", "algorithms = [\"RS256\"]");
        assert!(registry(&text).unwrap_err().to_string().contains("not in"));
    }
}

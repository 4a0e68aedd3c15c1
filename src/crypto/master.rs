//! The master key file: one AES-256 key per version, controlled by the agency.
//!
//! Format: UTF-8 text, one key per line. `VERSION:HEX` names a version (a positive integer)
//! and its 32-byte key as 64 hex digits; a bare `HEX` line (as written by `init`) is version 1.
//! Blank lines and lines starting with `#` are ignored. The highest version is current: new
//! data keys are wrapped under it. `keys rotate` appends a new version; `keys retire` removes
//! one once no data key is wrapped under it. The file is rewritten atomically with mode 0600.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use super::CryptoError;
use super::envelope::{DataKeyId, lp};

/// A master-key version number (1, 2, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MasterVersion(u32);

impl MasterVersion {
    /// The version as a number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// A version from a number; `None` for 0.
    pub fn new(n: u32) -> Option<Self> {
        (n > 0).then_some(Self(n))
    }

    /// The version as stored in the database.
    pub fn to_db(self) -> i64 {
        i64::from(self.0)
    }

    /// A version read from the database.
    pub fn from_db(n: i64) -> Option<Self> {
        u32::try_from(n).ok().and_then(Self::new)
    }
}

impl fmt::Display for MasterVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The master key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("cannot access the master key file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a key.
    #[error(
        "master key file `{path}` line {line}: {problem}; each key line is `VERSION:HEX` (or a \
         bare HEX for version 1) with 64 hex digits"
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the key itself).
        problem: &'static str,
    },
    /// The file holds no key.
    #[error("master key file `{0}` holds no key; create one with `coresponse-gateway init`")]
    Empty(PathBuf),
    /// The version is not in the file.
    #[error("master key version {version} is not in `{path}`")]
    NoSuchVersion {
        /// The file.
        path: PathBuf,
        /// The version asked for.
        version: MasterVersion,
    },
    /// The random number generator failed while creating a key.
    #[error("the system random number generator failed")]
    Random,
}

type HmacSha256 = Hmac<Sha256>;

const CHECK_LABEL: &[u8] = b"coresponse-gateway/master-key-check/v1";
const WRAP_LABEL: &[u8] = b"coresponse-gateway/data-key-wrap/v1";
const NONCE_LEN: usize = 12;

/// The master keys of this gateway, by version.
pub struct MasterKeys {
    path: PathBuf,
    keys: BTreeMap<MasterVersion, SecretBox<[u8; 32]>>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys")
            .field("path", &self.path)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MasterKeys {
    /// Reads the master key file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = secrecy::zeroize::Zeroizing::new(text);
        Self::parse(path, &text)
    }

    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, KeyFileError> {
        let mut keys = BTreeMap::new();
        let syntax = |line: usize, problem| KeyFileError::Syntax {
            path: path.to_owned(),
            line,
            problem,
        };
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (version, hex_key) = match line.split_once(':') {
                Some((v, k)) => {
                    let v: u32 = v
                        .trim()
                        .parse()
                        .map_err(|_| syntax(n + 1, "the version is not a positive integer"))?;
                    (v, k.trim())
                }
                None => (1, line),
            };
            let version = MasterVersion::new(version)
                .ok_or_else(|| syntax(n + 1, "the version must be 1 or more"))?;
            let key = SecretBox::try_init_with(|| {
                let mut key = [0u8; 32];
                hex::decode_to_slice(hex_key, &mut key)
                    .map(|()| key)
                    .map_err(|_| syntax(n + 1, "the key is not 64 hex digits"))
            })?;
            if keys.insert(version, key).is_some() {
                return Err(syntax(n + 1, "this version appears twice"));
            }
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty(path.to_owned()));
        }
        Ok(Self {
            path: path.to_owned(),
            keys,
        })
    }

    /// The file these keys were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current (highest) version: new data keys are wrapped under it.
    pub fn current(&self) -> MasterVersion {
        // `parse` refuses an empty file, so there is always a last key.
        self.keys
            .keys()
            .next_back()
            .copied()
            .unwrap_or(MasterVersion(1))
    }

    /// Every version in the file, lowest first.
    pub fn versions(&self) -> impl Iterator<Item = MasterVersion> + '_ {
        self.keys.keys().copied()
    }

    /// Whether the file holds `version`.
    pub fn contains(&self, version: MasterVersion) -> bool {
        self.keys.contains_key(&version)
    }

    /// The key check value of `version`: hex of HMAC-SHA256 over a fixed label under the key.
    /// It identifies the key without revealing it.
    pub fn fingerprint(&self, version: MasterVersion) -> Option<String> {
        let key = self.keys.get(&version)?;
        let mut mac = HmacSha256::new_from_slice(key.expose_secret()).ok()?;
        mac.update(CHECK_LABEL);
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    fn cipher(&self, version: MasterVersion) -> Result<Aes256Gcm, CryptoError> {
        let key = self
            .keys
            .get(&version)
            .ok_or(CryptoError::UnknownMasterVersion(version))?;
        let key: &Key<Aes256Gcm> = key.expose_secret().into();
        Ok(Aes256Gcm::new(key))
    }

    fn wrap_aad(id: DataKeyId, purpose: &str, version: MasterVersion) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96);
        lp(&mut aad, WRAP_LABEL);
        lp(&mut aad, id.as_bytes());
        lp(&mut aad, purpose.as_bytes());
        lp(&mut aad, &version.get().to_be_bytes());
        aad
    }

    /// Wraps a 32-byte data key under the current version: `nonce || ciphertext || tag`.
    pub(crate) fn wrap(
        &self,
        id: DataKeyId,
        purpose: &str,
        key: &SecretBox<[u8; 32]>,
    ) -> Result<(MasterVersion, Vec<u8>), CryptoError> {
        let version = self.current();
        let cipher = self.cipher(version)?;
        let nonce = Nonce::try_generate().map_err(|_| CryptoError::Random)?;
        let aad = Self::wrap_aad(id, purpose, version);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: key.expose_secret(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok((version, out))
    }

    /// Unwraps a data key wrapped under `version`.
    pub(crate) fn unwrap(
        &self,
        id: DataKeyId,
        purpose: &str,
        version: MasterVersion,
        wrapped: &[u8],
    ) -> Result<SecretBox<[u8; 32]>, CryptoError> {
        let cipher = self.cipher(version)?;
        let (nonce, sealed) = wrapped
            .split_at_checked(NONCE_LEN)
            .ok_or(CryptoError::Malformed("wrapped key too short"))?;
        let nonce =
            Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed("wrapped key nonce"))?;
        let aad = Self::wrap_aad(id, purpose, version);
        let plain = secrecy::zeroize::Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Authentication)?,
        );
        SecretBox::try_init_with(|| {
            <[u8; 32]>::try_from(plain.as_slice())
                .map_err(|_| CryptoError::Malformed("wrapped key length"))
        })
    }

    /// Appends a new version, numbered above `at_least` and above every version in the file,
    /// with a fresh random key; returns it. The file is replaced atomically.
    pub fn append_new_version(
        path: &Path,
        at_least: Option<MasterVersion>,
    ) -> Result<MasterVersion, KeyFileError> {
        let keys = Self::load(path)?;
        let next = keys
            .current()
            .max(at_least.unwrap_or(MasterVersion(1)))
            .get()
            + 1;
        let version = MasterVersion(next);
        let key: SecretBox<[u8; 32]> = SecretBox::try_init_with(|| {
            Key::<Aes256Gcm>::try_generate()
                .map(|k| {
                    let mut out = [0u8; 32];
                    out.copy_from_slice(&k);
                    out
                })
                .map_err(|_| KeyFileError::Random)
        })?;
        let text =
            secrecy::zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                KeyFileError::Io {
                    path: path.to_owned(),
                    source,
                }
            })?);
        let mut out = secrecy::zeroize::Zeroizing::new(String::with_capacity(text.len() + 80));
        out.push_str(&text);
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!(
            "{version}:{}\n",
            secrecy::zeroize::Zeroizing::new(hex::encode(key.expose_secret())).as_str()
        ));
        write_atomically(path, out.as_bytes())?;
        Ok(version)
    }

    /// Removes `version` from the file. The caller checks that nothing still needs it.
    pub fn remove_version(path: &Path, version: MasterVersion) -> Result<(), KeyFileError> {
        let keys = Self::load(path)?;
        if !keys.contains(version) {
            return Err(KeyFileError::NoSuchVersion {
                path: path.to_owned(),
                version,
            });
        }
        let text =
            secrecy::zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                KeyFileError::Io {
                    path: path.to_owned(),
                    source,
                }
            })?);
        let mut out = secrecy::zeroize::Zeroizing::new(String::with_capacity(text.len()));
        for raw in text.lines() {
            let line = raw.trim();
            let line_version = if line.is_empty() || line.starts_with('#') {
                None
            } else {
                match line.split_once(':') {
                    Some((v, _)) => v.trim().parse::<u32>().ok(),
                    None => Some(1),
                }
            };
            if line_version != Some(version.get()) {
                out.push_str(raw);
                out.push('\n');
            }
        }
        write_atomically(path, out.as_bytes())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "master.key".to_owned());
    let tmp = dir.join(format!(".{file_name}.new"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = opts.open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    #[test]
    fn a_bare_key_is_version_one_and_the_highest_version_is_current() {
        let k = MasterKeys::parse(Path::new("m"), &format!("{K1}\n")).unwrap();
        assert_eq!(k.current().get(), 1);
        let k = MasterKeys::parse(Path::new("m"), &format!("# keys\n{K1}\n\n3:{K2}\n")).unwrap();
        assert_eq!(k.current().get(), 3);
        assert_eq!(
            k.versions().map(MasterVersion::get).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_ne!(
            k.fingerprint(MasterVersion(1)),
            k.fingerprint(MasterVersion(3))
        );
    }

    #[test]
    fn syntax_errors_name_the_line_and_never_the_key() {
        for (text, problem) in [
            (format!("{K1}\n1:{K2}\n"), "twice"),
            ("abc\n".to_owned(), "64 hex"),
            (format!("x:{K1}\n"), "positive integer"),
            (format!("0:{K1}\n"), "1 or more"),
        ] {
            let err = MasterKeys::parse(Path::new("m"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(problem), "{err}");
            assert!(!err.contains(K1) && !err.contains(K2), "{err}");
        }
        assert!(matches!(
            MasterKeys::parse(Path::new("m"), "# nothing\n"),
            Err(KeyFileError::Empty(_))
        ));
    }

    #[test]
    fn wrapping_round_trips_and_binds_id_purpose_and_version() {
        let k = MasterKeys::parse(Path::new("m"), &format!("{K1}\n2:{K2}\n")).unwrap();
        let id = DataKeyId::random().unwrap();
        let dek = SecretBox::new(Box::new([7u8; 32]));
        let (v, wrapped) = k.wrap(id, "record", &dek).unwrap();
        assert_eq!(v.get(), 2);
        let back = k.unwrap(id, "record", v, &wrapped).unwrap();
        assert_eq!(back.expose_secret(), &[7u8; 32]);
        let other = DataKeyId::random().unwrap();
        assert!(k.unwrap(other, "record", v, &wrapped).is_err());
        assert!(k.unwrap(id, "blind-index", v, &wrapped).is_err());
        assert!(k.unwrap(id, "record", MasterVersion(1), &wrapped).is_err());
        assert!(matches!(
            k.unwrap(id, "record", MasterVersion(9), &wrapped),
            Err(CryptoError::UnknownMasterVersion(_))
        ));
    }

    #[test]
    fn append_and_remove_rewrite_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, K1).unwrap();
        let v = MasterKeys::append_new_version(&path, Some(MasterVersion(4))).unwrap();
        assert_eq!(v.get(), 5);
        let k = MasterKeys::load(&path).unwrap();
        assert_eq!(
            k.versions().map(MasterVersion::get).collect::<Vec<_>>(),
            [1, 5]
        );
        MasterKeys::remove_version(&path, MasterVersion(1)).unwrap();
        let k = MasterKeys::load(&path).unwrap();
        assert_eq!(
            k.versions().map(MasterVersion::get).collect::<Vec<_>>(),
            [5]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key file must not be group/world readable");
        }
    }
}

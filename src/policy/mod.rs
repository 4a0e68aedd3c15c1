//! Policy: the partner registry, record kinds and MOU rules loaded from `policies/`.
//!
//! A [`PolicySet`] is immutable once loaded; the running gateway swaps a whole new set in on
//! reload (SIGHUP) only if it validates, so a bad edit never replaces a good set.

pub mod partners;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use partners::{Partner, PartnerRegistry, RegistryError};

/// Everything loaded from the policy directory.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Registered partner agencies.
    pub partners: PartnerRegistry,
    /// Content hash of the policy files, recorded with every decision.
    pub hash: String,
}

/// The policy directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The partner registry is invalid.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A file could not be read.
    #[error("cannot read policy directory `{path}`: {source}")]
    Read {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl PolicySet {
    /// Loads and validates the policy directory. `keys_dir` is where the registry's JWKS files
    /// live.
    pub fn load(dir: &Path, keys_dir: &Path) -> Result<Self, PolicyError> {
        let partners = PartnerRegistry::load(dir, keys_dir)?;
        let hash = content_hash(dir)?;
        Ok(Self { partners, hash })
    }
}

/// SHA-256 over every `.toml` file of the directory tree (sorted by relative path; each file
/// contributes its path and contents), hex encoded.
pub fn content_hash(dir: &Path) -> Result<String, PolicyError> {
    let mut files = Vec::new();
    collect_toml(dir, dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for rel in files {
        let path = dir.join(&rel);
        let bytes = std::fs::read(&path).map_err(|source| PolicyError::Read { path, source })?;
        h.update((rel.len() as u64).to_be_bytes());
        h.update(rel.as_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

fn collect_toml(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), PolicyError> {
    let read = |path: &Path| PolicyError::Read {
        path: path.to_owned(),
        source: std::io::Error::other("unreadable"),
    };
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            collect_toml(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            let rel = path.strip_prefix(root).map_err(|_| read(&path))?;
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

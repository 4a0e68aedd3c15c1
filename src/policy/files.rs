//! The files of a policy set, read once: what the set is built from, what its hash is computed
//! over, and what the gateway keeps of every set it has run with.
//!
//! Security role: a policy set is read from disk exactly once, into a [`PolicyFiles`]
//! snapshot, and both its validation and its content hash are computed from that snapshot, so
//! the hash recorded with every decision names exactly the text that decided (a file edited
//! while the gateway reads the directory cannot make the two disagree). The snapshot is also
//! what the disclosure log keeps of each set (`policy_sets`), so a later policy change can be
//! compared with the set it replaced, even after a restart, and a compliance officer can see
//! what the rules were when an old entry was written. A stored snapshot is checked against its
//! hash before it is used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PolicyError;
use super::load::CASES_DIR;

/// Every `.toml` file of a policy directory (except golden cases under `cases/`), by path
/// relative to the directory (`/`-separated), with the directories seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFiles {
    /// File path to its text.
    files: BTreeMap<String, String>,
    /// Sub-directories present (relative paths), so that an empty `kinds/` is told apart from
    /// a missing one.
    dirs: BTreeSet<String>,
}

impl PolicyFiles {
    /// Reads every `.toml` file under `dir`, except under its top-level `cases/`. Every file
    /// must be UTF-8 text.
    pub fn read(dir: &Path) -> Result<Self, PolicyError> {
        let mut out = Self::default();
        out.collect(dir, dir)?;
        Ok(out)
    }

    /// A snapshot from file texts (tests and policy tools): directories are those the paths
    /// name.
    pub fn from_files(files: BTreeMap<String, String>) -> Self {
        let mut dirs = BTreeSet::new();
        for path in files.keys() {
            let mut parts: Vec<&str> = path.split('/').collect();
            parts.pop();
            for n in 1..=parts.len() {
                dirs.insert(parts.iter().take(n).copied().collect::<Vec<_>>().join("/"));
            }
        }
        Self { files, dirs }
    }

    fn collect(&mut self, root: &Path, dir: &Path) -> Result<(), PolicyError> {
        let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| PolicyError::Read {
                path: dir.to_owned(),
                source,
            })?;
            paths.push(entry.path());
        }
        paths.sort();
        for path in paths {
            let rel = rel_path(root, &path)?;
            if path.is_dir() {
                if dir == root && path.file_name().is_some_and(|n| n == CASES_DIR) {
                    continue;
                }
                self.dirs.insert(rel);
                self.collect(root, &path)?;
            } else if path.extension().is_some_and(|e| e == "toml") {
                let bytes = std::fs::read(&path).map_err(|source| PolicyError::Read {
                    path: path.clone(),
                    source,
                })?;
                let text = String::from_utf8(bytes).map_err(|_| PolicyError::Read {
                    path: path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "not UTF-8 text; save the file as UTF-8",
                    ),
                })?;
                self.files.insert(rel, text);
            }
        }
        Ok(())
    }

    /// SHA-256 over every file, sorted by path; each file contributes its path and its
    /// contents, each preceded by its length as 8 bytes big-endian. Lower-case hex. This is the
    /// policy-set hash recorded with every decision.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (rel, text) in &self.files {
            h.update((rel.len() as u64).to_be_bytes());
            h.update(rel.as_bytes());
            h.update((text.len() as u64).to_be_bytes());
            h.update(text.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The text of one file.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// Whether the sub-directory `sub` exists.
    pub fn has_dir(&self, sub: &str) -> bool {
        self.dirs.contains(sub)
    }

    /// The `.toml` files directly in `sub`, sorted by path.
    pub fn in_dir<'a>(&'a self, sub: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.files.iter().filter_map(move |(path, text)| {
            let rest = path.strip_prefix(sub)?.strip_prefix('/')?;
            (!rest.contains('/')).then_some((path.as_str(), text.as_str()))
        })
    }

    /// Every file, by path.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// The snapshot as stored (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored snapshot, checked against the hash it was stored under.
    pub fn from_json(json: &str, expected_hash: &str) -> Result<Self, String> {
        let files: Self = serde_json::from_str(json)
            .map_err(|e| format!("stored policy set is not readable: {e}"))?;
        let hash = files.hash();
        if hash != expected_hash {
            return Err(format!(
                "stored policy set {expected_hash} does not match its content (hash {hash}): \
                 it was altered"
            ));
        }
        Ok(files)
    }
}

fn rel_path(root: &Path, path: &Path) -> Result<String, PolicyError> {
    let rel = path.strip_prefix(root).map_err(|_| PolicyError::Read {
        path: path.to_owned(),
        source: std::io::Error::other("outside the policy directory"),
    })?;
    Ok(rel.to_string_lossy().replace('\\', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policies_hash_as_before_and_round_trip() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
        let files = PolicyFiles::read(dir).unwrap();
        assert!(files.get("partners.toml").is_some());
        assert!(files.has_dir("kinds") && files.has_dir("mous"));
        assert!(files.files().keys().all(|k| !k.starts_with("cases/")));
        assert!(files.in_dir("kinds").count() >= 3);
        let json = files.to_json();
        assert_eq!(PolicyFiles::from_json(&json, &files.hash()).unwrap(), files);
        let tampered = json.replacen("reveal", "REVEAL", 1);
        assert!(PolicyFiles::from_json(&tampered, &files.hash()).is_err());
    }

    #[test]
    fn paths_name_their_directories() {
        let f = PolicyFiles::from_files(
            [("mous/a.toml".to_owned(), "x".to_owned())]
                .into_iter()
                .collect(),
        );
        assert!(f.has_dir("mous"));
        assert!(!f.has_dir("kinds"));
        assert_eq!(f.in_dir("mous").count(), 1);
        assert_eq!(f.in_dir("mou").count(), 0);
    }
}

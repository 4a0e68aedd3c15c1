//! C2SP signed notes, checkpoints and cosignatures: the public formats in which the gateway
//! publishes its tree heads and partners' witnesses co-sign them.
//!
//! Security role: a checkpoint is the gateway's signed statement of the log's size and root
//! hash; a cosignature is a witness's statement that it checked that checkpoint against every
//! earlier one it saw. Both are in the formats of c2sp.org/signed-note, c2sp.org/tlog-checkpoint
//! and c2sp.org/tlog-cosignature (Ed25519 `cosignature/v1`), so tools that are not ours verify
//! them. They carry hashes only.
//!
//! # Formats
//!
//! - checkpoint body: `<origin>\n<tree size, decimal>\n<root hash, base64>\n`;
//! - signed note: the body, an empty line, then one line per signature:
//!   `— <key name> <base64(key id (4 bytes) || signature)>\n` (U+2014, then a space);
//! - the gateway's signature: Ed25519 over the body; key name = origin; key id =
//!   `SHA-256(name || "\n" || 0x01 || public key)[:4]`;
//! - a cosignature: key id = `SHA-256(name || "\n" || 0x04 || public key)[:4]`, then the
//!   timestamp (u64 big-endian, POSIX seconds), then Ed25519 over
//!   `"cosignature/v1\ntime <timestamp>\n" || body`;
//! - verifier keys (vkeys): `<name>+<key id, 8 hex digits>+<base64(type || public key)>`, type
//!   `0x01` for the gateway's key and `0x04` for a witness's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// A 32-byte tree hash.
pub type Hash = [u8; 32];

/// Signature type of a note signature (Ed25519).
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of an Ed25519 `cosignature/v1`.
pub const TYPE_COSIGNATURE: u8 = 0x04;
/// How a signature line starts.
const SIG_PREFIX: &str = "\u{2014} ";

/// A note or key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoteError(pub String);

fn err(m: impl Into<String>) -> NoteError {
    NoteError(m.into())
}

/// Whether `name` is a valid key name: not empty, no white space, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The 4-byte key id of a key of `kind` named `name`.
pub fn key_id(name: &str, kind: u8, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([kind]);
    h.update(public);
    let d: [u8; 32] = h.finalize().into();
    let [a, b, c, e, ..] = d;
    u32::from_be_bytes([a, b, c, e])
}

/// A verifier key: a name, a signature type and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name.
    pub name: String,
    /// `0x01` (note signatures) or `0x04` (cosignatures).
    pub kind: u8,
    /// The public key.
    pub key: VerifyingKey,
}

impl VerifierKey {
    /// The key id.
    pub fn id(&self) -> u32 {
        key_id(&self.name, self.kind, self.key.as_bytes())
    }

    /// The vkey text: `<name>+<id hex>+<base64(type || key)>`.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.kind];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id(), STANDARD.encode(raw))
    }

    /// Parses a vkey; its key id must match its name and key.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err("a verifier key is `<name>+<key id>+<base64 key>`"));
        };
        if !valid_key_name(name) {
            return Err(err(format!("`{name}` is not a valid key name")));
        }
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("the key id must be 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| err("the key id must be 8 hex digits"))?;
        let raw = STANDARD
            .decode(key)
            .map_err(|_| err("the key is not valid base64"))?;
        let (kind, public) = raw.split_first().ok_or_else(|| err("the key is empty"))?;
        if *kind != TYPE_ED25519 && *kind != TYPE_COSIGNATURE {
            return Err(err(format!(
                "signature type {kind:#04x} is not supported (0x01 Ed25519, 0x04 Ed25519 \
                 cosignature)"
            )));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| err("an Ed25519 public key is 32 bytes"))?;
        let key =
            VerifyingKey::from_bytes(&public).map_err(|_| err("not an Ed25519 public key"))?;
        let vk = Self {
            name: name.to_owned(),
            kind: *kind,
            key,
        };
        if vk.id() != id {
            return Err(err("the key id does not match the name and key"));
        }
        Ok(vk)
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    /// The key name.
    pub name: String,
    /// The key id.
    pub id: u32,
    /// The signature bytes after the key id.
    pub sig: Vec<u8>,
}

impl SignatureLine {
    /// The line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut raw = self.id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }

    fn parse(line: &str) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| err("a signature line starts with `— `"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| err("a signature line is `— <name> <base64>`"))?;
        if !valid_key_name(name) {
            return Err(err(format!("`{name}` is not a valid key name")));
        }
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| err("a signature is not valid base64"))?;
        let Some(([a, b, c, d], sig)) = raw.split_first_chunk::<4>().filter(|(_, s)| !s.is_empty())
        else {
            return Err(err("a signature is too short"));
        };
        let id = u32::from_be_bytes([*a, *b, *c, *d]);
        Ok(Self {
            name: name.to_owned(),
            id,
            sig: sig.to_vec(),
        })
    }
}

/// A signed note: the text and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, ending with a newline.
    pub body: String,
    /// The signatures, in order.
    pub signatures: Vec<SignatureLine>,
}

/// Longest note accepted.
pub const MAX_NOTE: usize = 16 * 1024;

impl Note {
    /// Parses a signed note (c2sp.org/signed-note).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        if text.len() > MAX_NOTE {
            return Err(err(format!("a note is at most {MAX_NOTE} bytes")));
        }
        if text.contains('\r') || text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(err(
                "a note holds no control characters other than newlines",
            ));
        }
        let split = text
            .rfind("\n\n")
            .ok_or_else(|| err("a note is its text, an empty line, then signature lines"))?;
        let body = text.get(..=split).unwrap_or_default().to_owned();
        let sigs = text.get(split + 2..).unwrap_or_default();
        if !sigs.ends_with('\n') {
            return Err(err("a note ends with a newline"));
        }
        let signatures = sigs
            .lines()
            .map(SignatureLine::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.is_empty() {
            return Err(err("a note has at least one signature"));
        }
        Ok(Self { body, signatures })
    }

    /// The note's text form.
    pub fn to_text(&self) -> String {
        let mut out = self.body.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out
    }

    /// Whether the note carries a valid note signature (type 0x01) by `vk`.
    pub fn signed_by(&self, vk: &VerifierKey) -> bool {
        vk.kind == TYPE_ED25519
            && self.signatures.iter().any(|s| {
                s.name == vk.name
                    && s.id == vk.id()
                    && <[u8; 64]>::try_from(s.sig.as_slice()).is_ok_and(|sig| {
                        vk.key
                            .verify(self.body.as_bytes(), &Signature::from_bytes(&sig))
                            .is_ok()
                    })
            })
    }

    /// The timestamp of a valid cosignature (type 0x04) by `vk`, if the note carries one.
    pub fn cosigned_by(&self, vk: &VerifierKey) -> Option<u64> {
        if vk.kind != TYPE_COSIGNATURE {
            return None;
        }
        self.signatures
            .iter()
            .filter(|s| s.name == vk.name && s.id == vk.id())
            .find_map(|s| verify_cosignature(&self.body, s, &vk.key))
    }
}

fn cosigned_message(body: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{body}").into_bytes()
}

/// The timestamp of `line` if it is a valid Ed25519 cosignature of `body` by `key`.
pub fn verify_cosignature(body: &str, line: &SignatureLine, key: &VerifyingKey) -> Option<u64> {
    if line.sig.len() != 72 {
        return None;
    }
    let (ts, sig) = line.sig.split_at(8);
    let ts = u64::from_be_bytes(ts.try_into().ok()?);
    if ts > i64::MAX as u64 {
        return None;
    }
    let sig = Signature::from_bytes(&sig.try_into().ok()?);
    key.verify(&cosigned_message(body, ts), &sig).ok()?;
    Some(ts)
}

/// An Ed25519 signer of notes (type 0x01) or cosignatures (type 0x04).
pub struct NoteSigner {
    name: String,
    kind: u8,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` of `kind` (0x01 or 0x04) with the Ed25519 seed `seed`.
    pub fn new(name: &str, kind: u8, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(err(format!(
                "`{name}` is not a valid key name (no white space, no `+`)"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            kind,
            key: SigningKey::from_bytes(seed),
        })
    }

    /// A signer from parts known to be valid (a constant name).
    pub(crate) fn from_parts(name: &str, kind: u8, seed: &[u8; 32]) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            kind: self.kind,
            key: self.key.verifying_key(),
        }
    }

    /// The private key text `PRIVATE+KEY+<name>+<id>+<base64(type || seed)>`.
    pub fn to_skey(&self) -> String {
        let mut raw = vec![self.kind];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.verifier().id(),
            STANDARD.encode(raw)
        )
    }

    /// Parses a private key text written by [`NoteSigner::to_skey`].
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| err("a private key starts with `PRIVATE+KEY+`"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err(
                "a private key is `PRIVATE+KEY+<name>+<id>+<base64 key>`",
            ));
        };
        let raw = STANDARD
            .decode(key)
            .map_err(|_| err("the private key is not valid base64"))?;
        let (kind, seed) = raw.split_first().ok_or_else(|| err("the key is empty"))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| err("an Ed25519 private key is 32 bytes"))?;
        if *kind != TYPE_ED25519 && *kind != TYPE_COSIGNATURE {
            return Err(err("unsupported signature type"));
        }
        let s = Self::new(name, *kind, &seed)?;
        if format!("{:08x}", s.verifier().id()) != id {
            return Err(err("the key id does not match the name and key"));
        }
        Ok(s)
    }

    /// Signs a note body (type 0x01).
    pub fn sign(&self, body: &str) -> SignatureLine {
        let vk = self.verifier();
        SignatureLine {
            name: self.name.clone(),
            id: vk.id(),
            sig: self.key.sign(body.as_bytes()).to_bytes().to_vec(),
        }
    }

    /// Cosigns a checkpoint body at `timestamp` (type 0x04).
    pub fn cosign(&self, body: &str, timestamp: u64) -> SignatureLine {
        let vk = self.verifier();
        let mut sig = timestamp.to_be_bytes().to_vec();
        sig.extend_from_slice(&self.key.sign(&cosigned_message(body, timestamp)).to_bytes());
        SignatureLine {
            name: self.name.clone(),
            id: vk.id(),
            sig,
        }
    }
}

/// A checkpoint body's three lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// The number of leaves.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
}

/// The checkpoint body for `origin` at `head`.
pub fn checkpoint_body(origin: &str, head: &TreeHead) -> String {
    format!("{origin}\n{}\n{}\n", head.size, STANDARD.encode(head.root))
}

/// Parses a checkpoint body: the origin and the tree head. Extension lines are refused (the
/// gateway writes none).
pub fn parse_checkpoint(body: &str) -> Result<(String, TreeHead), NoteError> {
    let mut lines = body.split_terminator('\n');
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(err(
            "a checkpoint is three lines: origin, tree size, root hash",
        ));
    };
    if lines.next().is_some() || !body.ends_with('\n') {
        return Err(err("a checkpoint of this log has exactly three lines"));
    }
    if origin.is_empty() {
        return Err(err("the origin line is empty"));
    }
    if size.is_empty()
        || !size.bytes().all(|b| b.is_ascii_digit())
        || (size.len() > 1 && size.starts_with('0'))
    {
        return Err(err(
            "the tree size is a decimal number without leading zeros",
        ));
    }
    let size: u64 = size
        .parse()
        .map_err(|_| err("the tree size is out of range"))?;
    let root: Hash = STANDARD
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| err("the root hash is 32 bytes in base64"))?;
    Ok((origin.to_owned(), TreeHead { size, root }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_round_trips_and_verifies() {
        let s = NoteSigner::new("example.org/log", TYPE_ED25519, &[1; 32]).unwrap();
        let body = checkpoint_body(
            "example.org/log",
            &TreeHead {
                size: 42,
                root: [7; 32],
            },
        );
        let note = Note {
            body: body.clone(),
            signatures: vec![s.sign(&body)],
        };
        let text = note.to_text();
        assert!(text.starts_with("example.org/log\n42\nBwcH"));
        assert!(text.contains("\n\n\u{2014} example.org/log "));
        let back = Note::parse(&text).unwrap();
        assert_eq!(back, note);
        let vk = VerifierKey::parse(&s.verifier().to_vkey()).unwrap();
        assert!(back.signed_by(&vk));
        let (origin, head) = parse_checkpoint(&back.body).unwrap();
        assert_eq!(
            (origin.as_str(), head.size, head.root),
            ("example.org/log", 42, [7; 32])
        );
        let forged = text.replace("\n42\n", "\n43\n");
        assert!(!Note::parse(&forged).unwrap().signed_by(&vk));
        let other = NoteSigner::new("example.org/log", TYPE_ED25519, &[2; 32]).unwrap();
        assert!(!back.signed_by(&other.verifier()));
        assert_eq!(
            NoteSigner::parse(&s.to_skey()).unwrap().verifier(),
            s.verifier()
        );
    }

    #[test]
    fn cosignatures_verify_only_for_their_key_and_body() {
        let w = NoteSigner::new("metro-pd", TYPE_COSIGNATURE, &[3; 32]).unwrap();
        let body = "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        let line = w.cosign(body, 1_700_000_000);
        let note = Note {
            body: body.into(),
            signatures: vec![line.clone()],
        };
        assert_eq!(note.cosigned_by(&w.verifier()), Some(1_700_000_000));
        let other = Note {
            body: body.replace("\n1\n", "\n2\n"),
            signatures: vec![line],
        };
        assert_eq!(other.cosigned_by(&w.verifier()), None);
        // A cosignature key does not make note signatures and vice versa.
        assert!(!note.signed_by(&w.verifier()));
    }

    #[test]
    fn malformed_notes_and_keys_are_refused() {
        for bad in [
            "",
            "o\n1\nAA==\n",
            "o\n1\nAA==\n\n",
            "o\n1\nAA==\n\nnot a signature\n",
            "o\n1\nAA==\n\n\u{2014} name !!!\n",
            "o\n1\nAA==\r\n\n\u{2014} a AAAAAAA=\n",
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "a+b", "a+0000000g+AQ==", "a b+00000000+AQ=="] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "o\n01\nAA==\n",
            "o\n1\n",
            "o\n1\nAA==\n",
            "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\next\n",
        ] {
            assert!(parse_checkpoint(bad).is_err(), "{bad:?}");
        }
    }
}

//! The witness's judgement: is the checkpoint a log serves now consistent with the last one
//! the witness saw? Pure: the caller fetches the checkpoint and the consistency proof.
//!
//! Security role: this is what makes a rewrite visible to a partner that reads no entry. A
//! witness keeps the last checkpoint it verified; a later checkpoint that is smaller (a
//! truncation or rollback), of the same size with another root (a fork), or larger without a
//! valid RFC 6962 consistency proof (a rewrite of any earlier entry, a reordering) is a
//! conflict, and the witness keeps both signed checkpoints as evidence instead of cosigning.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::note::{Note, TreeHead, VerifierKey, parse_checkpoint};

use super::tree::{Hash, verify_consistency};

/// A checkpoint the log served, verified against the log's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The signed note as served (the gateway's signature and any cosignatures).
    pub note: Note,
    /// Its tree head.
    pub head: TreeHead,
}

/// What the witness concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No earlier checkpoint: trust on first use.
    First,
    /// The same tree head as before.
    Same,
    /// A larger tree that provably extends the earlier one.
    Extends {
        /// The earlier size.
        from: u64,
    },
    /// The log misbehaved: the two checkpoints cannot both be honest.
    Conflict(String),
}

/// The witness cannot judge (the served note is not a checkpoint of this log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WitnessError(pub String);

/// Verifies a served checkpoint: a note signed by `log_key` whose body is a checkpoint of the
/// log `log_key` names.
pub fn observe(log_key: &VerifierKey, text: &str) -> Result<Observed, WitnessError> {
    let note = Note::parse(text).map_err(|e| WitnessError(format!("not a signed note: {e}")))?;
    if !note.signed_by(log_key) {
        return Err(WitnessError(format!(
            "the checkpoint is not signed by the log key `{}` (key id {:08x})",
            log_key.name,
            log_key.id()
        )));
    }
    let (origin, head) =
        parse_checkpoint(&note.body).map_err(|e| WitnessError(format!("not a checkpoint: {e}")))?;
    if origin != log_key.name {
        return Err(WitnessError(format!(
            "the checkpoint names the log `{origin}`, not `{}`",
            log_key.name
        )));
    }
    Ok(Observed { note, head })
}

/// The sizes a consistency proof is needed for, if any: `Some((old, new))` when the new
/// checkpoint is larger than the earlier one.
pub fn proof_needed(earlier: Option<&Observed>, now: &Observed) -> Option<(u64, u64)> {
    let e = earlier?;
    (e.head.size > 0 && e.head.size < now.head.size).then_some((e.head.size, now.head.size))
}

/// Judges `now` against `earlier` (with the consistency proof for [`proof_needed`], base64).
pub fn judge(earlier: Option<&Observed>, now: &Observed, proof: &[String]) -> Verdict {
    let Some(e) = earlier else {
        return Verdict::First;
    };
    let (old, new) = (e.head, now.head);
    if new.size < old.size {
        return Verdict::Conflict(format!(
            "the log shrank from {} to {} entries: it was truncated or rolled back",
            old.size, new.size
        ));
    }
    if new.size == old.size {
        return if new.root == old.root {
            Verdict::Same
        } else {
            Verdict::Conflict(format!(
                "two different trees of {} entries: the log forked or was rewritten",
                new.size
            ))
        };
    }
    if old.size == 0 {
        return Verdict::Extends { from: 0 };
    }
    let hashes: Option<Vec<Hash>> = proof
        .iter()
        .map(|h| STANDARD.decode(h).ok().and_then(|b| b.try_into().ok()))
        .collect();
    match hashes {
        Some(h) if verify_consistency(old.size, new.size, &old.root, &new.root, &h) => {
            Verdict::Extends { from: old.size }
        }
        _ => Verdict::Conflict(format!(
            "the tree of {} entries does not extend the tree of {} entries seen before (the \
             consistency proof fails): entries were changed, removed or reordered",
            new.size, old.size
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tree::{Frontier, consistency_ranges, range_hash, stored_index};
    use crate::crypto::note::{NoteSigner, TYPE_ED25519, checkpoint_body};
    use std::collections::HashMap;

    fn log(n: u64, tweak: Option<u64>) -> (Frontier, HashMap<u64, Hash>) {
        let mut f = Frontier::default();
        let mut stored = HashMap::new();
        for i in 0..n {
            let mut leaf = [0u8; 32];
            leaf[..8].copy_from_slice(&i.to_be_bytes());
            if tweak == Some(i) {
                leaf[31] = 1;
            }
            f.push(leaf, |k, h| {
                stored.insert(k, h);
            });
        }
        (f, stored)
    }

    fn observed(signer: &NoteSigner, f: &Frontier) -> Observed {
        let body = checkpoint_body(
            signer.name(),
            &TreeHead {
                size: f.size(),
                root: f.root(),
            },
        );
        let text = Note {
            signatures: vec![signer.sign(&body)],
            body,
        }
        .to_text();
        observe(&signer.verifier(), &text).unwrap()
    }

    fn proof(stored: &HashMap<u64, Hash>, old: u64, new: u64) -> Vec<String> {
        let get = |i: u64| stored.get(&i).copied();
        consistency_ranges(old, new)
            .into_iter()
            .map(|(lo, hi)| STANDARD.encode(range_hash(lo, hi, &get).unwrap()))
            .collect()
    }

    #[test]
    fn an_honest_log_extends_and_every_attack_is_a_conflict() {
        let s = NoteSigner::new("example.org/log", TYPE_ED25519, &[1; 32]).unwrap();
        let (f10, _) = log(10, None);
        let (f17, stored17) = log(17, None);
        let seen = observed(&s, &f10);
        let now = observed(&s, &f17);
        assert_eq!(proof_needed(Some(&seen), &now), Some((10, 17)));
        assert_eq!(
            judge(Some(&seen), &now, &proof(&stored17, 10, 17)),
            Verdict::Extends { from: 10 }
        );
        assert_eq!(judge(None, &now, &[]), Verdict::First);
        assert_eq!(judge(Some(&now), &now, &[]), Verdict::Same);
        // Tamper with leaf 3 and re-sign: no proof links the two trees.
        let (t17, tstored) = log(17, Some(3));
        let tampered = observed(&s, &t17);
        assert!(matches!(
            judge(Some(&seen), &tampered, &proof(&tstored, 10, 17)),
            Verdict::Conflict(_)
        ));
        // Truncation, and a fork of the same size.
        assert!(matches!(
            judge(Some(&now), &seen, &[]),
            Verdict::Conflict(_)
        ));
        let (t10, _) = log(10, Some(9));
        assert!(matches!(
            judge(Some(&seen), &observed(&s, &t10), &[]),
            Verdict::Conflict(_)
        ));
        let _ = stored_index(0, 0);
    }

    #[test]
    fn a_checkpoint_of_another_key_or_log_is_refused() {
        let s = NoteSigner::new("example.org/log", TYPE_ED25519, &[1; 32]).unwrap();
        let other = NoteSigner::new("example.org/log", TYPE_ED25519, &[2; 32]).unwrap();
        let (f, _) = log(3, None);
        let text = observed(&other, &f).note.to_text();
        assert!(observe(&s.verifier(), &text).is_err());
        let elsewhere = NoteSigner::new("example.org/other", TYPE_ED25519, &[1; 32]).unwrap();
        let text = observed(&elsewhere, &f).note.to_text();
        assert!(observe(&s.verifier(), &text).is_err());
    }
}

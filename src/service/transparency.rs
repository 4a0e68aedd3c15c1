//! The transparency services: the latest signed tree head with its cosignatures, inclusion and
//! consistency proofs, and witnesses' cosignatures.
//!
//! Security role: these answer any registered partner (its certificate suffices: a witness is
//! an agency's machine, not a person) and carry hashes and signatures only, never entry
//! content. Serving them writes nothing to the log (a witness polling the log must not make it
//! grow); a cosignature posted, accepted or refused, is a `witness_cosignature` entry,
//! committed before the answer. A cosignature is accepted only for a checkpoint this gateway
//! issued, and only from the witness key the partner registry names for the posting partner.

use chrono::{DateTime, Utc};

use super::{Error, Services, log_error};
use crate::audit::transparency::{
    self, Accepted, ConsistencyProof, CosignError, InclusionProof, ProofError,
};
use crate::audit::{EntryKind, NewEntry, Outcome};
use crate::domain::Code;
use crate::domain::{CertFingerprint, PartnerId};

/// Who posts a cosignature: the partner named by the connection's certificate.
#[derive(Debug, Clone, Copy)]
pub struct WitnessCaller<'a> {
    /// The partner.
    pub partner: &'a PartnerId,
    /// Its certificate's SHA-256.
    pub fingerprint: &'a CertFingerprint,
    /// The request id (for the log).
    pub request_id: Option<&'a str>,
    /// The peer address (for the log).
    pub source_addr: Option<&'a str>,
}

impl WitnessCaller<'_> {
    fn entry(&self, at: DateTime<Utc>, outcome: Outcome, detail: String) -> NewEntry {
        let mut e = NewEntry::new(EntryKind::WitnessCosignature, at, outcome);
        e.request_id = self.request_id.map(str::to_owned);
        e.recipient_partner = Some(self.partner.to_string());
        e.source_addr = self.source_addr.map(str::to_owned);
        e.cert_sha256 = Some(self.fingerprint.to_hex());
        e.detail = Some(detail);
        e
    }
}

fn proof_error(e: ProofError) -> Error {
    match e {
        ProofError::Invalid { parameter, message } => Error::invalid_parameter(parameter, message),
        ProofError::Log(e) => log_error(e),
    }
}

impl Services {
    fn require_checkpoints(&self) -> Result<(), Error> {
        if self.log.checkpoint_key().is_none() {
            return Err(Error::not_found(
                Code::CheckpointsDisabled,
                "this gateway signs no checkpoints (no `audit.checkpoint_key_file` configured)",
            ));
        }
        Ok(())
    }

    /// The latest signed tree head as a C2SP signed note, with every cosignature held for it.
    #[tracing::instrument(skip_all)]
    pub async fn latest_checkpoint(&self) -> Result<String, Error> {
        self.require_checkpoints()?;
        match transparency::latest(&self.store).await? {
            Some((cp, cosigs)) => Ok(transparency::with_cosignatures(&cp, &cosigs)),
            None => Err(Error::not_found(
                Code::NoCheckpoint,
                "the log has signed no tree head yet; one is signed every \
                 `audit.checkpoint_every_secs` seconds once entries were appended: retry later",
            )),
        }
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    #[tracing::instrument(skip_all)]
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, Error> {
        self.require_checkpoints()?;
        transparency::inclusion_proof(&self.store, index, size)
            .await
            .map_err(proof_error)
    }

    /// The consistency proof from the tree of `from` leaves to the tree of `to` leaves.
    #[tracing::instrument(skip_all)]
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof, Error> {
        self.require_checkpoints()?;
        transparency::consistency_proof(&self.store, from, to)
            .await
            .map_err(proof_error)
    }

    /// Stores the cosignature of a witness: `note` is a checkpoint this gateway issued,
    /// carrying the cosignature of the witness key registered for the posting partner. The
    /// outcome, accepted or refused, is logged before the answer.
    #[tracing::instrument(skip_all, fields(partner = %caller.partner))]
    pub async fn accept_cosignature(
        &self,
        caller: &WitnessCaller<'_>,
        note: &str,
    ) -> Result<Accepted, Error> {
        let Some(signer) = self.log.checkpoint_signer() else {
            return Err(Error::not_found(
                Code::CheckpointsDisabled,
                "this gateway signs no checkpoints (no `audit.checkpoint_key_file` configured)",
            ));
        };
        let now = self.now();
        let policy = self.policy();
        let key = policy
            .partners
            .get(caller.partner)
            .and_then(|p| p.witness.clone());
        let refuse = |code: Code, message: String| async move {
            let entry = caller.entry(now, Outcome::deny(code.as_str()), message.clone());
            self.log.append(entry).await.map_err(log_error)?;
            Err::<Accepted, Error>(match code {
                Code::WitnessNotRegistered => Error::forbidden(code, message),
                Code::CheckpointUnknown => Error::conflict(code, message),
                _ => Error::invalid(code, message),
            })
        };
        let Some(key) = key else {
            return refuse(
                Code::WitnessNotRegistered,
                format!(
                    "partner `{}` has no witness key in the partner registry; add \
                     `[partner.witness]` to `policies/partners.toml`",
                    caller.partner
                ),
            )
            .await;
        };
        match transparency::accept_cosignature(
            &self.store,
            signer.origin(),
            caller.partner.as_str(),
            &key,
            note,
            now.timestamp_micros(),
        )
        .await
        {
            Ok(accepted) => {
                let entry = caller.entry(
                    now,
                    Outcome::Permit,
                    format!(
                        "cosignature of checkpoint {} (root {}) by witness key `{}`",
                        accepted.size, accepted.root_hash, key.name
                    ),
                );
                self.log.append(entry).await.map_err(log_error)?;
                Ok(accepted)
            }
            Err(CosignError::Malformed(m)) => refuse(Code::InvalidCheckpoint, m).await,
            Err(CosignError::UnknownCheckpoint(m)) => {
                tracing::warn!(
                    partner = %caller.partner,
                    "a witness cosigned a checkpoint this gateway never issued"
                );
                refuse(Code::CheckpointUnknown, m).await
            }
            Err(CosignError::NoCosignature(m)) => refuse(Code::CosignatureInvalid, m).await,
            Err(CosignError::Log(e)) => Err(log_error(e)),
        }
    }
}

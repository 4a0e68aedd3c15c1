//! The vault's gate for aggregate reports: records read for a report yield only the fields the
//! report's [`Grant`] names, and their people only as keyed blind indexes.
//!
//! A grant is made only by [`crate::reports::ReportDef::authorize`], for a runner the reviewed
//! definition lists, and it names per record kind the fields the definition's tables need, whether
//! every version is needed (a referral's status moves) and whether people must be linked. Every
//! record is read and checked exactly as for a disclosure (manifests, bindings, blind indexes,
//! rollback): a record that fails its integrity check fails the report. Values of the other
//! fields are decrypted in memory with the version (the vault opens a version as a whole) and
//! dropped here; subject identifiers are turned into their blind indexes and dropped.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::{RecordError, decrypted, integrity, open_subjects, open_version, record_key, rows};
use crate::crypto::Keyring;
use crate::domain::{PartnerId, RecordId, RecordKind, SubjectIdentifier};
use crate::reports::Grant;
use crate::store::Conn;

/// One record as a report sees it. `Debug` shows no value.
#[derive(Clone, PartialEq)]
pub struct ReportRow {
    /// Id.
    pub id: RecordId,
    /// The holding partner.
    pub owner: PartnerId,
    /// Each version's granted values, oldest first (only the current version unless the grant
    /// asks for the history).
    pub versions: Vec<BTreeMap<String, Value>>,
    /// The blind indexes of the subject's identifiers (empty unless the grant links people).
    pub people: Vec<[u8; 32]>,
}

impl fmt::Debug for ReportRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportRow")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("versions", &self.versions.len())
            .finish_non_exhaustive()
    }
}

fn project(
    fields: &BTreeMap<String, Value>,
    allowed: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, Value> {
    fields
        .iter()
        .filter(|(k, _)| allowed.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn indexes(keyring: &Keyring, subjects: &[SubjectIdentifier]) -> Vec<[u8; 32]> {
    subjects
        .iter()
        .map(|s| *keyring.blind_index(s.system(), s.value()).as_bytes())
        .collect()
}

/// Every record of `kind`, as the grant allows a report to see it. Nothing of a kind the grant
/// does not name is read.
pub async fn report_rows(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    grant: &Grant,
    kind: &RecordKind,
) -> Result<Vec<ReportRow>, RecordError> {
    let Some(allowed) = grant.kind(kind.as_str()) else {
        return Ok(Vec::new());
    };
    let ids = rows::ids_of_kind(c, kind.as_str()).await?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, owner) in ids {
        let bad = |part: &str| integrity(kind.as_str(), &id, part);
        let rid: RecordId = id.parse().map_err(|_| bad("id"))?;
        let owner: PartnerId = owner.parse().map_err(|_| bad("owner"))?;
        let (versions, subjects) = if allowed.history {
            history(c, keyring, kind, &rid).await?
        } else {
            let (rec, _) = super::read_current(c, keyring, kind, &rid).await?;
            let Some(rec) = rec else { continue };
            (vec![rec.fields], rec.subjects)
        };
        out.push(ReportRow {
            id: rid,
            owner,
            versions: versions
                .iter()
                .map(|v| project(v, &allowed.fields))
                .collect(),
            people: if allowed.people {
                indexes(keyring, &subjects)
            } else {
                Vec::new()
            },
        });
    }
    Ok(out)
}

/// Every version of a record, oldest first, each checked against its sealed manifest, and its
/// current subjects.
async fn history(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<(Vec<BTreeMap<String, Value>>, Vec<SubjectIdentifier>), RecordError> {
    let Some(rec) = rows::get(c, kind.as_str(), id.as_str()).await? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let versions = rows::versions(c, &rec.kind, &rec.id).await?;
    if versions.last().map(|v| v.version) != Some(rec.current_version) {
        return Err(integrity(&rec.kind, &rec.id, "current version"));
    }
    let key = record_key(c, keyring, &rec).await?;
    let mut out = Vec::with_capacity(versions.len());
    let mut current_subjects = 0;
    for version in 1..=rec.current_version {
        let v = versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| integrity(&rec.kind, &rec.id, format!("version {version} missing")))?;
        let fields = rows::fields(c, &rec.kind, &rec.id, version).await?;
        let opened = open_version(&key, &rec, v, fields)?;
        current_subjects = opened.manifest.subjects;
        let d = decrypted(kind, id, &rec, version, opened, Vec::new())?;
        out.push(d.fields);
    }
    let subject_rows = rows::subjects(c, &rec.kind, &rec.id).await?;
    let subjects = open_subjects(keyring, &key, &rec, subject_rows, current_subjects)?;
    Ok((out, subjects))
}

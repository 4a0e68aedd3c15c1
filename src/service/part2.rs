//! The list of disclosures of a patient's 42 CFR Part 2 information (42 CFR 2.24):
//! `GET /v1/subjects/{system}/{value}/part2-disclosures` and
//! `coresponse-gateway audit part2-disclosures`.
//!
//! Which disclosed fields were Part 2 information is decided by the labels of the policy set
//! that decided each disclosure: every entry carries its policy-set hash, and the gateway keeps
//! the files of every set it loaded (`policy_sets`), so a field relabelled since still counts as
//! it did then. For entries of a set the database holds no copy of (written before sets were
//! kept), the labels of the set in force are used. The person's other identifiers are gathered
//! as for the accounting, so asking by any of them gives the same list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::instrument;

use super::compliance::Period;
use super::{Caller, Error, Services, log_error};
use crate::audit::part2::{self, MAX_YEARS, Part2Line};
use crate::audit::query::{self, Filter};
use crate::audit::{Entry, EntryKind, Outcome, SubjectPseudonym};
use crate::domain::{Label, PartnerId, SubjectIdentifier};
use crate::policy::{PolicyFiles, PolicySet};
use crate::store::Conn;
use crate::store::policy_changes;

/// A subject's list of Part 2 disclosures.
#[derive(Debug, Clone, Serialize)]
pub struct Part2Disclosures {
    /// The subject's pseudonym (hex).
    pub subject: String,
    /// The period covered.
    pub period: Period,
    /// The disclosures, oldest first.
    pub disclosures: Vec<Part2Line>,
}

/// The policy sets that decided `entries` (by hash), as the database keeps them; sets it has
/// no copy of are missing from the map.
pub async fn deciding_sets(
    c: &mut Conn<'_>,
    entries: &[Entry],
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Arc<PolicySet>>, Error> {
    let hashes: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e.data.policy_hash.as_deref())
        .collect();
    let mut out = BTreeMap::new();
    for h in hashes {
        if let Some(json) = policy_changes::get_set(c, h).await? {
            let files = PolicyFiles::from_json(&json, h).map_err(|e| {
                tracing::error!(alert = "policy_set_integrity", hash = h, "{e}");
                Error::internal(e)
            })?;
            if let Ok((set, _)) = PolicySet::from_files(files, now) {
                out.insert(h.to_owned(), Arc::new(set));
            }
        }
    }
    Ok(out)
}

/// The list from `entries`, with Part 2 fields told by the deciding sets (or `current`).
pub fn compute(
    entries: &[Entry],
    sets: &BTreeMap<String, Arc<PolicySet>>,
    current: &PolicySet,
) -> Vec<Part2Line> {
    part2::list(
        entries,
        |e, f| {
            let set = e
                .data
                .policy_hash
                .as_deref()
                .and_then(|h| sets.get(h))
                .map_or(current, |s| s.as_ref());
            let kind = e.data.record.as_ref().map(|r| r.kind.as_str());
            kind.and_then(|k| set.kinds.get(k))
                .and_then(|k| k.field(&f.field))
                .is_some_and(|fd| fd.labels.contains(&Label::Sud))
        },
        |id| {
            let id: PartnerId = id.parse().ok()?;
            current
                .partners
                .get(&id)
                .map(|p| (p.display_name.clone(), p.postal_address.clone()))
        },
    )
}

/// The filter for a subject's permitted disclosures over `years` years before `now`.
pub fn filter(
    pseudonym: SubjectPseudonym,
    linked: Vec<SubjectPseudonym>,
    now: DateTime<Utc>,
    years: u32,
) -> Filter {
    Filter {
        kinds: vec![EntryKind::Disclosure],
        subject: Some(pseudonym),
        also_subjects: linked,
        outcome: Some("permit".into()),
        since_us: Some(part2::period_start(now, years).timestamp_micros()),
        until_us: Some(now.timestamp_micros()),
        ..Filter::default()
    }
}

/// Checks the `years` asked for: 1 to 3 (42 CFR 2.24(a)(2)).
pub fn check_years(years: u32) -> Result<u32, Error> {
    if (1..=MAX_YEARS).contains(&years) {
        Ok(years)
    } else {
        Err(Error::invalid_parameter(
            "years",
            format!(
                "use 1 to {MAX_YEARS} (42 CFR 2.24 covers disclosures made within the past three \
                 years)"
            ),
        ))
    }
}

impl Services {
    /// A subject's list of Part 2 disclosures over the last `years` years (1 to 3).
    #[instrument(skip_all)]
    pub async fn part2_disclosures(
        &self,
        caller: &Caller<'_>,
        id: &SubjectIdentifier,
        years: u32,
    ) -> Result<Part2Disclosures, Error> {
        self.authorize_compliance(caller, "42 CFR 2.24 list of disclosures")
            .await?;
        let years = check_years(years)?;
        let pseudonym = self.log.pseudonym(id);
        let now = self.now();
        let linked: Vec<SubjectPseudonym> = self
            .linked_identifiers(id)
            .await?
            .iter()
            .map(|s| self.log.pseudonym(s))
            .collect();
        let f = filter(pseudonym, linked, now, years);
        let policy = self.policy();
        let lines = {
            let mut pooled = self.store.acquire().await?;
            let mut c = pooled.conn();
            let mut entries = query::list_all_ascending(&mut c, &f).await?;
            // The basis statement of a medical emergency quotes its sealed documentation.
            self.open_entries(&mut entries)?;
            let sets = deciding_sets(&mut c, &entries, now).await?;
            compute(&entries, &sets, &policy)
        };
        let mut entry = self.read_entry(
            caller,
            Outcome::Permit,
            format!(
                "42 CFR 2.24 list of disclosures over {years} year(s): {} disclosure(s) of Part 2 \
                 information",
                lines.len()
            ),
        );
        entry.subject = Some(pseudonym);
        self.log.append(entry).await.map_err(log_error)?;
        Ok(Part2Disclosures {
            subject: pseudonym.to_hex(),
            period: Period {
                from: query::rfc3339(&part2::period_start(now, years)),
                to: query::rfc3339(&now),
            },
            disclosures: lines,
        })
    }
}

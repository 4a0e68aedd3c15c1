//! Referrals from police to mental-health agencies: creating one, and moving it along its life
//! cycle ([`crate::referral`]). Reading one is a disclosure like any record read (the read
//! service, with the police status view).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::read::REFERRAL_KIND;
use super::records::{
    WriteError, change_entry, check_subjects, commit_with_entry, problems_error, refuse_write,
    write_detail,
};
use super::{Caller, Error, Services, log_error, record_error};
use crate::audit::Outcome;
use crate::domain::Code;
use crate::domain::{Author, PartnerId, PartnerKind, RecordId, RecordKind, SubjectIdentifier};
use crate::policy::schema;
use crate::referral::{self, Actor, ReferralState};
use crate::vault::{self, NewRecord};

/// The record kind a referral is about.
pub const INCIDENT_KIND: &str = "crisis-incident";

/// A new referral, as the referring police agency states it.
#[derive(Debug, Clone)]
pub struct NewReferral {
    /// The agency's crisis incident the referral comes from.
    pub incident_id: String,
    /// The person's identifiers.
    pub subjects: Vec<SubjectIdentifier>,
    /// The receiving mental-health agency (partner id).
    pub receiving_agency: String,
    /// Why.
    pub reason: String,
    /// How urgent.
    pub urgency: String,
    /// The consent the referral relies on, if any.
    pub consent_reference: Option<String>,
    /// The person's name.
    pub subject_name: Option<String>,
    /// The person's phone number.
    pub subject_phone: Option<String>,
}

/// A requested move.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The state asked for, as sent.
    pub to: String,
    /// A note on the move (replaces the previous one; none removes it).
    pub note: Option<String>,
    /// The clinician to contact (receiving agency only).
    pub clinician_contact: Option<String>,
}

/// A referral as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Its id.
    pub id: RecordId,
    /// Its record version.
    pub version: i64,
    /// The receiving agency.
    pub receiving_agency: PartnerId,
    /// The incident.
    pub incident_id: RecordId,
}

/// A referral as moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Its id.
    pub id: RecordId,
    /// Its new state.
    pub status: ReferralState,
    /// Its record version.
    pub version: i64,
    /// The states the same actor may move it to next.
    pub allowed_next: Vec<ReferralState>,
}

/// The `referral` record kind.
pub fn referral_kind() -> Result<RecordKind, Error> {
    RecordKind::try_from(REFERRAL_KIND.to_owned()).map_err(Error::internal)
}

fn not_found(id: &RecordId) -> Error {
    Error::not_found(
        Code::ReferralNotFound,
        format!("there is no referral `{id}` between your agency and a partner"),
    )
}

fn now_text(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Services {
    /// Creates a referral in state SUBMITTED: `POST /v1/referrals`.
    #[instrument(skip_all)]
    pub async fn create_referral(
        &self,
        caller: &Caller<'_>,
        body: NewReferral,
    ) -> Result<Created, Error> {
        let who = caller.principal;
        let policy = self.policy();
        let Some(schema_kind) = policy.kinds.get(REFERRAL_KIND) else {
            return Err(Error::Unavailable(anyhow::anyhow!(
                "the policy set declares no `referral` kind"
            )));
        };
        let id: RecordId = format!("REF-{}", Uuid::now_v7().simple())
            .parse()
            .map_err(|e: crate::domain::InvalidInput| Error::internal(e))?;
        let kind = referral_kind()?;
        if who.partner_kind != schema_kind.owner {
            let answer = Error::forbidden(
                Code::NotOwnerKind,
                format!(
                    "referrals are made by {} partners; `{}` is a {} partner",
                    schema_kind.owner, who.partner, who.partner_kind
                ),
            );
            return Err(refuse_write(self, caller, (&kind, &id), answer).await);
        }
        check_subjects(&body.subjects)?;
        let receiving: PartnerId = body
            .receiving_agency
            .parse()
            .ok()
            .filter(|p| policy.partner_kind(p) == Some(PartnerKind::MentalHealth))
            .ok_or_else(|| {
                let mh: Vec<String> = policy
                    .partners
                    .iter()
                    .filter(|p| p.kind == PartnerKind::MentalHealth)
                    .map(|p| p.id.to_string())
                    .collect();
                Error::invalid_field(
                    Code::UnknownReceivingAgency,
                    "receiving_agency",
                    format!(
                        "`receiving_agency` must be a registered mental-health partner: {}",
                        mh.join(", ")
                    ),
                )
            })?;
        let incident_kind =
            RecordKind::try_from(INCIDENT_KIND.to_owned()).map_err(Error::internal)?;
        let incident: RecordId =
            body.incident_id
                .parse()
                .map_err(|e: crate::domain::InvalidInput| {
                    Error::invalid_field(
                        Code::UnknownIncident,
                        "incident_id",
                        format!("`incident_id`: {e}"),
                    )
                })?;
        let owner = {
            let mut pooled = self.store.acquire().await?;
            vault::record_owner(&mut pooled.conn(), &incident_kind, &incident)
                .await
                .map_err(record_error)?
        };
        if owner.as_ref() != Some(&who.partner) {
            return Err(Error::invalid_field(
                Code::UnknownIncident,
                "incident_id",
                format!(
                    "`{}` holds no crisis incident `{incident}`; write the incident first with \
                     `PUT /v1/records/crisis-incident/{incident}`",
                    who.partner
                ),
            ));
        }

        let now = self.now();
        let mut fields = serde_json::Map::new();
        let mut set = |k: &str, v: Value| {
            fields.insert(k.to_owned(), v);
        };
        set("referral_id", json!(id));
        set("incident_id", json!(incident));
        set("referring_officer", json!(who.user));
        set("referring_agency", json!(who.partner));
        set("receiving_agency", json!(receiving));
        set("reason", json!(body.reason));
        set("urgency", json!(body.urgency));
        set("status", json!(ReferralState::Submitted.as_str()));
        set("status_updated_at", json!(now_text(now)));
        for (k, v) in [
            ("consent_reference", body.consent_reference),
            ("subject_name", body.subject_name),
            ("subject_phone", body.subject_phone),
        ] {
            if let Some(v) = v {
                set(k, json!(v));
            }
        }
        let fields = schema::check_write(schema_kind, who.partner_kind, &fields, None)
            .map_err(problems_error)?;
        let author = Author::from(who);
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let outcome = vault::edit_record(
            &mut tx.conn(),
            &self.keyring,
            &kind,
            &id,
            &author,
            now,
            |current| -> Result<NewRecord, WriteError> {
                if current.is_some() {
                    return Err(WriteError::Refused(Error::conflict(
                        Code::WriteConflict,
                        "a referral with this id exists; retry",
                    )));
                }
                Ok(NewRecord {
                    kind: kind.clone(),
                    id: id.clone(),
                    owner: who.partner.clone(),
                    subjects: body.subjects.clone(),
                    fields,
                })
            },
        )
        .await?;
        let entry = change_entry(
            self,
            caller,
            Outcome::Permit,
            (&kind, &id),
            body.subjects.first().map(|s| self.log.pseudonym(s)),
            write_detail("referral submitted", &outcome),
        );
        commit_with_entry(tx, entry, (&kind, &id)).await?;
        Ok(Created {
            id,
            version: outcome.version,
            receiving_agency: receiving,
            incident_id: incident,
        })
    }

    /// Moves a referral along its life cycle: `POST /v1/referrals/{id}/transitions`. A partner
    /// that is no party to it is told there is no such referral; a move the life cycle does not
    /// allow is a conflict naming the allowed states. Both refusals are logged.
    #[instrument(skip_all, fields(id = %id))]
    pub async fn move_referral(
        &self,
        caller: &Caller<'_>,
        id: &RecordId,
        body: Transition,
    ) -> Result<Moved, Error> {
        let who = caller.principal;
        let to = ReferralState::parse(&body.to).ok_or_else(|| {
            Error::invalid_field(
                Code::UnknownState,
                "to",
                format!(
                    "`to` must be a referral state (e.g. RECEIVED, ASSIGNED, WITHDRAWN), not `{}`",
                    body.to
                ),
            )
        })?;
        let policy = self.policy();
        let Some(schema_kind) = policy.kinds.get(REFERRAL_KIND) else {
            return Err(Error::Unavailable(anyhow::anyhow!(
                "the policy set declares no `referral` kind"
            )));
        };
        let kind = referral_kind()?;
        let author = Author::from(who);
        let now = self.now();
        let mut allowed_after = Vec::new();
        let mut moved_from = None;
        let mut subject = None;
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let edited = vault::edit_record(
            &mut tx.conn(),
            &self.keyring,
            &kind,
            id,
            &author,
            now,
            |current| -> Result<NewRecord, WriteError> {
                let current = current.ok_or_else(|| WriteError::Refused(not_found(id)))?;
                let receiver = current
                    .fields
                    .get("receiving_agency")
                    .and_then(Value::as_str);
                let actor = if current.owner == &who.partner {
                    Actor::Referrer
                } else if receiver == Some(who.partner.as_str()) {
                    Actor::Receiver
                } else {
                    return Err(WriteError::Refused(not_found(id)));
                };
                let from = current
                    .fields
                    .get("status")
                    .and_then(Value::as_str)
                    .and_then(ReferralState::parse)
                    .ok_or_else(|| {
                        WriteError::Refused(Error::internal(format!(
                            "referral `{id}` holds no valid status"
                        )))
                    })?;
                referral::transition(from, to, actor).map_err(|e| {
                    WriteError::Refused(Error::Conflict {
                        code: Code::InvalidTransition,
                        message: e.to_string(),
                        details: Some(json!({
                            "from": e.from,
                            "to": e.to,
                            "allowed": e.allowed,
                        })),
                    })
                })?;
                if body.clinician_contact.is_some() && actor != Actor::Receiver {
                    return Err(WriteError::Refused(Error::invalid_field(
                        Code::NotWritable,
                        "clinician_contact",
                        "`clinician_contact` is set by the receiving agency",
                    )));
                }
                allowed_after = referral::allowed_next(to, actor);
                moved_from = Some(from);
                subject = current.subjects.first().map(|s| self.log.pseudonym(s));
                let mut fields = current.fields.clone();
                fields.insert("status".into(), json!(to));
                fields.insert("status_updated_at".into(), json!(now_text(now)));
                // The engagement outcome outlives the move to CLOSED.
                if matches!(
                    to,
                    ReferralState::Engaged
                        | ReferralState::Declined
                        | ReferralState::UnableToContact
                ) && schema_kind.field("engagement_outcome").is_some()
                {
                    fields.insert("engagement_outcome".into(), json!(to));
                }
                match &body.note {
                    Some(n) => fields.insert("status_note".into(), json!(n)),
                    None => fields.remove("status_note"),
                };
                if let Some(c) = &body.clinician_contact {
                    fields.insert("clinician_contact".into(), json!(c));
                }
                // Every value is checked against the schema again (a note or contact of the
                // wrong shape is an error naming it).
                for (name, value) in &fields {
                    if let Some(def) = schema_kind.field(name)
                        && let Err(why) = schema::check_value(def, value)
                    {
                        return Err(WriteError::Refused(problems_error(vec![
                            schema::FieldProblem::wrong_type(name, why),
                        ])));
                    }
                }
                Ok(NewRecord {
                    kind: kind.clone(),
                    id: id.clone(),
                    owner: current.owner.clone(),
                    subjects: current.subjects.to_vec(),
                    fields,
                })
            },
        )
        .await;
        let outcome = match edited {
            Ok(o) => o,
            // A partner that is no party to the referral, or a move the life cycle does not
            // allow: refused acts, logged before the answer.
            Err(WriteError::Refused(answer))
                if matches!(
                    answer.code(),
                    Code::ReferralNotFound | Code::InvalidTransition
                ) =>
            {
                drop(tx);
                return Err(refuse_write(self, caller, (&kind, id), answer).await);
            }
            Err(e) => return Err(e.into()),
        };
        let what = format!(
            "referral moved {} -> {to}",
            moved_from.map_or("?", ReferralState::as_str)
        );
        let entry = change_entry(
            self,
            caller,
            Outcome::Permit,
            (&kind, id),
            subject,
            write_detail(&what, &outcome),
        );
        commit_with_entry(tx, entry, (&kind, id)).await?;
        Ok(Moved {
            id: id.clone(),
            status: to,
            version: outcome.version,
            allowed_next: allowed_after,
        })
    }
}

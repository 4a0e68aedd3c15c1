//! Redaction: applies a [`Permit`] to a record and produces what the recipient receives.
//!
//! Security role: [`apply`] takes a [`Permit`], which only a permit decision can produce, so
//! nothing can be disclosed without one. Every field leaves as the plan says or not at all; a
//! value that does not fit its transform fails the whole disclosure (fail closed) rather than
//! leaving in an unplanned form. Pseudonym keys are derived per recipient from a gateway secret;
//! encrypted fields are sealed to the recipient's registered key, checked to be that partner's.

pub mod transforms;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use crate::crypto::{JweError, RecipientKey};

use crate::domain::{Generalization, Label, Transform};
use crate::policy::Permit;

/// A stored record: its kind, id and field values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Record kind.
    pub kind: String,
    /// Record id.
    pub id: String,
    /// Field values by field name.
    pub fields: BTreeMap<String, Value>,
}

/// The 42 CFR 2.32(a) notice attached to every disclosure that holds Part 2 fields.
pub const PART2_NOTICE: &str = "This record which has been disclosed to you is protected by \
Federal confidentiality rules (42 CFR part 2). These rules prohibit you from using or disclosing \
this record, or testimony that describes the information contained in this record, in any civil, \
criminal, administrative, or legislative proceedings by any Federal, State, or local authority, \
against the patient, unless authorized by the consent of the patient, except as provided at 42 \
CFR 2.12(c)(5) or as authorized by a court in accordance with 42 CFR 2.64 or 2.65. In addition, \
the Federal rules prohibit you from making any other use or disclosure of this record unless at \
least one of the following applies: (i) Further use or disclosure is expressly permitted by the \
written consent of the individual whose information is being disclosed in this record or as \
otherwise permitted by 42 CFR part 2. (ii) You are a covered entity or business associate and \
have received the record for treatment, payment, or health care operations, or (iii) You have \
received the record from a covered entity or business associate as permitted by 45 CFR part \
164, subparts A and E. A general authorization for the release of medical or other information \
is NOT sufficient to meet the required elements of written consent to further use or redisclose \
the record (see 42 CFR 2.31).";

/// The HL7 refrain code attached with the Part 2 notice: no redisclosure without consent.
pub const NO_REDISCLOSURE_CODE: &str = "NORDSCLCD";

/// What the recipient receives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disclosed {
    /// The decision that allowed it.
    pub decision_id: Uuid,
    /// Record kind.
    pub kind: String,
    /// Record id.
    pub id: String,
    /// Disclosed fields only, each transformed.
    pub fields: BTreeMap<String, Value>,
    /// Notices the recipient must honour (the Part 2 notice when Part 2 fields are present).
    pub notices: Vec<String>,
    /// HL7 refrain codes (`NORDSCLCD` with Part 2 fields).
    pub refrains: Vec<String>,
}

/// Keys the redaction step needs.
#[derive(Clone, Copy)]
pub struct RedactionKeys<'a> {
    /// The gateway's pseudonym secret (at least 32 bytes); per-recipient keys derive from it.
    pub pseudonym_secret: &'a [u8],
    /// The recipient's registered encryption key, needed when the plan encrypts a field.
    pub recipient_key: Option<&'a RecipientKey>,
}

impl std::fmt::Debug for RedactionKeys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactionKeys")
            .field("recipient_key", &self.recipient_key)
            .finish_non_exhaustive()
    }
}

/// Why a disclosure could not be produced. Nothing is disclosed on error.
#[derive(Debug, thiserror::Error)]
pub enum RedactionError {
    /// The record is not of the permit's kind.
    #[error("the record is of kind `{record}` but the permit is for `{permit}`")]
    KindMismatch {
        /// The record's kind.
        record: String,
        /// The permit's kind.
        permit: String,
    },
    /// A value does not fit its transform.
    #[error("field `{field}`: {source}")]
    Value {
        /// The field.
        field: String,
        /// What was expected.
        source: transforms::ValueError,
    },
    /// The plan encrypts but no key of the recipient was given.
    #[error("the plan encrypts field `{field}` but no encryption key for `{recipient}` was given")]
    NoRecipientKey {
        /// The field.
        field: String,
        /// The recipient.
        recipient: String,
    },
    /// The key given belongs to another partner.
    #[error(
        "the encryption key given belongs to `{key_owner}`, not to the recipient `{recipient}`"
    )]
    WrongRecipientKey {
        /// Owner of the key given.
        key_owner: String,
        /// The recipient.
        recipient: String,
    },
    /// The pseudonym secret is too short.
    #[error("the pseudonym secret must be at least 32 bytes")]
    WeakSecret,
    /// Encryption failed.
    #[error(transparent)]
    Jwe(#[from] JweError),
}

/// Applies a permit to a record.
pub fn apply(
    permit: &Permit,
    record: &Record,
    keys: &RedactionKeys<'_>,
) -> Result<Disclosed, RedactionError> {
    if record.kind != permit.kind() {
        return Err(RedactionError::KindMismatch {
            record: record.kind.clone(),
            permit: permit.kind().to_owned(),
        });
    }
    if keys.pseudonym_secret.len() < 32 {
        return Err(RedactionError::WeakSecret);
    }
    if let Some(k) = keys.recipient_key
        && &k.partner != permit.recipient()
    {
        return Err(RedactionError::WrongRecipientKey {
            key_owner: k.partner.to_string(),
            recipient: permit.recipient().to_string(),
        });
    }
    let mut fields = BTreeMap::new();
    let mut part2 = false;
    for plan in permit.fields() {
        if plan.transform == Transform::Omit {
            continue;
        }
        let Some(value) = record.fields.get(&plan.field) else {
            continue;
        };
        let out = if value.is_null() {
            Value::Null
        } else {
            transform_value(permit, &plan.field, plan.transform, value, keys)?
        };
        part2 |= plan.labels.contains(&Label::Sud);
        fields.insert(plan.field.clone(), out);
    }
    let (notices, refrains) = if part2 {
        (
            vec![PART2_NOTICE.to_owned()],
            vec![NO_REDISCLOSURE_CODE.to_owned()],
        )
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Disclosed {
        decision_id: permit.decision_id(),
        kind: record.kind.clone(),
        id: record.id.clone(),
        fields,
        notices,
        refrains,
    })
}

fn transform_value(
    permit: &Permit,
    field: &str,
    t: Transform,
    v: &Value,
    keys: &RedactionKeys<'_>,
) -> Result<Value, RedactionError> {
    let err = |source| RedactionError::Value {
        field: field.to_owned(),
        source,
    };
    let need_str = || {
        v.as_str().ok_or(transforms::ValueError {
            expected: "a string",
        })
    };
    Ok(match t {
        Transform::Reveal => v.clone(),
        Transform::Omit => Value::Null,
        Transform::Mask { keep, chars } => {
            Value::String(transforms::mask(need_str().map_err(err)?, keep, chars))
        }
        Transform::Generalize { to } => match to {
            Generalization::Year | Generalization::Month => Value::String(
                transforms::generalize_date(need_str().map_err(err)?, to).map_err(err)?,
            ),
            Generalization::AgeBand => {
                let age = v
                    .as_i64()
                    .ok_or(transforms::ValueError {
                        expected: "an integer age",
                    })
                    .map_err(err)?;
                Value::String(transforms::age_band(age).map_err(err)?)
            }
            Generalization::City | Generalization::Zip3 => {
                transforms::generalize_address(v, to).map_err(err)?
            }
        },
        Transform::Pseudonymize => Value::String(transforms::pseudonymize(
            keys.pseudonym_secret,
            permit.recipient(),
            v,
        )),
        Transform::Encrypt => {
            let key = keys
                .recipient_key
                .ok_or_else(|| RedactionError::NoRecipientKey {
                    field: field.to_owned(),
                    recipient: permit.recipient().to_string(),
                })?;
            Value::String(crate::crypto::jwe::encrypt(key, v.to_string().as_bytes())?)
        }
    })
}

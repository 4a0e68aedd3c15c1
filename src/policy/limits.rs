//! Hard limits: rules of law the engine enforces whatever the MOUs say.
//!
//! Security role: these checks run twice. At load time an MOU rule that could break one is a
//! validation error (never a silent drop), and at decision time every field is checked again
//! against the actual recipient, purpose, legal basis and consent, so even a policy set that
//! somehow passed validation cannot release such a field.

use std::collections::BTreeSet;

use serde::Serialize;

use super::Label;
use super::model::{LegalBasis, is_law_enforcement_purpose};
use crate::domain::PartnerKind;

/// A hard limit of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HardLimit {
    /// 42 CFR 2.12(d): Part 2 records are never used to investigate or prosecute the patient;
    /// no Part 2 field reaches police for `investigation` or `prosecution`.
    Part2LawEnforcement,
    /// HIPAA 164.512(j) and 42 CFR 2.51: the emergency profile never carries Part 2 fields to
    /// police (the Part 2 medical-emergency exception is for medical personnel only).
    Part2EmergencyToPolice,
    /// 42 CFR 2.51: in an emergency, Part 2 information leaves without consent only to medical
    /// personnel in a bona fide medical emergency (a `medical-emergency` rule), never on the
    /// serious-and-imminent-threat profile of HIPAA 164.512(j).
    Part2MedicalEmergencyOnly,
    /// 42 CFR 2.31: Part 2 fields leave only with the patient's consent, or to medical
    /// personnel in a medical emergency (2.51); "permitted by law" is not enough.
    Part2RequiresConsent,
    /// HIPAA 164.508(a)(2): psychotherapy notes leave only with a consent naming them.
    PsychotherapyNotesRequireConsent,
    /// CJIS Security Policy: criminal-justice information goes to a non-criminal-justice
    /// agency only when the MOU names the field explicitly (`release_cji`).
    CjiToNonCriminalJustice,
}

impl HardLimit {
    /// Stable code, used in reasons and diagnostics.
    pub fn code(self) -> &'static str {
        match self {
            Self::Part2LawEnforcement => "hard-limit-part2-law-enforcement",
            Self::Part2EmergencyToPolice => "hard-limit-part2-emergency-police",
            Self::Part2MedicalEmergencyOnly => "hard-limit-part2-medical-emergency",
            Self::Part2RequiresConsent => "hard-limit-part2-consent",
            Self::PsychotherapyNotesRequireConsent => "hard-limit-psychotherapy-notes",
            Self::CjiToNonCriminalJustice => "hard-limit-cji",
        }
    }

    /// The rule of law, in one sentence with its citation.
    pub fn explanation(self) -> &'static str {
        match self {
            Self::Part2LawEnforcement => {
                "42 CFR 2.12: substance-use (Part 2) information is never disclosed to police \
                 to investigate or prosecute the patient"
            }
            Self::Part2EmergencyToPolice => {
                "HIPAA 164.512(j) / 42 CFR 2.51: the emergency profile never carries \
                 substance-use (Part 2) information to police"
            }
            Self::Part2MedicalEmergencyOnly => {
                "42 CFR 2.51: in an emergency, substance-use (Part 2) information leaves \
                 without consent only to medical personnel in a bona fide medical emergency"
            }
            Self::Part2RequiresConsent => {
                "42 CFR 2.31: substance-use (Part 2) information leaves only with the patient's \
                 written consent (or to medical personnel in a medical emergency)"
            }
            Self::PsychotherapyNotesRequireConsent => {
                "HIPAA 164.508(a)(2): psychotherapy notes leave only with a consent that names \
                 them"
            }
            Self::CjiToNonCriminalJustice => {
                "CJIS Security Policy: criminal-justice information goes to a \
                 non-criminal-justice agency only when the MOU names the field in `release_cji`"
            }
        }
    }

    /// How to fix a policy that breaks the limit.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Part2LawEnforcement | Self::Part2EmergencyToPolice => {
                "set this field to `omit` in this rule, or drop police recipients / \
                 law-enforcement purposes from the rule"
            }
            Self::Part2MedicalEmergencyOnly => {
                "omit the field from the `emergency` profile; release it to medical personnel in \
                 a `legal_basis = \"medical-emergency\"` rule (42 CFR 2.51)"
            }
            Self::Part2RequiresConsent => {
                "use `legal_basis = \"consent\"` for rules that release Part 2 fields, or omit \
                 the field"
            }
            Self::PsychotherapyNotesRequireConsent => {
                "use `legal_basis = \"consent\"`; at decision time the consent must also name \
                 the field itself"
            }
            Self::CjiToNonCriminalJustice => {
                "add the field to the rule's `release_cji` list if the signed MOU names it, or \
                 omit it"
            }
        }
    }
}

/// The facts a field-level hard-limit check needs.
#[derive(Debug, Clone, Copy)]
pub struct FieldFlow<'a> {
    /// The field's labels.
    pub labels: &'a BTreeSet<Label>,
    /// The recipient's partner kind.
    pub recipient_kind: PartnerKind,
    /// The stated purpose.
    pub purpose: &'a str,
    /// The legal basis of the rule releasing the field.
    pub basis: &'a LegalBasis,
    /// Whether the rule names the field in `release_cji`.
    pub cji_named: bool,
    /// Whether a consent names this very field (only meaningful under a consent basis; pass
    /// `true` at validation time, when consents are not known yet).
    pub consent_names_field: bool,
}

/// The hard limits a court order (42 CFR 2.64, 2.65) does not lift: it authorizes the Part 2
/// information it names, so the Part 2 limits give way for those fields, but psychotherapy
/// notes still need a consent naming them and criminal-justice information still needs an MOU
/// naming it for a non-police recipient.
pub fn check_court_order(
    labels: &BTreeSet<Label>,
    recipient_kind: PartnerKind,
) -> Option<HardLimit> {
    if labels.contains(&Label::PsychotherapyNotes) {
        return Some(HardLimit::PsychotherapyNotesRequireConsent);
    }
    if labels.contains(&Label::Cji) && recipient_kind != PartnerKind::Police {
        return Some(HardLimit::CjiToNonCriminalJustice);
    }
    None
}

/// The first hard limit the flow breaks, if any. Only called for a transform that lets some of
/// the value out (anything but `omit`).
pub fn check(flow: &FieldFlow<'_>) -> Option<HardLimit> {
    let police = flow.recipient_kind == PartnerKind::Police;
    if flow.labels.contains(&Label::Sud) {
        if police && is_law_enforcement_purpose(flow.purpose) {
            return Some(HardLimit::Part2LawEnforcement);
        }
        match flow.basis {
            LegalBasis::Emergency { .. } | LegalBasis::MedicalEmergency { .. } if police => {
                return Some(HardLimit::Part2EmergencyToPolice);
            }
            LegalBasis::Emergency { .. } => return Some(HardLimit::Part2MedicalEmergencyOnly),
            LegalBasis::Law { .. } => return Some(HardLimit::Part2RequiresConsent),
            LegalBasis::Consent | LegalBasis::MedicalEmergency { .. } => {}
        }
    }
    if flow.labels.contains(&Label::PsychotherapyNotes)
        && !(matches!(flow.basis, LegalBasis::Consent) && flow.consent_names_field)
    {
        return Some(HardLimit::PsychotherapyNotesRequireConsent);
    }
    if flow.labels.contains(&Label::Cji) && !police && !flow.cji_named {
        return Some(HardLimit::CjiToNonCriminalJustice);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow<'a>(
        labels: &'a BTreeSet<Label>,
        kind: PartnerKind,
        purpose: &'a str,
        basis: &'a LegalBasis,
    ) -> FieldFlow<'a> {
        FieldFlow {
            labels,
            recipient_kind: kind,
            purpose,
            basis,
            cji_named: false,
            consent_names_field: false,
        }
    }

    #[test]
    fn part2_never_reaches_police_for_investigation_even_with_consent() {
        let sud = [Label::Sud].into();
        let consent = LegalBasis::Consent;
        for p in ["investigation", "prosecution"] {
            let f = FieldFlow {
                consent_names_field: true,
                ..flow(&sud, PartnerKind::Police, p, &consent)
            };
            assert_eq!(check(&f), Some(HardLimit::Part2LawEnforcement));
        }
        let f = flow(&sud, PartnerKind::Police, "crisis-response", &consent);
        assert_eq!(check(&f), None);
    }

    #[test]
    fn part2_needs_consent_and_never_goes_to_police_in_an_emergency() {
        let sud = [Label::Sud].into();
        let law = LegalBasis::Law {
            citation: "x".into(),
        };
        let em = LegalBasis::Emergency {
            citation: "x".into(),
        };
        let f = flow(&sud, PartnerKind::MentalHealth, "treatment", &law);
        assert_eq!(check(&f), Some(HardLimit::Part2RequiresConsent));
        let f = flow(&sud, PartnerKind::Police, "emergency", &em);
        assert_eq!(check(&f), Some(HardLimit::Part2EmergencyToPolice));
        // The serious-and-imminent-threat profile carries no Part 2 field to anyone: only a
        // 42 CFR 2.51 medical emergency does, to medical personnel, never to police.
        let f = flow(&sud, PartnerKind::MentalHealth, "emergency", &em);
        assert_eq!(check(&f), Some(HardLimit::Part2MedicalEmergencyOnly));
        let med = LegalBasis::MedicalEmergency {
            citation: "42 CFR 2.51".into(),
        };
        let f = flow(&sud, PartnerKind::MentalHealth, "emergency", &med);
        assert_eq!(check(&f), None);
        let f = flow(&sud, PartnerKind::Police, "emergency", &med);
        assert_eq!(check(&f), Some(HardLimit::Part2EmergencyToPolice));
    }

    #[test]
    fn a_court_order_lifts_only_the_part2_limits() {
        let sud: BTreeSet<Label> = [Label::Sud, Label::Clinical].into();
        assert_eq!(check_court_order(&sud, PartnerKind::Police), None);
        let notes: BTreeSet<Label> = [Label::Sud, Label::PsychotherapyNotes].into();
        assert_eq!(
            check_court_order(&notes, PartnerKind::Police),
            Some(HardLimit::PsychotherapyNotesRequireConsent)
        );
        let cji: BTreeSet<Label> = [Label::Cji].into();
        assert_eq!(
            check_court_order(&cji, PartnerKind::MentalHealth),
            Some(HardLimit::CjiToNonCriminalJustice)
        );
    }

    #[test]
    fn psychotherapy_notes_need_a_consent_naming_them() {
        let notes = [Label::PsychotherapyNotes].into();
        let consent = LegalBasis::Consent;
        let f = flow(&notes, PartnerKind::MentalHealth, "treatment", &consent);
        assert_eq!(check(&f), Some(HardLimit::PsychotherapyNotesRequireConsent));
        let f = FieldFlow {
            consent_names_field: true,
            ..f
        };
        assert_eq!(check(&f), None);
    }

    #[test]
    fn cji_needs_an_explicit_release_for_non_police() {
        let cji = [Label::Cji].into();
        let law = LegalBasis::Law {
            citation: "x".into(),
        };
        let f = flow(&cji, PartnerKind::MentalHealth, "treatment", &law);
        assert_eq!(check(&f), Some(HardLimit::CjiToNonCriminalJustice));
        assert_eq!(
            check(&FieldFlow {
                cji_named: true,
                ..f
            }),
            None
        );
        let f = flow(&cji, PartnerKind::Police, "investigation", &law);
        assert_eq!(check(&f), None);
    }
}

//! The machine-readable codes of the gateway's answers: every `code` an error body, a refused
//! connection or `/healthz` can carry, one variant each, so a code cannot be mistyped and the
//! README's error table is checked against this list by a test (both ways).
//!
//! [`HandshakeRefusal`] does the same for the security events of refused TLS handshakes,
//! which never reach HTTP.
//!
//! The codes are part of the API: a client branches on them. Renaming one breaks clients;
//! add a new one instead. Codes inside `details` (a field's problem, a directive's problem)
//! are not listed here: they belong to the check that finds the problem.

use std::fmt;

/// An enum of codes, each variant with its text: the enum, `ALL` and `as_str` from one list.
macro_rules! code_enum {
    (
        $(#[doc = $edoc:literal])+
        $vis:vis enum $enum:ident {
            $($(#[doc = $doc:literal])+ $name:ident = $text:literal,)+
        }
    ) => {
        $(#[doc = $edoc])+
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $enum {
            $($(#[doc = $doc])+ $name,)+
        }

        impl $enum {
            /// Every code, in the order the README lists them.
            pub const ALL: &'static [$enum] = &[$($enum::$name,)+];

            /// The code as it is written (`snake_case`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($enum::$name => $text,)+
                }
            }

            /// The code for `text`, if it is one.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.as_str() == text)
            }
        }

        impl fmt::Display for $enum {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $enum {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

code_enum! {
    /// A machine-readable answer code (see the module docs).
    pub enum Code {
        // 400: the request.
        /// The body is not valid JSON (or not the JSON shape the route takes).
        InvalidJson = "invalid_json",
        /// The JSON body nests deeper than the gateway reads.
        JsonTooDeep = "json_too_deep",
        /// The body could not be read from the connection.
        BodyUnreadable = "body_unreadable",
        /// The body ended early, or its transfer or content encoding is broken.
        InvalidBody = "invalid_body",
        /// A path segment is not a valid identifier.
        InvalidPath = "invalid_path",
        /// The query string is malformed.
        InvalidQuery = "invalid_query",
        /// A required header is missing.
        HeaderMissing = "header_missing",
        /// A header is malformed or sent more than once.
        InvalidHeader = "invalid_header",
        /// The HTTP parser refused the request; the connection is closed.
        MalformedRequest = "malformed_request",
        /// `Purpose-Of-Use` names no purpose the gateway knows.
        UnknownPurpose = "unknown_purpose",
        /// Record fields fail the kind's schema (`details.fields`).
        InvalidFields = "invalid_fields",
        /// A record's subject identifiers are missing, too many or malformed.
        InvalidSubjects = "invalid_subjects",
        /// A record fails a check of the record store (an identifier or value it cannot hold).
        InvalidRecord = "invalid_record",
        /// Referrals are written through the referral API, not as records.
        UseReferralApi = "use_referral_api",
        /// A referral names an incident that does not exist.
        UnknownIncident = "unknown_incident",
        /// A referral names a receiving agency that is not a partner.
        UnknownReceivingAgency = "unknown_receiving_agency",
        /// A referral transition names no state of the referral workflow.
        UnknownState = "unknown_state",
        /// A field the caller may not write.
        NotWritable = "not_writable",
        /// An emergency review's outcome is not one of the allowed outcomes.
        InvalidOutcome = "invalid_outcome",
        /// An emergency review's note is empty or too long.
        InvalidNote = "invalid_note",
        /// A query parameter is missing, malformed or unknown (`details.parameter`).
        InvalidParameter = "invalid_parameter",
        /// An accounting suspension is malformed (`details.field`).
        InvalidSuspension = "invalid_suspension",
        /// A consent lacks what 42 CFR 2.31 requires (`details.missing`).
        ConsentIncomplete = "consent_incomplete",
        /// A consent is malformed (`details.problems`).
        InvalidConsent = "invalid_consent",
        /// A consent revocation is malformed (`details.field`).
        InvalidRevocation = "invalid_revocation",
        /// A restriction is malformed (`details.problems`).
        InvalidRestriction = "invalid_restriction",
        /// A court order is malformed (`details.problems`).
        InvalidCourtOrder = "invalid_court_order",
        /// The end of a restriction or court order is malformed (`details.field`).
        InvalidEnd = "invalid_end",
        /// A FHIR resource is malformed (`details.problems`).
        InvalidResource = "invalid_resource",
        /// A FHIR `Consent` update changes what cannot be changed (`details.fields`).
        ConsentNotEditable = "consent_not_editable",
        /// The posted body is not a signed checkpoint note.
        InvalidCheckpoint = "invalid_checkpoint",
        /// No valid cosignature by the poster's registered witness key.
        CosignatureInvalid = "cosignature_invalid",

        // 401: the token.
        /// No bearer token was sent.
        TokenMissing = "token_missing",
        /// The token is not a well-formed JWS.
        TokenMalformed = "token_malformed",
        /// The token has expired.
        TokenExpired = "token_expired",
        /// The token is not valid yet.
        TokenNotYetValid = "token_not_yet_valid",
        /// The token is meant for another audience.
        TokenWrongAudience = "token_wrong_audience",
        /// The token's issuer is not the partner's.
        TokenWrongIssuer = "token_wrong_issuer",
        /// The token's algorithm is not allowed (e.g. `none`, or HMAC).
        TokenAlgorithmNotAllowed = "token_algorithm_not_allowed",
        /// The token names a key the partner has not registered.
        TokenKeyUnknown = "token_key_unknown",
        /// The token's signature does not verify.
        TokenSignatureInvalid = "token_signature_invalid",
        /// The token is bound to another client certificate.
        TokenBindingMismatch = "token_binding_mismatch",
        /// The token is not bound to a client certificate.
        TokenBindingMissing = "token_binding_missing",
        /// The token's claims are missing or malformed.
        TokenClaimsInvalid = "token_claims_invalid",
        /// The token lives longer than the gateway allows.
        TokenLifetimeTooLong = "token_lifetime_too_long",
        /// The token asks for a critical header extension the gateway does not support.
        TokenCritUnsupported = "token_crit_unsupported",
        /// The token could not be verified for another reason (malformed claims, key mismatch).
        TokenInvalid = "token_invalid",

        // 403: the caller.
        /// A disclosure was decided and denied (logged; `Disclosure-Id`).
        DisclosureDenied = "disclosure_denied",
        /// Records of this kind are held by another kind of partner (police, mental health).
        NotOwnerKind = "not_owner_kind",
        /// The caller's agency does not own this record.
        NotRecordOwner = "not_record_owner",
        /// The caller's partner is not among the consent's disclosers.
        NotADiscloser = "not_a_discloser",
        /// The caller's partner holds no records, so it cannot agree to a restriction.
        NotAHolder = "not_a_holder",
        /// The route is for compliance officers.
        ComplianceRoleRequired = "compliance_role_required",
        /// The token's partner is not the certificate's.
        TokenPartnerMismatch = "token_partner_mismatch",
        /// The client certificate was revoked, expired or unregistered since the connection
        /// opened, or its CA's CRL is past the grace period.
        CertificateRefused = "certificate_refused",
        /// No client certificate on the connection.
        CertificateRequired = "certificate_required",
        /// The partner the certificate names is not registered with this gateway.
        PartnerUnregistered = "partner_unregistered",
        /// The caller runs no such report (logged).
        ReportNotPermitted = "report_not_permitted",
        /// The partner has no registered witness key.
        WitnessNotRegistered = "witness_not_registered",

        // 404: the resource.
        /// No such route.
        RouteNotFound = "route_not_found",
        /// No such record kind.
        UnknownKind = "unknown_kind",
        /// No such record.
        RecordNotFound = "record_not_found",
        /// No such referral.
        ReferralNotFound = "referral_not_found",
        /// No such emergency review.
        ReviewNotFound = "review_not_found",
        /// No such consent.
        ConsentNotFound = "consent_not_found",
        /// No such restriction.
        RestrictionNotFound = "restriction_not_found",
        /// No such court order.
        CourtOrderNotFound = "court_order_not_found",
        /// No such policy change.
        PolicyChangeNotFound = "policy_change_not_found",
        /// No such log entry.
        EntryNotFound = "entry_not_found",
        /// No such report.
        UnknownReport = "unknown_report",
        /// The gateway has no checkpoint key.
        CheckpointsDisabled = "checkpoints_disabled",
        /// No tree head has been signed yet.
        NoCheckpoint = "no_checkpoint",

        // 405, 408, 409.
        /// The path exists but does not take this method.
        MethodNotAllowed = "method_not_allowed",
        /// The body did not arrive in time; the connection is closed.
        BodyTimeout = "body_timeout",
        /// The request head did not arrive in time; the connection is closed.
        RequestTimeout = "request_timeout",
        /// A report's privacy budget is spent (logged).
        PrivacyBudgetExhausted = "privacy_budget_exhausted",
        /// The referral cannot move to that state from its current one (`details.allowed`).
        InvalidTransition = "invalid_transition",
        /// A concurrent write won; retry.
        WriteConflict = "write_conflict",
        /// The emergency review is closed.
        ReviewClosed = "review_closed",
        /// The consent is already revoked.
        ConsentAlreadyRevoked = "consent_already_revoked",
        /// A concurrent recording or revocation of the same consent won; retry.
        ConsentConflict = "consent_conflict",
        /// The restriction has ended.
        RestrictionEnded = "restriction_ended",
        /// The court order has ended.
        CourtOrderEnded = "court_order_ended",
        /// A concurrent change of the same restriction or court order won; retry.
        DirectiveConflict = "directive_conflict",
        /// A cosignature of a checkpoint this gateway never issued (logged).
        CheckpointUnknown = "checkpoint_unknown",

        // 413, 415, 429, 431.
        /// The body exceeds the configured limit.
        PayloadTooLarge = "payload_too_large",
        /// The body is not `application/json`.
        UnsupportedMediaType = "unsupported_media_type",
        /// The partner has as many connections open as it may.
        TooManyConnections = "too_many_connections",
        /// The request head exceeds the configured limit.
        HeadersTooLarge = "headers_too_large",

        // 5xx: the gateway.
        /// A dependency is unavailable; nothing was disclosed or changed.
        ServiceUnavailable = "service_unavailable",
        /// The data is wrapped under a master-key version this replica does not hold.
        KeyUnavailable = "key_unavailable",
        /// `/healthz`: this replica's key file lacks a master-key version in use.
        KeyVersionMissing = "key_version_missing",
        /// `/healthz`, and refused certificates: a CRL is past its grace period.
        CrlExpired = "crl_expired",
        /// A defect; quote the `Request-Id`.
        InternalError = "internal_error",
    }
}

code_enum! {
    /// Why a TLS handshake was refused: the code of its security event (no HTTP answer is
    /// sent; see the README, after the error table).
    pub enum HandshakeRefusal {
        /// The client presented no certificate.
        CertificateMissing = "certificate_missing",
        /// The certificate is not issued by a trusted CA (or its signature is wrong).
        CertificateUnknownIssuer = "certificate_unknown_issuer",
        /// The certificate has expired.
        CertificateExpired = "certificate_expired",
        /// The certificate is not valid yet.
        CertificateNotYetValid = "certificate_not_yet_valid",
        /// The certificate is revoked by its CA's CRL.
        CertificateRevoked = "certificate_revoked",
        /// The CRL of the certificate's CA is past its grace period.
        CrlExpired = "crl_expired",
        /// The partner the certificate names is not registered with this gateway.
        CertificateUnregisteredPartner = "certificate_unregistered_partner",
        /// The certificate is refused for another reason (malformed, wrong key usage, ...).
        CertificateInvalid = "certificate_invalid",
        /// The client did not complete the handshake in time.
        HandshakeTimeout = "handshake_timeout",
        /// The handshake failed otherwise (protocol error, connection reset).
        HandshakeFailed = "handshake_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_snake_case_and_parses_back() {
        fn check<C: Copy + PartialEq + fmt::Debug + fmt::Display + serde::Serialize>(
            all: &[C],
            as_str: fn(C) -> &'static str,
            parse: fn(&str) -> Option<C>,
        ) {
            let mut seen = std::collections::BTreeSet::new();
            for c in all {
                let s = as_str(*c);
                assert!(seen.insert(s), "{s} twice");
                assert!(
                    !s.is_empty()
                        && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        && !s.starts_with('_')
                        && !s.ends_with('_'),
                    "{s}"
                );
                assert_eq!(parse(s), Some(*c));
                assert_eq!(c.to_string(), s);
                assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(s));
            }
            assert_eq!(parse("no_such_code"), None);
        }
        check(Code::ALL, Code::as_str, Code::parse);
        check(
            HandshakeRefusal::ALL,
            HandshakeRefusal::as_str,
            HandshakeRefusal::parse,
        );
    }
}

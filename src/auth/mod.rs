//! User-token authentication, bound to the partner's client certificate.
//!
//! Security role: turns (verified client certificate, bearer token) into a [`Principal`] or a
//! refusal. The token is verified only with the keys registered for the partner that the
//! certificate names, each key pinned to one asymmetric algorithm, so `alg: none`, HMAC-with-
//! the-public-key (key confusion) and another partner's signature are all refused. A protected
//! header that marks any extension as critical (`crit`) is refused: the gateway understands
//! none. `aud` and `iss` are checked; `exp`, `nbf` and `iat` are checked here, against the time
//! the caller passes in (with a small leeway): they must be whole seconds between 1970 and the
//! year 9999, `iat` may not lie in the future, and the lifetime (`exp - iat`, or `exp - now`
//! without `iat`) may not exceed the configured maximum. The RFC 8705 `cnf.x5t#S256`
//! thumbprint must match the presented certificate when present and is required when the
//! registry says so. Refusals never echo the token.

mod cache;

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub use cache::{TOKEN_CACHE, TokenCache};

use crate::domain::{Code, PartnerId, Principal, Role, UserId};
use crate::policy::PartnerRegistry;
use crate::tls::PeerCertificate;

/// Token rules that come from the gateway's configuration.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// Required `aud`.
    pub audience: String,
    /// Leeway for `exp`/`nbf`/`iat`, seconds.
    pub leeway_secs: u64,
    /// Longest accepted lifetime, seconds: `exp - iat`, or `exp - now` (plus the leeway) for a
    /// token without `iat`.
    pub max_lifetime_secs: u64,
}

/// Why authentication failed: a stable code, an explanation, and the status class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// 401 (identity not proven) or 403 (proven but refused).
    pub forbidden: bool,
    /// Stable code.
    pub code: Code,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl AuthFailure {
    fn unauthenticated(code: Code, message: impl Into<String>) -> Self {
        Self {
            forbidden: false,
            code,
            message: message.into(),
        }
    }

    fn forbidden(code: Code, message: impl Into<String>) -> Self {
        Self {
            forbidden: true,
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    cnf: Option<Confirmation>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256", default)]
    x5t_s256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UnverifiedIssuer {
    #[serde(default)]
    iss: Option<String>,
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthFailure> {
    let value = header.ok_or_else(|| {
        AuthFailure::unauthenticated(
            Code::TokenMissing,
            "no user token: send `Authorization: Bearer <token>` with a token from your \
             agency's identity provider",
        )
    })?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        AuthFailure::unauthenticated(
            Code::TokenMalformed,
            "the Authorization header must be `Bearer <token>`",
        )
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthFailure::unauthenticated(
            Code::TokenMalformed,
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

/// Verifies `token` for the partner `partner_id` (already proven by the certificate `peer`)
/// at time `now` (Unix seconds).
pub fn verify_token(
    registry: &PartnerRegistry,
    rules: &TokenRules,
    partner_id: &PartnerId,
    peer: &PeerCertificate,
    token: &str,
    now: i64,
) -> Result<Principal, AuthFailure> {
    let partner = registry.get(partner_id).ok_or_else(|| {
        AuthFailure::forbidden(
            Code::PartnerUnregistered,
            format!("partner `{partner_id}` is not registered with this gateway"),
        )
    })?;
    let header = decode_header(token).map_err(|_| {
        AuthFailure::unauthenticated(
            Code::TokenMalformed,
            "the token is not a well-formed signed JWT (compact JWS with a supported `alg`; \
             `none` is never accepted)",
        )
    })?;
    check_protected_header(token)?;

    // A token from another registered agency, presented over this agency's certificate, gets
    // a precise answer before any signature work.
    if let Ok(claims) = jsonwebtoken::dangerous::insecure_decode::<UnverifiedIssuer>(token)
        && let Some(iss) = claims.claims.iss.as_deref()
        && let Some(other) = registry.by_issuer(iss)
        && other.id != partner.id
    {
        return Err(AuthFailure::forbidden(
            Code::TokenPartnerMismatch,
            format!(
                "the token was issued for partner `{}` but the client certificate names \
                 partner `{}`; present each agency's tokens over its own certificate",
                other.id, partner.id
            ),
        ));
    }

    if !partner.token.algorithms.contains(&header.alg) {
        return Err(AuthFailure::unauthenticated(
            Code::TokenAlgorithmNotAllowed,
            format!(
                "algorithm {:?} is not accepted for partner `{}`; accepted: {:?}",
                header.alg, partner.id, partner.token.algorithms
            ),
        ));
    }
    let candidates: Vec<_> = partner
        .token
        .keys
        .iter()
        .filter(|k| k.algorithm == header.alg)
        .filter(|k| match (&header.kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(AuthFailure::unauthenticated(
            Code::TokenKeyUnknown,
            format!(
                "no registered key of partner `{}` matches the token's `kid`; check that the \
                 identity provider's current key is in the partner registry",
                partner.id
            ),
        ));
    }

    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.set_audience(&[rules.audience.as_str()]);
    validation.set_issuer(&[partner.token.issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // `exp`, `nbf` and `iat` are checked below against `now`, never the library's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;

    let mut last = None;
    let mut claims = None;
    for key in candidates {
        match decode::<Claims>(token, &key.key, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) => last = Some(e.into_kind()),
        }
    }
    let claims = match claims {
        Some(c) => c,
        None => return Err(map_jwt_error(last, &rules.audience, &partner.token.issuer)),
    };
    // The signature verified: judge the time claims, read strictly from the signed payload.
    check_token_times(&signed_claims(token)?, now, rules)?;

    let expected = peer.fingerprint.to_x5t_s256();
    match claims.cnf.and_then(|c| c.x5t_s256) {
        Some(x5t) if x5t == expected => {}
        Some(_) => {
            return Err(AuthFailure::unauthenticated(
                Code::TokenBindingMismatch,
                "the token is bound (cnf.x5t#S256) to a different certificate than the one \
                 presented; obtain a token bound to this connection's client certificate",
            ));
        }
        None if partner.token.binding_required => {
            return Err(AuthFailure::unauthenticated(
                Code::TokenBindingMissing,
                format!(
                    "partner `{}` requires certificate-bound tokens: the token must carry \
                     cnf.x5t#S256 with the client certificate's SHA-256 thumbprint",
                    partner.id
                ),
            ));
        }
        None => {}
    }

    let user: UserId = claims.sub.parse().map_err(|e: crate::domain::IdError| {
        AuthFailure::unauthenticated(Code::TokenClaimsInvalid, format!("`sub`: {e}"))
    })?;
    let roles = parse_roles(
        claims.other.get(&partner.token.roles_claim),
        &partner.token.roles_claim,
    )?;
    Ok(Principal {
        partner: partner.id.clone(),
        partner_kind: partner.kind,
        user,
        roles,
        cert_fingerprint: peer.fingerprint,
    })
}

fn parse_roles(
    value: Option<&serde_json::Value>,
    claim: &str,
) -> Result<BTreeSet<Role>, AuthFailure> {
    let invalid = |why: String| AuthFailure::unauthenticated(Code::TokenClaimsInvalid, why);
    let array = value.and_then(|v| v.as_array()).ok_or_else(|| {
        invalid(format!(
            "the token must carry `{claim}` as an array of role names"
        ))
    })?;
    array
        .iter()
        .map(|r| {
            r.as_str()
                .ok_or_else(|| invalid(format!("`{claim}` must hold strings")))?
                .parse::<Role>()
                .map_err(|e| invalid(format!("`{claim}`: {e}")))
        })
        .collect()
}

fn map_jwt_error(kind: Option<ErrorKind>, audience: &str, issuer: &str) -> AuthFailure {
    fn u(code: Code, message: impl Into<String>) -> AuthFailure {
        AuthFailure::unauthenticated(code, message)
    }
    match kind {
        Some(ErrorKind::ExpiredSignature) => u(
            Code::TokenExpired,
            "the token has expired; obtain a new one from your identity provider",
        ),
        Some(ErrorKind::ImmatureSignature) => u(
            Code::TokenNotYetValid,
            "the token's `nbf` is in the future; check the identity provider's clock",
        ),
        Some(ErrorKind::InvalidAudience) => u(
            Code::TokenWrongAudience,
            format!("the token's `aud` must include `{audience}`"),
        ),
        Some(ErrorKind::InvalidIssuer) => u(
            Code::TokenWrongIssuer,
            format!("the token's `iss` must be `{issuer}` for this partner"),
        ),
        Some(ErrorKind::MissingRequiredClaim(c)) if c == "exp" => u(
            Code::TokenClaimsInvalid,
            "the token lacks the required claim `exp`, or its value is not a NumericDate \
             (whole seconds since 1970-01-01T00:00:00Z)",
        ),
        Some(ErrorKind::MissingRequiredClaim(c)) => u(
            Code::TokenClaimsInvalid,
            format!("the token lacks the required claim `{c}`"),
        ),
        Some(ErrorKind::InvalidSignature) => u(
            Code::TokenSignatureInvalid,
            "the token's signature does not verify with any key registered for this partner",
        ),
        Some(ErrorKind::InvalidAlgorithm) => u(
            Code::TokenAlgorithmNotAllowed,
            "the token's algorithm does not match the registered key",
        ),
        _ => u(
            Code::TokenInvalid,
            "the token could not be verified (malformed claims or key mismatch)",
        ),
    }
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

fn malformed(why: &str) -> AuthFailure {
    AuthFailure::unauthenticated(
        Code::TokenMalformed,
        format!("the token is not a well-formed signed JWT: {why}"),
    )
}

/// The three segments of a compact JWS.
fn segments(token: &str) -> Result<(&str, &str, &str), AuthFailure> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(malformed(
            "a compact JWS has exactly three base64url segments separated by `.`",
        )),
    }
}

/// Reads the protected header strictly (a JSON object, no member twice) and refuses `crit`:
/// the gateway understands no JWS extension (RFC 7515 section 4.1.11).
fn check_protected_header(token: &str) -> Result<(), AuthFailure> {
    let (header, _, _) = segments(token)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("the header is not base64url without padding"))?;
    let header = match strict_json(&bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(malformed("the header is not a JSON object")),
        Err(why) => return Err(malformed(&format!("the header is not valid JSON: {why}"))),
    };
    match header.get("crit") {
        None => Ok(()),
        Some(Value::Array(names)) if !names.is_empty() && names.iter().all(Value::is_string) => {
            Err(AuthFailure::unauthenticated(
                Code::TokenCritUnsupported,
                "the token's header marks JWS extensions as critical (`crit`), and this gateway \
                 supports none; have the identity provider issue tokens without `crit`",
            ))
        }
        Some(_) => Err(malformed(
            "`crit` in the header must be a non-empty array of header parameter names",
        )),
    }
}

/// The signed payload as a JSON object, read strictly (no member twice, at any depth).
fn signed_claims(token: &str) -> Result<Map<String, Value>, AuthFailure> {
    let (_, payload, _) = segments(token)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| malformed("the payload is not base64url without padding"))?;
    match strict_json(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AuthFailure::unauthenticated(
            Code::TokenClaimsInvalid,
            "the token's claims are not a JSON object",
        )),
        Err(why) => Err(AuthFailure::unauthenticated(
            Code::TokenClaimsInvalid,
            format!("the token's claims are not valid JSON: {why}"),
        )),
    }
}

/// Checks `exp`, `nbf` and `iat` at time `now` (Unix seconds): well-formed, `exp` not past,
/// `nbf` and `iat` not in the future (each with the leeway), and a lifetime within
/// `rules.max_lifetime_secs`.
fn check_token_times(
    claims: &Map<String, Value>,
    now: i64,
    rules: &TokenRules,
) -> Result<(), AuthFailure> {
    fn u(code: Code, message: String) -> AuthFailure {
        AuthFailure::unauthenticated(code, message)
    }
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| {
        u(
            Code::TokenClaimsInvalid,
            "the token lacks the required claim `exp`".to_owned(),
        )
    })?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    let leeway = i64::try_from(rules.leeway_secs).unwrap_or(i64::MAX);
    let max = i64::try_from(rules.max_lifetime_secs).unwrap_or(i64::MAX);

    if exp < now.saturating_sub(leeway) {
        return Err(u(
            Code::TokenExpired,
            "the token has expired; obtain a new one from your identity provider".to_owned(),
        ));
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(u(
            Code::TokenNotYetValid,
            "the token's `nbf` is in the future; check the identity provider's clock".to_owned(),
        ));
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(u(
            Code::TokenNotYetValid,
            "the token's `iat` (issued at) is in the future; check the identity provider's clock"
                .to_owned(),
        ));
    }
    let too_long = |lifetime: String| {
        u(
            Code::TokenLifetimeTooLong,
            format!(
                "{lifetime}, longer than the {max} s this gateway accepts \
                 (identity.max_token_lifetime_secs); have the identity provider issue tokens \
                 that live at most {max} s"
            ),
        )
    };
    match iat {
        Some(iat) if exp.saturating_sub(iat) > max => Err(too_long(format!(
            "the token lives {} s (`exp` - `iat`)",
            exp.saturating_sub(iat)
        ))),
        None if exp.saturating_sub(now) > max.saturating_add(leeway) => Err(too_long(format!(
            "the token carries no `iat` and its `exp` is {} s away",
            exp.saturating_sub(now)
        ))),
        _ => Ok(()),
    }
}

/// A NumericDate claim: absent, or whole seconds from 1970 to the end of the year 9999.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthFailure> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let what = match value {
        Value::Number(n) => match n.as_i64() {
            Some(t) if (0..=MAX_NUMERIC_DATE).contains(&t) => return Ok(Some(t)),
            Some(t) if t < 0 => "a negative number",
            Some(_) => "a time after the year 9999",
            None if n.is_f64() => "not a whole number",
            None => "a time after the year 9999",
        },
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Err(AuthFailure::unauthenticated(
        Code::TokenClaimsInvalid,
        format!(
            "the token's `{name}` is {what}: it must be a NumericDate, whole seconds since \
             1970-01-01T00:00:00Z, no later than 9999-12-31T23:59:59Z"
        ),
    ))
}

/// Parses JSON like `serde_json::from_slice`, but refuses an object that names a member twice
/// (two parsers could otherwise read two different values from one signed document).
fn strict_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<StrictValue>(bytes).map(|v| v.0)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value whose objects name each member once")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if out.contains_key(&key) {
                // The name is not echoed: it comes from the token.
                return Err(de::Error::custom("an object names one member twice"));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 24 * 3600;

    fn rules() -> TokenRules {
        TokenRules {
            audience: "coresponse-gateway".into(),
            leeway_secs: 30,
            max_lifetime_secs: 3600,
        }
    }

    fn times(claims: Value) -> Result<(), &'static str> {
        let Value::Object(map) = claims else {
            panic!("claims must be an object")
        };
        check_token_times(&map, NOW, &rules()).map_err(|f| f.code.as_str())
    }

    #[test]
    fn a_token_within_its_times_and_lifetime_passes() {
        assert_eq!(
            times(json!({"iat": NOW, "nbf": NOW, "exp": NOW + 300})),
            Ok(())
        );
        assert_eq!(times(json!({"iat": NOW, "exp": NOW + 3600})), Ok(()));
        // Within the leeway on either side.
        assert_eq!(
            times(json!({"iat": NOW + 30, "exp": NOW - 30 + 60})),
            Ok(())
        );
        assert_eq!(times(json!({"exp": NOW + 3600 + 30})), Ok(()));
    }

    #[test]
    fn exp_and_nbf_keep_their_codes() {
        assert_eq!(
            times(json!({"iat": NOW - 100, "exp": NOW - 31})),
            Err("token_expired")
        );
        assert_eq!(
            times(json!({"iat": NOW, "nbf": NOW + 31, "exp": NOW + 300})),
            Err("token_not_yet_valid")
        );
        // An expired token whose `iat` is later than `exp` is still reported as expired.
        assert_eq!(
            times(json!({"iat": NOW, "nbf": NOW - 7200, "exp": NOW - 3600})),
            Err("token_expired")
        );
    }

    #[test]
    fn iat_in_the_future_is_refused() {
        for iat in [NOW + 31, NOW + DAY, NOW + 3650 * DAY] {
            assert_eq!(
                times(json!({"iat": iat, "exp": NOW + 300})),
                Err("token_not_yet_valid"),
                "iat = now + {}",
                iat - NOW
            );
        }
        let Value::Object(map) = json!({"iat": NOW + DAY, "exp": NOW + 300}) else {
            unreachable!()
        };
        let f = check_token_times(&map, NOW, &rules()).unwrap_err();
        assert!(f.message.contains("`iat`"), "{}", f.message);
    }

    #[test]
    fn a_lifetime_beyond_the_limit_is_refused() {
        assert_eq!(
            times(json!({"iat": NOW, "exp": NOW + 3601})),
            Err("token_lifetime_too_long")
        );
        assert_eq!(
            times(json!({"iat": NOW, "exp": NOW + 2 * 3600})),
            Err("token_lifetime_too_long")
        );
        // Issued long ago, still unexpired: the lifetime counts, not what is left of it.
        assert_eq!(
            times(json!({"iat": NOW - 2 * 3600, "exp": NOW + 60})),
            Err("token_lifetime_too_long")
        );
        // Without iat: exp - now, with the leeway.
        assert_eq!(
            times(json!({"exp": NOW + 3600 + 31})),
            Err("token_lifetime_too_long")
        );
        assert_eq!(
            times(json!({"nbf": NOW, "exp": NOW + 2 * 3600})),
            Err("token_lifetime_too_long")
        );
        let Value::Object(map) = json!({"iat": NOW, "exp": NOW + 7200}) else {
            unreachable!()
        };
        let f = check_token_times(&map, NOW, &rules()).unwrap_err();
        assert!(f.message.contains("7200 s"), "{}", f.message);
        assert!(
            f.message.contains("identity.max_token_lifetime_secs"),
            "{}",
            f.message
        );
    }

    #[test]
    fn absurd_time_values_are_refused() {
        for exp in [
            json!(1u64 << 63),
            json!(u64::MAX),
            json!(-1),
            json!(MAX_NUMERIC_DATE + 1),
            json!(NOW as f64 + 0.5),
            json!(1e300),
            json!("1800000300"),
            json!(null),
            json!(true),
            json!([NOW + 300]),
        ] {
            assert_eq!(
                times(json!({"iat": NOW, "exp": exp})),
                Err("token_claims_invalid"),
                "exp = {exp}"
            );
        }
        assert_eq!(
            times(json!({"iat": -5, "exp": NOW + 300})),
            Err("token_claims_invalid")
        );
        assert_eq!(
            times(json!({"iat": NOW, "nbf": "now", "exp": NOW + 300})),
            Err("token_claims_invalid")
        );
        assert_eq!(times(json!({"iat": NOW})), Err("token_claims_invalid"));
    }

    #[test]
    fn a_very_long_limit_does_not_overflow() {
        let Value::Object(map) = json!({"exp": MAX_NUMERIC_DATE}) else {
            unreachable!()
        };
        let rules = TokenRules {
            max_lifetime_secs: u64::MAX,
            leeway_secs: u64::MAX,
            ..rules()
        };
        assert!(check_token_times(&map, i64::MIN, &rules).is_ok());
        assert!(check_token_times(&map, i64::MAX, &rules).is_ok());
    }

    fn jws(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn header_code(header: &str) -> Result<(), &'static str> {
        check_protected_header(&jws(header, "{}")).map_err(|f| f.code.as_str())
    }

    #[test]
    fn crit_is_refused_and_the_header_read_strictly() {
        assert_eq!(header_code(r#"{"alg":"ES256","kid":"k"}"#), Ok(()));
        assert_eq!(
            header_code(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#),
            Err("token_crit_unsupported")
        );
        assert_eq!(
            header_code(r#"{"alg":"ES256","crit":["b64"],"b64":false}"#),
            Err("token_crit_unsupported")
        );
        for bad in [
            r#"{"alg":"ES256","crit":[]}"#,
            r#"{"alg":"ES256","crit":null}"#,
            r#"{"alg":"ES256","crit":"exp"}"#,
            r#"{"alg":"ES256","crit":[1]}"#,
            r#"{"alg":"ES256","alg":"ES256"}"#,
            r#"{"alg":"ES256","kid":"a","kid":"b"}"#,
            r#"{"alg":"ES256","crit":["x"],"crit":["y"]}"#,
            r#"{"alg":"ES256","jwk":{"kty":"EC","kty":"EC"}}"#,
            r#"{"alg":"ES256","\u0061lg":"ES256"}"#,
            r#"["alg"]"#,
            r#"{"alg":"ES256""#,
        ] {
            assert_eq!(header_code(bad), Err("token_malformed"), "{bad}");
        }
        assert_eq!(
            check_protected_header("a.b").map_err(|f| f.code.as_str()),
            Err("token_malformed")
        );
        assert_eq!(
            check_protected_header("a.b.c.d.e").map_err(|f| f.code.as_str()),
            Err("token_malformed")
        );
    }

    #[test]
    fn claims_naming_a_member_twice_are_refused() {
        let t = jws(r#"{"alg":"ES256"}"#, r#"{"exp":1,"iat":2,"iat":3}"#);
        assert_eq!(
            signed_claims(&t).map_err(|f| f.code.as_str()).err(),
            Some("token_claims_invalid")
        );
        let t = jws(r#"{"alg":"ES256"}"#, r#"{"exp":1,"iat":2}"#);
        assert_eq!(signed_claims(&t).unwrap().len(), 2);
    }
}

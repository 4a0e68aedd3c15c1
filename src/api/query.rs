//! Query-string parameters shared by the API routes: each parameter from a fixed list, at most
//! once, and times in RFC 3339. Every refusal is a 400 `invalid_parameter` whose
//! `details.parameter` names the parameter at fault (the FHIR routes render it as an
//! OperationOutcome whose issue's expression is that parameter).

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::Code;
use crate::error::ApiError;

/// 400 `invalid_parameter` naming query parameter `name` and why it was refused.
pub(super) fn bad_param(name: &str, why: impl std::fmt::Display) -> ApiError {
    invalid_parameter("query", name, why)
}

/// The same refusal for a FHIR search parameter: its message says `search parameter`.
pub(super) fn bad_search_param(name: &str, why: impl std::fmt::Display) -> ApiError {
    invalid_parameter("search", name, why)
}

fn invalid_parameter(kind: &str, name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: Code::InvalidParameter,
        message: format!("{kind} parameter `{name}`: {why}"),
        details: Some(json!({ "parameter": name })),
    }
}

/// Query parameter `name`, which the route does not take; `accepted` lists those it does (an
/// empty list: the refusal says the route takes none).
pub(super) fn unknown_param(name: &str, accepted: &[&str]) -> ApiError {
    if accepted.is_empty() {
        return bad_param(name, "unknown parameter; this route takes none");
    }
    bad_param(
        name,
        format!("unknown parameter; accepted: {}", accepted.join(", ")),
    )
}

/// Refuses the first parameter of a query to a route that takes none.
pub(super) fn takes_none(pairs: &[(String, String)]) -> Result<(), ApiError> {
    match pairs.first() {
        Some((k, _)) => Err(unknown_param(k, &[])),
        None => Ok(()),
    }
}

/// Query parameter `name`'s value `v` as an RFC 3339 time, in UTC.
pub(super) fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad_param(name, "use an RFC 3339 time such as `2026-01-31T00:00:00Z`"))
}

/// The query's `(name, value)` pairs in the order given, each checked as it comes: a name not
/// in `accepted` (the refusal lists them) or one given a second time yields an error in its
/// place. A caller that stops at the first error reports the first fault in the query.
pub(super) fn checked<'a>(
    pairs: &'a [(String, String)],
    accepted: &'a [&'a str],
) -> impl Iterator<Item = Result<(&'a str, &'a str), ApiError>> + 'a {
    let mut seen: Vec<&'a str> = Vec::new();
    pairs.iter().map(move |(k, v)| {
        let k = k.as_str();
        if !accepted.contains(&k) {
            return Err(unknown_param(k, accepted));
        }
        if seen.contains(&k) {
            return Err(bad_param(k, "given more than once"));
        }
        seen.push(k);
        Ok((k, v.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The refusal's code, message and named parameter.
    fn refusal(e: ApiError) -> (&'static str, String, serde_json::Value) {
        match e {
            ApiError::BadRequest {
                code,
                message,
                details,
            } => (code.as_str(), message, details.unwrap_or_default()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pairs_come_in_order_and_the_first_fault_is_named() {
        let accepted = ["since", "until"];
        let q = pairs(&[("until", "b"), ("since", "a")]);
        let got: Vec<_> = checked(&q, &accepted).map(Result::unwrap).collect();
        assert_eq!(got, [("until", "b"), ("since", "a")]);

        let q = pairs(&[("since", "a"), ("days", "3"), ("since", "b")]);
        let mut it = checked(&q, &accepted);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(
            refusal(it.next().unwrap().unwrap_err()),
            (
                "invalid_parameter",
                "query parameter `days`: unknown parameter; accepted: since, until".to_owned(),
                json!({ "parameter": "days" })
            )
        );
        assert_eq!(
            refusal(it.next().unwrap().unwrap_err()),
            (
                "invalid_parameter",
                "query parameter `since`: given more than once".to_owned(),
                json!({ "parameter": "since" })
            )
        );
        assert!(it.next().is_none());
    }

    #[test]
    fn a_route_that_takes_none_refuses_the_first_parameter() {
        assert!(takes_none(&[]).is_ok());
        assert_eq!(
            refusal(takes_none(&pairs(&[("x", "1"), ("y", "2")])).unwrap_err()),
            (
                "invalid_parameter",
                "query parameter `x`: unknown parameter; this route takes none".to_owned(),
                json!({ "parameter": "x" })
            )
        );
    }

    #[test]
    fn a_search_parameter_is_named_as_one() {
        assert_eq!(
            refusal(bad_search_param("_id", "required: the referral id")),
            (
                "invalid_parameter",
                "search parameter `_id`: required: the referral id".to_owned(),
                json!({ "parameter": "_id" })
            )
        );
    }

    #[test]
    fn times_are_rfc_3339_and_a_bad_one_is_named() {
        let t = parse_time("since", "2026-01-31T01:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-31T00:00:00+00:00");
        assert_eq!(
            refusal(parse_time("until", "yesterday").unwrap_err()),
            (
                "invalid_parameter",
                "query parameter `until`: use an RFC 3339 time such as `2026-01-31T00:00:00Z`"
                    .to_owned(),
                json!({ "parameter": "until" })
            )
        );
    }
}

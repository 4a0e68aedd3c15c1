//! Field transforms as written in a rule's field profile: a name (`"reveal"`) or an inline
//! table with parameters (`{ transform = "mask", keep = "last", chars = 4 }`), and which
//! transforms fit which field type.

use toml_edit::{Item, TableLike};

use super::super::diag::choices_hint;
use super::super::model::{FieldType, Generalization, MaskKeep, Transform};
use super::{Cx, Span};

const TRANSFORMS: [&str; 6] = [
    "reveal",
    "omit",
    "mask",
    "generalize",
    "pseudonymize",
    "encrypt",
];
const GENERALIZATIONS: [&str; 5] = ["year", "month", "age-band", "city", "zip3"];

/// The transforms that fit a field of type `ty`, as a hint.
pub(super) fn fits_hint(ty: &FieldType) -> String {
    let mut ok = vec!["reveal", "omit", "encrypt"];
    match ty {
        FieldType::String | FieldType::Phone => ok.extend(["mask", "pseudonymize"]),
        FieldType::Integer => ok.push("pseudonymize"),
        FieldType::Date | FieldType::Datetime => {
            ok.extend(["generalize to `year`", "generalize to `month`"])
        }
        FieldType::Age => ok.push("generalize to `age-band`"),
        FieldType::Address => ok.extend(["generalize to `city`", "generalize to `zip3`"]),
        _ => {}
    }
    format!("a `{}` field accepts: {}", ty.name(), ok.join(", "))
}

/// Parses one transform; reports a problem and returns `None` when it is not one.
pub(super) fn parse_transform(cx: &mut Cx<'_>, item: &Item, span: &Span) -> Option<Transform> {
    if let Some(s) = item.as_str() {
        return named_transform(cx, s, span);
    }
    let Some(t) = item.as_table_like() else {
        cx.error(
            "wrong-type",
            span.clone(),
            "a transform is a string or an inline table".into(),
            Some(
                "write `\"reveal\"` or `{ transform = \"mask\", keep = \"last\", chars = 4 }`"
                    .into(),
            ),
        );
        return None;
    };
    let w = "a transform";
    let name = cx.string(t, "transform", true, w, span)?;
    match name.v.as_str() {
        "mask" => mask(cx, t, span),
        "generalize" => generalize(cx, t, span),
        "reveal" | "omit" | "pseudonymize" | "encrypt" => {
            cx.check_keys(t, &["transform"], "a transform without parameters");
            named_transform(cx, &name.v, span)
        }
        other => {
            cx.error(
                "unknown-transform",
                name.span.clone(),
                format!("unknown transform `{other}`"),
                Some(choices_hint(other, &TRANSFORMS)),
            );
            None
        }
    }
}

/// A transform written as a bare name: one without parameters.
fn named_transform(cx: &mut Cx<'_>, s: &str, span: &Span) -> Option<Transform> {
    match s {
        "reveal" => Some(Transform::Reveal),
        "omit" => Some(Transform::Omit),
        "pseudonymize" => Some(Transform::Pseudonymize),
        "encrypt" => Some(Transform::Encrypt),
        "mask" | "generalize" => {
            cx.error(
                "transform-parameters",
                span.clone(),
                format!("transform `{s}` needs parameters"),
                Some(if s == "mask" {
                    "write `{ transform = \"mask\", keep = \"last\", chars = 4 }`".into()
                } else {
                    "write `{ transform = \"generalize\", to = \"month\" }`".into()
                }),
            );
            None
        }
        other => {
            cx.error(
                "unknown-transform",
                span.clone(),
                format!("unknown transform `{other}`"),
                Some(choices_hint(other, &TRANSFORMS)),
            );
            None
        }
    }
}

/// `{ transform = "mask", keep = "first" | "last", chars = 0..=16 }`.
fn mask(cx: &mut Cx<'_>, t: &dyn TableLike, span: &Span) -> Option<Transform> {
    let w = "a transform";
    cx.check_keys(t, &["transform", "keep", "chars"], "a `mask` transform");
    let keep = cx.string(t, "keep", true, w, span)?;
    let chars = cx.integer(t, "chars", true, w, span)?;
    let keep_v = match keep.v.as_str() {
        "first" => MaskKeep::First,
        "last" => MaskKeep::Last,
        other => {
            cx.error(
                "invalid-parameter",
                keep.span.clone(),
                format!("`keep` is `{other}`"),
                Some(choices_hint(other, &["first", "last"])),
            );
            return None;
        }
    };
    let Ok(chars_v) = u8::try_from(chars.v)
        .map_err(|_| ())
        .and_then(|c| if c <= 16 { Ok(c) } else { Err(()) })
    else {
        cx.error(
            "invalid-parameter",
            chars.span.clone(),
            format!("`chars` is {}; keep between 0 and 16 characters", chars.v),
            None,
        );
        return None;
    };
    Some(Transform::Mask {
        keep: keep_v,
        chars: chars_v,
    })
}

/// `{ transform = "generalize", to = ... }`.
fn generalize(cx: &mut Cx<'_>, t: &dyn TableLike, span: &Span) -> Option<Transform> {
    let w = "a transform";
    cx.check_keys(t, &["transform", "to"], "a `generalize` transform");
    let to = cx.string(t, "to", true, w, span)?;
    let g = match to.v.as_str() {
        "year" => Generalization::Year,
        "month" => Generalization::Month,
        "age-band" => Generalization::AgeBand,
        "city" => Generalization::City,
        "zip3" => Generalization::Zip3,
        other => {
            cx.error(
                "invalid-parameter",
                to.span.clone(),
                format!("cannot generalize to `{other}`"),
                Some(choices_hint(other, &GENERALIZATIONS)),
            );
            return None;
        }
    };
    Some(Transform::Generalize { to: g })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::diag::{Report, SourceFile};

    /// A problem's code, line and message.
    type Problem = (&'static str, usize, String);

    /// Each value of `[t]` in `text` parsed as a transform: the result, and each problem found.
    fn parse_all(text: &str) -> Vec<(Option<Transform>, Vec<Problem>)> {
        let file = SourceFile::new("mous/t.toml".into(), text.into());
        let doc = toml_edit::ImDocument::parse(text.to_owned()).unwrap();
        let table = doc.get("t").and_then(Item::as_table_like).unwrap();
        let mut out = Vec::new();
        for (_, item) in table.iter() {
            let mut report = Report::default();
            let span = item.span();
            let got = parse_transform(
                &mut Cx {
                    file: &file,
                    report: &mut report,
                },
                item,
                &span,
            );
            let problems = report
                .diagnostics
                .iter()
                .map(|d| (d.code, d.line, d.message.clone()))
                .collect();
            out.push((got, problems));
        }
        out
    }

    #[test]
    fn every_shape_of_a_transform_and_each_mistake() {
        let got = parse_all(
            "[t]\n\
             a = \"reveal\"\n\
             b = { transform = \"mask\", keep = \"last\", chars = 4 }\n\
             c = { transform = \"generalize\", to = \"zip3\" }\n\
             d = { transform = \"omit\" }\n\
             e = \"mask\"\n\
             f = \"revael\"\n\
             g = { transform = \"mask\", keep = \"middle\", chars = 4 }\n\
             h = { transform = \"mask\", keep = \"first\", chars = 17 }\n\
             i = { transform = \"generalize\", to = \"street\" }\n\
             j = { transform = \"shuffle\" }\n\
             k = 3\n\
             l = { transform = \"omit\", chars = 2 }\n",
        );
        let ok = |i: usize| got[i].1.is_empty();
        assert_eq!(got[0].0, Some(Transform::Reveal));
        assert_eq!(
            got[1].0,
            Some(Transform::Mask {
                keep: MaskKeep::Last,
                chars: 4
            })
        );
        assert_eq!(
            got[2].0,
            Some(Transform::Generalize {
                to: Generalization::Zip3
            })
        );
        assert_eq!(got[3].0, Some(Transform::Omit));
        assert!((0..4).all(ok), "{got:?}");
        let problem = |i: usize| {
            assert_eq!(got[i].0, None, "{i}: {got:?}");
            assert_eq!(got[i].1.len(), 1, "{i}: {got:?}");
            got[i].1[0].clone()
        };
        assert_eq!(
            problem(4),
            (
                "transform-parameters",
                6,
                "transform `mask` needs parameters".into()
            )
        );
        assert_eq!(
            problem(5),
            ("unknown-transform", 7, "unknown transform `revael`".into())
        );
        assert_eq!(
            problem(6),
            ("invalid-parameter", 8, "`keep` is `middle`".into())
        );
        assert_eq!(
            problem(7),
            (
                "invalid-parameter",
                9,
                "`chars` is 17; keep between 0 and 16 characters".into()
            )
        );
        assert_eq!(
            problem(8),
            (
                "invalid-parameter",
                10,
                "cannot generalize to `street`".into()
            )
        );
        assert_eq!(
            problem(9),
            (
                "unknown-transform",
                11,
                "unknown transform `shuffle`".into()
            )
        );
        assert_eq!(problem(10).0, "wrong-type");
        // A transform without parameters given one: named, and still read.
        assert_eq!(got[11].0, Some(Transform::Omit));
        assert_eq!(got[11].1.len(), 1, "{got:?}");
        assert_eq!(got[11].1[0].1, 13);
    }
}

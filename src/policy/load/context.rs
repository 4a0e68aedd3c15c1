//! Reading typed values out of a TOML table for the checks: each read reports a missing key or
//! a wrong type at the position it was written, and returns the value with its position.

use chrono::NaiveDate;
use toml_edit::{Item, TableLike};

use super::super::diag::{Diagnostic, Report, Severity, SourceFile, choices_hint};
use super::{Sp, Span};

/// The file being checked and the report its problems go to.
pub(in crate::policy) struct Cx<'a> {
    pub(in crate::policy) file: &'a SourceFile,
    pub(in crate::policy) report: &'a mut Report,
}

impl Cx<'_> {
    pub(in crate::policy) fn error(
        &mut self,
        code: &'static str,
        span: Span,
        msg: String,
        hint: Option<String>,
    ) {
        self.report.push(Diagnostic::at(
            Severity::Error,
            code,
            self.file,
            span,
            msg,
            hint,
        ));
    }

    pub(in crate::policy) fn warn(
        &mut self,
        code: &'static str,
        span: Span,
        msg: String,
        hint: Option<String>,
    ) {
        self.report.push(Diagnostic::at(
            Severity::Warning,
            code,
            self.file,
            span,
            msg,
            hint,
        ));
    }

    pub(in crate::policy) fn check_keys(
        &mut self,
        t: &dyn TableLike,
        allowed: &[&str],
        what: &str,
    ) {
        for (k, _) in t.iter() {
            if !allowed.contains(&k) {
                let span = t.key(k).and_then(|k| k.span());
                self.error(
                    "unknown-key",
                    span,
                    format!("unknown key `{k}` in {what}"),
                    Some(choices_hint(k, allowed)),
                );
            }
        }
    }

    pub(in crate::policy) fn value<'t>(
        &mut self,
        t: &'t dyn TableLike,
        key: &str,
        required: bool,
        what: &str,
        at: &Span,
    ) -> Option<(&'t Item, Span)> {
        match t.get(key) {
            Some(item) => Some((
                item,
                item.span().or_else(|| t.key(key).and_then(|k| k.span())),
            )),
            None => {
                if required {
                    self.error(
                        "missing-key",
                        at.clone(),
                        format!("{what} has no `{key}`"),
                        Some(format!("add `{key} = ...` to {what}")),
                    );
                }
                None
            }
        }
    }

    pub(in crate::policy) fn string(
        &mut self,
        t: &dyn TableLike,
        key: &str,
        required: bool,
        what: &str,
        at: &Span,
    ) -> Option<Sp<String>> {
        let (item, span) = self.value(t, key, required, what, at)?;
        match item.as_str() {
            Some(s) => Some(Sp {
                v: s.to_owned(),
                span,
            }),
            None => {
                self.error(
                    "wrong-type",
                    span,
                    format!("`{key}` in {what} must be a string"),
                    Some(format!("write `{key} = \"...\"`")),
                );
                None
            }
        }
    }

    pub(in crate::policy) fn strings(
        &mut self,
        t: &dyn TableLike,
        key: &str,
        required: bool,
        what: &str,
        at: &Span,
    ) -> Option<Vec<Sp<String>>> {
        let (item, span) = self.value(t, key, required, what, at)?;
        let Some(arr) = item.as_array() else {
            self.error(
                "wrong-type",
                span,
                format!("`{key}` in {what} must be a list of strings"),
                Some(format!("write `{key} = [\"...\"]`")),
            );
            return None;
        };
        let mut out = Vec::new();
        for v in arr.iter() {
            match v.as_str() {
                Some(s) => out.push(Sp {
                    v: s.to_owned(),
                    span: v.span(),
                }),
                None => self.error(
                    "wrong-type",
                    v.span(),
                    format!("`{key}` in {what} must hold only strings"),
                    None,
                ),
            }
        }
        Some(out)
    }

    pub(super) fn boolean(&mut self, t: &dyn TableLike, key: &str, what: &str) -> Option<bool> {
        let (item, span) = self.value(t, key, false, what, &None)?;
        let b = item.as_bool();
        if b.is_none() {
            self.error(
                "wrong-type",
                span,
                format!("`{key}` in {what} must be `true` or `false`"),
                Some(format!("write `{key} = true`")),
            );
        }
        b
    }

    pub(super) fn date(
        &mut self,
        t: &dyn TableLike,
        key: &str,
        what: &str,
        at: &Span,
    ) -> Option<Sp<NaiveDate>> {
        let (item, span) = self.value(t, key, true, what, at)?;
        let parsed = item
            .as_datetime()
            .filter(|d| d.time.is_none() && d.offset.is_none())
            .and_then(|d| d.date)
            .and_then(|d| {
                NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
            });
        if parsed.is_none() {
            self.error(
                "wrong-type",
                span.clone(),
                format!("`{key}` in {what} must be a date"),
                Some(format!(
                    "write a TOML date without quotes, e.g. `{key} = 2026-01-01`"
                )),
            );
        }
        parsed.map(|v| Sp { v, span })
    }

    pub(in crate::policy) fn integer(
        &mut self,
        t: &dyn TableLike,
        key: &str,
        required: bool,
        what: &str,
        at: &Span,
    ) -> Option<Sp<i64>> {
        let (item, span) = self.value(t, key, required, what, at)?;
        match item.as_integer() {
            Some(i) => Some(Sp { v: i, span }),
            None => {
                self.error(
                    "wrong-type",
                    span,
                    format!("`{key}` in {what} must be an integer"),
                    None,
                );
                None
            }
        }
    }

    /// `[[key]]` tables (an array of tables, or an inline array of inline tables).
    pub(in crate::policy) fn tables<'t>(
        &mut self,
        root: &'t dyn TableLike,
        key: &str,
    ) -> Vec<(&'t dyn TableLike, Span)> {
        let Some(item) = root.get(key) else {
            return Vec::new();
        };
        if let Some(aot) = item.as_array_of_tables() {
            return aot
                .iter()
                .map(|t| (t as &dyn TableLike, t.span()))
                .collect();
        }
        if let Some(arr) = item.as_array() {
            let mut out = Vec::new();
            for v in arr.iter() {
                match v.as_inline_table() {
                    Some(t) => out.push((t as &dyn TableLike, v.span())),
                    None => self.error(
                        "wrong-type",
                        v.span(),
                        format!("`{key}` must hold tables"),
                        None,
                    ),
                }
            }
            return out;
        }
        let span = root.key(key).and_then(|k| k.span());
        self.error(
            "wrong-type",
            span,
            format!("`{key}` must be an array of tables"),
            Some(format!("write each entry under a `[[{key}]]` header")),
        );
        Vec::new()
    }
}

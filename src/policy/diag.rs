//! Diagnostics for policy files: every problem with its file, line, column, what is wrong and
//! a hint, collected in one [`Report`] so that one run shows them all.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceCode};

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The set is refused.
    Error,
    /// The set loads, but someone should look.
    Warning,
}

/// One text file of the policy directory, kept for spans and rendering.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the policy directory, with `/` separators.
    pub name: String,
    /// The text.
    pub text: Arc<str>,
    named: Arc<NamedSource<String>>,
}

impl SourceFile {
    /// Wraps a file's text.
    pub fn new(name: String, text: String) -> Self {
        let named = Arc::new(NamedSource::new(name.clone(), text.clone()));
        Self {
            name,
            text: text.into(),
            named,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
        (line, column)
    }
}

/// One problem found in the policy directory.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code, e.g. `unknown-field`.
    pub code: &'static str,
    /// File relative to the policy directory.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong (lowercase, user input in backticks).
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    span: Option<Range<usize>>,
    source: Option<Arc<NamedSource<String>>>,
}

impl Diagnostic {
    /// A problem at a byte span of a file (`None`: the start of the file).
    pub fn at(
        severity: Severity,
        code: &'static str,
        file: &SourceFile,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        let (line, column) = file.line_col(span.as_ref().map_or(0, |s| s.start));
        Self {
            severity,
            code,
            file: file.name.clone(),
            line,
            column,
            message: message.into(),
            hint,
            span,
            source: Some(file.named.clone()),
        }
    }

    /// A problem with a whole file or directory (no position).
    pub fn file_level(
        severity: Severity,
        code: &'static str,
        file: &Path,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        Self {
            severity,
            code,
            file: file.display().to_string(),
            line: 1,
            column: 1,
            message: message.into(),
            hint,
            span: None,
            source: None,
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}[{}]: {}",
            self.file, self.line, self.column, self.code, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_deref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span.clone()?;
        self.source.as_ref()?;
        let len = span.end.saturating_sub(span.start).max(1);
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some("here".into()),
            span.start,
            len,
        ))))
    }
}

/// A diagnostic as the graphical report shows it: the handler prints the code, the hint and
/// the source excerpt itself, so the headline carries only the location and the message.
#[derive(Debug)]
struct Rendered<'a>(&'a Diagnostic);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "{}:{}:{}: {}", d.file, d.line, d.column, d.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        miette::Diagnostic::code(self.0)
    }

    fn severity(&self) -> Option<miette::Severity> {
        miette::Diagnostic::severity(self.0)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        miette::Diagnostic::help(self.0)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        miette::Diagnostic::source_code(self.0)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        miette::Diagnostic::labels(self.0)
    }
}

/// Every problem found in one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// `N error(s), M warning(s)`.
    pub fn summary(&self) -> String {
        format!(
            "{} error(s), {} warning(s)",
            self.error_count(),
            self.warning_count()
        )
    }

    /// Renders every problem with miette's graphical handler, each once: its code, then
    /// `file:line:column: message`, the source excerpt with the label, and the hint.
    pub fn render(&self) -> String {
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
        let mut out = String::new();
        for d in &self.diagnostics {
            if handler.render_report(&mut out, &Rendered(d)).is_err() {
                out.push_str(&d.to_string());
            }
            out.push('\n');
        }
        out
    }

    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Sorts problems by file, line and column.
    pub(crate) fn sort(&mut self) {
        self.diagnostics
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        f.write_str(&self.summary())
    }
}

/// The closest candidate to `input` by edit distance, for "did you mean" hints.
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(input, c), c))
        .filter(|(d, c)| *d <= (c.len().max(input.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// A hint listing the accepted values, with a suggestion when one is close.
pub(crate) fn choices_hint(input: &str, choices: &[&str]) -> String {
    let list = choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match did_you_mean(input, choices.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? expected one of {list}"),
        None => format!("expected one of {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_in_characters() {
        let f = SourceFile::new("a.toml".into(), "ab\ncdé\nx".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(8), (3, 1));
        assert_eq!(f.line_col(7), (2, 4));
    }

    #[test]
    fn suggestions_pick_the_closest_name() {
        assert_eq!(
            did_you_mean("narative", ["narrative", "disposition"]),
            Some("narrative")
        );
        assert_eq!(did_you_mean("zzz", ["narrative"]), None);
    }
}

//! Reading and validating the policy directory: `partners.toml`, `kinds/*.toml`,
//! `mous/*.toml`. Every problem becomes a [`Diagnostic`] with file, line, column and hint; the
//! walk never stops at the first one.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use toml_edit::{ImDocument, Item, TableLike, Value};

use super::diag::{Diagnostic, Report, Severity, SourceFile, choices_hint};
use super::files::PolicyFiles;
use super::limits::{self, FieldFlow};
use super::model::{
    EMERGENCY_PURPOSE, Effect, FieldDef, FieldType, Generalization, KindDef, Label, LegalBasis,
    MaskKeep, Mou, PURPOSES, Rule, Transform, is_known_purpose,
};
use super::partners::{PARTNERS_FILE, RegistryFile};
use crate::domain::{PartnerId, PartnerKind, Purpose, Role};

/// Sub-directory of record kinds.
pub const KINDS_DIR: &str = "kinds";
/// Sub-directory of MOUs.
pub const MOUS_DIR: &str = "mous";
/// Sub-directory of golden cases (not policy: excluded from loading and from the hash).
pub const CASES_DIR: &str = "cases";

pub(super) type Span = Option<Range<usize>>;

/// A value with where it was written.
#[derive(Debug, Clone)]
pub(super) struct Sp<T> {
    pub(super) v: T,
    pub(super) span: Span,
}

/// What validation learnt about one registered partner without loading its keys.
#[derive(Debug, Clone)]
pub(super) struct PartnerFacts {
    pub(super) kind: PartnerKind,
    pub(super) roles: BTreeSet<Role>,
    medical_roles: BTreeSet<Role>,
    has_encryption_key: bool,
}

/// The result of checking a directory: the report and, when it has no errors, the parts.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) report: Report,
    pub(crate) registry: Option<RegistryFile>,
    pub(crate) kinds: BTreeMap<String, KindDef>,
    pub(crate) mous: Vec<Mou>,
    pub(crate) reports: BTreeMap<String, crate::reports::ReportDef>,
}

pub(super) struct Cx<'a> {
    pub(super) file: &'a SourceFile,
    pub(super) report: &'a mut Report,
}

impl Cx<'_> {
    pub(super) fn error(
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

    pub(super) fn warn(
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

    pub(super) fn check_keys(&mut self, t: &dyn TableLike, allowed: &[&str], what: &str) {
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

    pub(super) fn value<'t>(
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

    pub(super) fn string(
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

    pub(super) fn strings(
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

    fn boolean(&mut self, t: &dyn TableLike, key: &str, what: &str) -> Option<bool> {
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

    fn date(
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

    pub(super) fn integer(
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
    pub(super) fn tables<'t>(
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

pub(super) fn parse_doc(file: &SourceFile, report: &mut Report) -> Option<ImDocument<String>> {
    match ImDocument::parse(file.text.to_string()) {
        Ok(doc) => Some(doc),
        Err(e) => {
            let msg = e.message().trim().to_lowercase();
            report.push(Diagnostic::at(
                Severity::Error,
                "syntax",
                file,
                e.span(),
                format!("invalid TOML: {msg}"),
                Some("see policies/README.md for the file format".into()),
            ));
            None
        }
    }
}

fn read_dir_files(files: &PolicyFiles, sub: &str, report: &mut Report) -> Vec<SourceFile> {
    if !files.has_dir(sub) {
        report.push(Diagnostic::file_level(
            Severity::Error,
            "unreadable",
            Path::new(sub),
            format!("cannot read directory `{sub}`: it does not exist"),
            Some(format!("create `{sub}/` in the policy directory")),
        ));
        return Vec::new();
    }
    files
        .in_dir(sub)
        .filter(|(path, _)| path.ends_with(".toml"))
        .map(|(path, text)| SourceFile::new(path.to_owned(), text.to_owned()))
        .collect()
}

pub(super) fn read_file(
    files: &PolicyFiles,
    name: &str,
    report: &mut Report,
) -> Option<SourceFile> {
    match files.get(name) {
        Some(text) => Some(SourceFile::new(name.to_owned(), text.to_owned())),
        None => {
            report.push(Diagnostic::file_level(
                Severity::Error,
                "unreadable",
                Path::new(name),
                format!("cannot read `{name}`: it does not exist"),
                None,
            ));
            None
        }
    }
}

/// Checks a policy set's files without key material. `now` decides which MOUs are expired.
pub(crate) fn check_files(files: &PolicyFiles, now: DateTime<Utc>) -> Checked {
    let mut report = Report::default();
    let (registry, partners) = match read_file(files, PARTNERS_FILE, &mut report) {
        Some(f) => check_partners(&f, &mut report),
        None => (None, BTreeMap::new()),
    };
    let mut kinds = BTreeMap::new();
    for f in read_dir_files(files, KINDS_DIR, &mut report) {
        if let Some(k) = check_kind(&f, &mut report) {
            let mut cx = Cx {
                file: &f,
                report: &mut report,
            };
            if kinds.contains_key(&k.v.id) {
                cx.error(
                    "duplicate",
                    k.span,
                    format!("record kind `{}` is declared twice", k.v.id),
                    Some("each kind lives in exactly one file under `kinds/`".into()),
                );
            } else {
                kinds.insert(k.v.id.clone(), k.v);
            }
        }
    }
    let mut mous: Vec<(Mou, SourceFile, MouSpans)> = Vec::new();
    for f in read_dir_files(files, MOUS_DIR, &mut report) {
        if let Some((m, spans)) = check_mou(&f, &partners, &kinds, now, &mut report) {
            if mous.iter().any(|(o, _, _)| o.id == m.id) {
                let mut cx = Cx {
                    file: &f,
                    report: &mut report,
                };
                cx.error(
                    "duplicate",
                    spans.id.clone(),
                    format!("mou `{}` is declared twice", m.id),
                    Some("give each MOU its own id".into()),
                );
            } else {
                mous.push((m, f, spans));
            }
        }
    }
    check_overlaps(&mous, &mut report);
    let mous: Vec<Mou> = mous.into_iter().map(|(m, _, _)| m).collect();
    let reports = super::reports::check_dir(files, &partners, &kinds, &mous, &mut report);
    report.sort();
    Checked {
        report,
        registry,
        kinds,
        mous,
        reports,
    }
}

fn check_partners(
    f: &SourceFile,
    report: &mut Report,
) -> (Option<RegistryFile>, BTreeMap<PartnerId, PartnerFacts>) {
    let mut facts = BTreeMap::new();
    let parsed: Result<RegistryFile, toml_edit::de::Error> = toml_edit::de::from_str(&f.text);
    let file = match parsed {
        Ok(file) => file,
        Err(e) => {
            report.push(Diagnostic::at(
                Severity::Error,
                "invalid-partner",
                f,
                e.span(),
                e.message().trim().to_owned(),
                Some("see policies/README.md, \"Partners\"".into()),
            ));
            return (None, facts);
        }
    };
    let doc = parse_doc(f, report);
    let id_spans: Vec<Span> = doc
        .as_ref()
        .and_then(|d| d.get("partner"))
        .and_then(Item::as_array_of_tables)
        .map(|a| a.iter().map(|t| t.get("id").and_then(Item::span)).collect())
        .unwrap_or_default();
    let mut cx = Cx { file: f, report };
    let mut issuers = BTreeMap::new();
    let mut witness_names = BTreeMap::new();
    for (i, p) in file.partners.iter().enumerate() {
        let span = id_spans.get(i).cloned().flatten();
        if facts.contains_key(&p.id) {
            cx.error(
                "duplicate",
                span.clone(),
                format!("partner `{}` is registered twice", p.id),
                Some("keep one entry per partner".into()),
            );
            continue;
        }
        if let Some(other) = issuers.insert(p.token.issuer.clone(), p.id.clone()) {
            cx.error(
                "duplicate",
                span.clone(),
                format!(
                    "partner `{}` uses issuer `{}` which partner `{other}` already uses",
                    p.id, p.token.issuer
                ),
                Some(
                    "each partner needs its own issuer so a token names exactly one agency".into(),
                ),
            );
        }
        if p.token.jwks_file.is_none() && p.token.keys.is_empty() {
            cx.error(
                "missing-key",
                span.clone(),
                format!("partner `{}` has no token verification key", p.id),
                Some("set `token.jwks_file` or add `[[partner.token.keys]]`".into()),
            );
        }
        // 42 CFR 2.51: a medical emergency discloses Part 2 information to medical personnel
        // only; a police agency has none.
        for r in &p.medical_roles {
            if p.kind == PartnerKind::Police {
                cx.error(
                    "medical-role",
                    span.clone(),
                    format!(
                        "partner `{}` is a police agency and cannot mark role `{r}` as medical",
                        p.id
                    ),
                    Some(
                        "42 CFR 2.51 medical emergencies disclose to medical personnel only; \
                         remove `medical_roles` from this partner"
                            .into(),
                    ),
                );
            } else if !p.roles.contains(r) {
                cx.error(
                    "medical-role",
                    span.clone(),
                    format!(
                        "partner `{}` marks role `{r}` as medical but does not declare it in \
                         `roles`",
                        p.id
                    ),
                    Some("list every medical role in `roles` too".into()),
                );
            }
        }
        if let Some(w) = &p.witness {
            match (&w.vkey, &w.vkey_file) {
                (Some(v), None) => match crate::policy::partners::WitnessEntry::parse_vkey(v) {
                    Ok(vk) => {
                        if let Some(other) = witness_names.insert(vk.name.clone(), p.id.clone()) {
                            cx.error(
                                "duplicate",
                                span.clone(),
                                format!(
                                    "partner `{}` uses witness key name `{}` which partner \
                                     `{other}` already uses",
                                    p.id, vk.name
                                ),
                                Some("each witness needs its own key name".into()),
                            );
                        }
                    }
                    Err(e) => cx.error(
                        "invalid-witness-key",
                        span.clone(),
                        format!("partner `{}`: `witness.vkey`: {e}", p.id),
                        Some(
                            "paste the vkey the partner's `audit witness-key` printed: \
                             `<name>+<8 hex digits>+<base64>`"
                                .into(),
                        ),
                    ),
                },
                (None, Some(_)) => {}
                _ => cx.error(
                    "invalid-witness-key",
                    span.clone(),
                    format!(
                        "partner `{}`: `[partner.witness]` needs exactly one of `vkey` and \
                         `vkey_file`",
                        p.id
                    ),
                    Some("keep one of the two".into()),
                ),
            }
        }
        facts.insert(
            p.id.clone(),
            PartnerFacts {
                kind: p.kind,
                roles: p.roles.iter().cloned().collect(),
                medical_roles: p.medical_roles.iter().cloned().collect(),
                has_encryption_key: p.encryption.is_some(),
            },
        );
    }
    (Some(file), facts)
}

const KIND_FILE_KEYS: [&str; 2] = ["kind", "field"];
const KIND_KEYS: [&str; 3] = ["id", "owner", "description"];
const FIELD_KEYS: [&str; 7] = [
    "name",
    "type",
    "values",
    "labels",
    "writable_by",
    "required",
    "description",
];
const PARTNER_KINDS: [&str; 3] = ["police", "mental-health", "compliance"];

fn check_kind(f: &SourceFile, report: &mut Report) -> Option<Sp<KindDef>> {
    let doc = parse_doc(f, report)?;
    let mut cx = Cx { file: f, report };
    let root: &dyn TableLike = doc.as_table();
    cx.check_keys(root, &KIND_FILE_KEYS, "a record-kind file");
    let Some(kt) = root.get("kind").and_then(Item::as_table_like) else {
        cx.error(
            "missing-key",
            None,
            "record-kind file has no `[kind]` table".into(),
            Some("start the file with `[kind]`, `id = ...`, `owner = ...`".into()),
        );
        return None;
    };
    let kspan = root.get("kind").and_then(Item::span);
    cx.check_keys(kt, &KIND_KEYS, "`[kind]`");
    let id = cx.string(kt, "id", true, "`[kind]`", &kspan);
    let owner = cx.string(kt, "owner", true, "`[kind]`", &kspan);
    let description = cx.string(kt, "description", false, "`[kind]`", &kspan);
    let owner_kind = owner.as_ref().and_then(|o| {
        let k = o.v.parse::<PartnerKind>().ok();
        if k.is_none() {
            cx.error(
                "unknown-partner-kind",
                o.span.clone(),
                format!("unknown partner kind `{}`", o.v),
                Some(choices_hint(&o.v, &PARTNER_KINDS)),
            );
        }
        k
    });
    if let Some(id) = &id
        && id.v.parse::<PartnerId>().is_err()
    {
        cx.error(
            "invalid-id",
            id.span.clone(),
            format!("record kind id `{}` is not a valid id", id.v),
            Some("use lowercase letters, digits, `-` and `_`, starting with a letter".into()),
        );
    }
    let mut fields: Vec<FieldDef> = Vec::new();
    let field_tables = cx.tables(root, "field");
    if field_tables.is_empty() {
        cx.error(
            "missing-key",
            kspan.clone(),
            "record kind has no `[[field]]`".into(),
            Some("declare each field under a `[[field]]` header".into()),
        );
    }
    for (t, span) in field_tables {
        cx.check_keys(t, &FIELD_KEYS, "`[[field]]`");
        let name = cx.string(t, "name", true, "`[[field]]`", &span);
        let ty = cx.string(t, "type", true, "`[[field]]`", &span);
        let values = cx.strings(t, "values", false, "`[[field]]`", &span);
        let labels = cx
            .strings(t, "labels", true, "`[[field]]`", &span)
            .unwrap_or_default();
        let writable = cx.strings(t, "writable_by", false, "`[[field]]`", &span);
        let desc = cx.string(t, "description", false, "`[[field]]`", &span);
        let required = cx.boolean(t, "required", "`[[field]]`").unwrap_or(false);
        let (Some(name), Some(ty)) = (name, ty) else {
            continue;
        };
        if fields.iter().any(|f| f.name == name.v) {
            cx.error(
                "duplicate",
                name.span.clone(),
                format!("field `{}` is declared twice", name.v),
                None,
            );
            continue;
        }
        let field_ty = match ty.v.as_str() {
            "string" => Some(FieldType::String),
            "text" => Some(FieldType::Text),
            "date" => Some(FieldType::Date),
            "datetime" => Some(FieldType::Datetime),
            "integer" => Some(FieldType::Integer),
            "age" => Some(FieldType::Age),
            "boolean" => Some(FieldType::Boolean),
            "phone" => Some(FieldType::Phone),
            "address" => Some(FieldType::Address),
            "list" => Some(FieldType::List),
            "enum" => match &values {
                Some(v) if !v.is_empty() => {
                    Some(FieldType::Enum(v.iter().map(|s| s.v.clone()).collect()))
                }
                _ => {
                    cx.error(
                        "missing-key",
                        ty.span.clone(),
                        format!("enum field `{}` has no `values`", name.v),
                        Some("list the allowed values: `values = [\"A\", \"B\"]`".into()),
                    );
                    None
                }
            },
            other => {
                cx.error(
                    "unknown-type",
                    ty.span.clone(),
                    format!("unknown field type `{other}`"),
                    Some(choices_hint(other, &FieldType::NAMES)),
                );
                None
            }
        };
        if values.is_some() && ty.v != "enum" {
            let span = t.key("values").and_then(|k| k.span());
            cx.error(
                "unexpected-key",
                span,
                format!(
                    "`values` is only for enum fields, and `{}` is `{}`",
                    name.v, ty.v
                ),
                Some("remove `values` or set `type = \"enum\"`".into()),
            );
        }
        let mut label_set = BTreeSet::new();
        for l in &labels {
            match Label::parse(&l.v) {
                Some(label) => {
                    label_set.insert(label);
                }
                None => {
                    let names: Vec<&str> = Label::ALL.iter().map(|l| l.as_str()).collect();
                    cx.error(
                        "unknown-label",
                        l.span.clone(),
                        format!("unknown sensitivity label `{}`", l.v),
                        Some(choices_hint(&l.v, &names)),
                    );
                }
            }
        }
        let mut writable_by = BTreeSet::new();
        for w in writable.unwrap_or_default() {
            match w.v.parse::<PartnerKind>() {
                Ok(k) => {
                    writable_by.insert(k);
                }
                Err(_) => cx.error(
                    "unknown-partner-kind",
                    w.span.clone(),
                    format!("unknown partner kind `{}`", w.v),
                    Some(choices_hint(&w.v, &PARTNER_KINDS)),
                ),
            }
        }
        if writable_by.is_empty()
            && let Some(o) = owner_kind
        {
            writable_by.insert(o);
        }
        if let Some(ty) = field_ty {
            fields.push(FieldDef {
                name: name.v,
                ty,
                labels: label_set,
                writable_by,
                required,
                description: desc.map(|d| d.v).unwrap_or_default(),
            });
        }
    }
    let (id, owner) = (id?, owner_kind?);
    Some(Sp {
        span: id.span,
        v: KindDef {
            id: id.v,
            owner,
            description: description.map(|d| d.v).unwrap_or_default(),
            fields,
        },
    })
}

/// Where the parts of an MOU were written, for later cross-checks.
#[derive(Debug, Clone, Default)]
struct MouSpans {
    id: Span,
    rules: Vec<RuleSpans>,
}

#[derive(Debug, Clone, Default)]
struct RuleSpans {
    id: Span,
    fields: BTreeMap<String, Span>,
}

const MOU_FILE_KEYS: [&str; 2] = ["mou", "rule"];
const MOU_KEYS: [&str; 10] = [
    "id",
    "title",
    "document",
    "signatories",
    "parties",
    "effective",
    "expires",
    "retention_days",
    "prohibited_uses",
    "description",
];
const RULE_KEYS: [&str; 12] = [
    "id",
    "title",
    "effect",
    "recipients",
    "roles",
    "purposes",
    "kind",
    "legal_basis",
    "citation",
    "fields",
    "release_cji",
    "description",
];
const TRANSFORMS: [&str; 6] = [
    "reveal",
    "omit",
    "mask",
    "generalize",
    "pseudonymize",
    "encrypt",
];
const GENERALIZATIONS: [&str; 5] = ["year", "month", "age-band", "city", "zip3"];

fn check_mou(
    f: &SourceFile,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
    kinds: &BTreeMap<String, KindDef>,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Option<(Mou, MouSpans)> {
    let doc = parse_doc(f, report)?;
    let mut cx = Cx { file: f, report };
    let root: &dyn TableLike = doc.as_table();
    cx.check_keys(root, &MOU_FILE_KEYS, "an MOU file");
    let Some(mt) = root.get("mou").and_then(Item::as_table_like) else {
        cx.error(
            "missing-key",
            None,
            "MOU file has no `[mou]` table".into(),
            Some("start the file with `[mou]`".into()),
        );
        return None;
    };
    let mspan = root.get("mou").and_then(Item::span);
    let w = "`[mou]`";
    cx.check_keys(mt, &MOU_KEYS, w);
    let id = cx.string(mt, "id", true, w, &mspan);
    let title = cx.string(mt, "title", true, w, &mspan);
    let document = cx.string(mt, "document", true, w, &mspan);
    let signatories = cx
        .strings(mt, "signatories", false, w, &mspan)
        .unwrap_or_default();
    let parties_sp = cx
        .strings(mt, "parties", true, w, &mspan)
        .unwrap_or_default();
    let effective = cx.date(mt, "effective", w, &mspan);
    let expires = cx.date(mt, "expires", w, &mspan);
    let retention = cx.integer(mt, "retention_days", true, w, &mspan);
    let _ = cx.strings(mt, "prohibited_uses", false, w, &mspan);
    let _ = cx.string(mt, "description", false, w, &mspan);

    let mut parties = BTreeSet::new();
    for p in &parties_sp {
        match p.v.parse::<PartnerId>() {
            Ok(pid) if partners.contains_key(&pid) || partners.is_empty() => {
                parties.insert(pid);
            }
            _ => cx.error(
                "unknown-partner",
                p.span.clone(),
                format!("party `{}` is not a registered partner", p.v),
                Some(partner_hint(&p.v, partners)),
            ),
        }
    }
    if let (Some(e), Some(x)) = (&effective, &expires) {
        if x.v < e.v {
            cx.error(
                "invalid-term",
                x.span.clone(),
                format!("the MOU expires ({}) before it takes effect ({})", x.v, e.v),
                Some("check the dates against the signed document".into()),
            );
        } else if x.v < now.date_naive() {
            cx.warn(
                "expired",
                x.span.clone(),
                format!(
                    "mou `{}` expired on {}; its rules no longer apply",
                    id.as_ref().map_or("?", |i| i.v.as_str()),
                    x.v
                ),
                Some("renew the MOU and update `expires`, or remove the file".into()),
            );
        }
    }
    if let Some(r) = &retention
        && !(1..=36_500).contains(&r.v)
    {
        cx.error(
            "invalid-retention",
            r.span.clone(),
            format!(
                "`retention_days` is {}; it must be between 1 and 36500",
                r.v
            ),
            None,
        );
    }

    let mut spans = MouSpans {
        id: id.as_ref().and_then(|i| i.span.clone()),
        rules: Vec::new(),
    };
    let mut rules = Vec::new();
    let rule_tables = cx.tables(root, "rule");
    if rule_tables.is_empty() {
        cx.error(
            "missing-key",
            mspan.clone(),
            "the MOU has no `[[rule]]`".into(),
            Some("an MOU without flows grants nothing; add a `[[rule]]`".into()),
        );
    }
    for (t, span) in rule_tables {
        if let Some((rule, rs)) = check_rule(&mut cx, t, &span, &parties, partners, kinds) {
            if rules.iter().any(|r: &Rule| r.id == rule.id) {
                cx.error(
                    "duplicate",
                    rs.id.clone(),
                    format!("rule `{}` appears twice in this MOU", rule.id),
                    Some("give each rule its own id".into()),
                );
                continue;
            }
            rules.push(rule);
            spans.rules.push(rs);
        }
    }
    let (id, title, document, effective, expires, retention) =
        (id?, title?, document?, effective?, expires?, retention?);
    Some((
        Mou {
            id: id.v,
            title: title.v,
            document: document.v,
            signatories: signatories.into_iter().map(|s| s.v).collect(),
            parties,
            effective: effective.v,
            expires: expires.v,
            retention_days: u32::try_from(retention.v).unwrap_or(0),
            rules,
            file: f.name.clone(),
        },
        spans,
    ))
}

fn partner_hint(input: &str, partners: &BTreeMap<PartnerId, PartnerFacts>) -> String {
    let names: Vec<&str> = partners.keys().map(PartnerId::as_str).collect();
    format!(
        "{}; partners are registered in `partners.toml`",
        choices_hint(input, &names)
    )
}

fn check_rule(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    span: &Span,
    parties: &BTreeSet<PartnerId>,
    partners: &BTreeMap<PartnerId, PartnerFacts>,
    kinds: &BTreeMap<String, KindDef>,
) -> Option<(Rule, RuleSpans)> {
    let w = "`[[rule]]`";
    cx.check_keys(t, &RULE_KEYS, w);
    let id = cx.string(t, "id", true, w, span);
    let title = cx.string(t, "title", false, w, span);
    let effect_sp = cx.string(t, "effect", false, w, span);
    let recipients_sp = cx
        .strings(t, "recipients", true, w, span)
        .unwrap_or_default();
    let roles_sp = cx.strings(t, "roles", true, w, span).unwrap_or_default();
    let purposes_sp = cx.strings(t, "purposes", true, w, span).unwrap_or_default();
    let kind_sp = cx.string(t, "kind", true, w, span);
    let release_cji_sp = cx
        .strings(t, "release_cji", false, w, span)
        .unwrap_or_default();
    let _ = cx.string(t, "description", false, w, span);

    let effect = match effect_sp.as_ref().map(|e| e.v.as_str()) {
        None | Some("permit") => Effect::Permit,
        Some("deny") => Effect::Deny,
        Some(other) => {
            cx.error(
                "unknown-effect",
                effect_sp.as_ref().and_then(|e| e.span.clone()),
                format!("unknown effect `{other}`"),
                Some(choices_hint(other, &["permit", "deny"])),
            );
            Effect::Permit
        }
    };

    let mut recipients = BTreeSet::new();
    for r in &recipients_sp {
        let Ok(pid) = r.v.parse::<PartnerId>() else {
            cx.error(
                "unknown-partner",
                r.span.clone(),
                format!("recipient `{}` is not a registered partner", r.v),
                Some(partner_hint(&r.v, partners)),
            );
            continue;
        };
        if !partners.contains_key(&pid) {
            cx.error(
                "unknown-partner",
                r.span.clone(),
                format!("recipient `{}` is not a registered partner", r.v),
                Some(partner_hint(&r.v, partners)),
            );
        } else if !parties.contains(&pid) {
            cx.error("not-a-party", r.span.clone(), format!("recipient `{}` is not a party to this MOU", r.v), Some("add it to `parties` in `[mou]` (and to the signed document), or remove it here".into()));
        }
        recipients.insert(pid);
    }
    let declared_roles: BTreeSet<&Role> = recipients
        .iter()
        .filter_map(|p| partners.get(p))
        .flat_map(|f| f.roles.iter())
        .collect();
    let mut roles = BTreeSet::new();
    for r in &roles_sp {
        match r.v.parse::<Role>() {
            Ok(role) => {
                if !declared_roles.is_empty() && !declared_roles.contains(&role) {
                    let names: Vec<&str> = declared_roles.iter().map(|r| r.as_str()).collect();
                    cx.error(
                        "unknown-role",
                        r.span.clone(),
                        format!(
                            "role `{}` is not declared by any recipient of this rule",
                            r.v
                        ),
                        Some(format!(
                            "{}; roles are declared per partner in `partners.toml`",
                            choices_hint(&r.v, &names)
                        )),
                    );
                }
                roles.insert(role);
            }
            Err(e) => cx.error("unknown-role", r.span.clone(), e.to_string(), None),
        }
    }
    let mut purposes = BTreeSet::new();
    for p in &purposes_sp {
        let names: Vec<&str> = PURPOSES.iter().map(|(p, _)| *p).collect();
        match p.v.parse::<Purpose>() {
            Ok(purpose) if is_known_purpose(&p.v) => {
                purposes.insert(purpose);
            }
            _ => cx.error(
                "unknown-purpose",
                p.span.clone(),
                format!("unknown purpose of use `{}`", p.v),
                Some(choices_hint(&p.v, &names)),
            ),
        }
    }
    let kind = kind_sp.as_ref().and_then(|k| {
        let found = kinds.get(&k.v);
        if found.is_none() {
            let names: Vec<&str> = kinds.keys().map(String::as_str).collect();
            cx.error(
                "unknown-kind",
                k.span.clone(),
                format!("unknown record kind `{}`", k.v),
                Some(format!(
                    "{}; kinds are declared under `kinds/`",
                    choices_hint(&k.v, &names)
                )),
            );
        }
        found
    });
    if let Some(k) = kind
        && !partners.is_empty()
        && !parties
            .iter()
            .any(|p| partners.get(p).is_some_and(|f| f.kind == k.owner))
    {
        cx.error(
            "no-holder",
            kind_sp.as_ref().and_then(|k| k.span.clone()),
            format!(
                "no party to this MOU holds `{}` records (they are owned by {} partners)",
                k.id, k.owner
            ),
            Some(
                "add the holding agency to `parties`, or move the rule to an MOU it signed".into(),
            ),
        );
    }

    // Legal basis.
    let basis = if effect == Effect::Permit {
        check_basis(cx, t, span, &purposes)
    } else {
        if let Some(k) = t.key("legal_basis") {
            cx.error(
                "unexpected-key",
                k.span(),
                "a deny rule has no legal basis".into(),
                Some("remove `legal_basis` from the deny rule".into()),
            );
        }
        Some(LegalBasis::Consent)
    };

    // 42 CFR 2.51: a medical-emergency rule discloses to medical personnel only, never to
    // police, and each of its roles must be a medical role of a recipient.
    if let Some(LegalBasis::MedicalEmergency { .. }) = &basis {
        for r in &recipients_sp {
            let Ok(pid) = r.v.parse::<PartnerId>() else {
                continue;
            };
            if partners
                .get(&pid)
                .is_some_and(|f| f.kind == PartnerKind::Police)
            {
                cx.error(
                    "medical-emergency-police",
                    r.span.clone(),
                    format!(
                        "recipient `{}` is a police agency: a medical-emergency rule never \
                         discloses to police",
                        r.v
                    ),
                    Some(
                        "42 CFR 2.51 is for medical personnel; police use the `emergency` \
                         profile (HIPAA 164.512(j)), which never carries Part 2 fields"
                            .into(),
                    ),
                );
            }
        }
        let medical: BTreeSet<&Role> = recipients
            .iter()
            .filter_map(|p| partners.get(p))
            .flat_map(|f| f.medical_roles.iter())
            .collect();
        for r in &roles_sp {
            if let Ok(role) = r.v.parse::<Role>()
                && !medical.contains(&role)
            {
                cx.error(
                    "not-medical-role",
                    r.span.clone(),
                    format!(
                        "role `{}` is not marked medical by any recipient of this \
                         medical-emergency rule",
                        r.v
                    ),
                    Some(
                        "list it in the recipient's `medical_roles` in `partners.toml` (only \
                         medical personnel may receive under 42 CFR 2.51), or remove it here"
                            .into(),
                    ),
                );
            }
        }
    }

    // Field profile.
    let mut rs = RuleSpans {
        id: id.as_ref().and_then(|i| i.span.clone()),
        fields: BTreeMap::new(),
    };
    let mut fields = BTreeMap::new();
    match (t.get("fields"), effect) {
        (Some(item), Effect::Deny) => cx.error(
            "unexpected-key",
            t.key("fields").and_then(|k| k.span()).or(item.span()),
            "a deny rule has no field profile: it forbids the whole flow".into(),
            Some("remove `fields` from the deny rule".into()),
        ),
        (None, Effect::Permit) => cx.error(
            "missing-key",
            span.clone(),
            "permit rule has no `fields` profile".into(),
            Some("add `[rule.fields]` naming each field and its transform".into()),
        ),
        (Some(item), Effect::Permit) => {
            match item.as_table_like() {
                None => cx.error(
                    "wrong-type",
                    item.span(),
                    "`fields` must be a table of field = transform".into(),
                    None,
                ),
                Some(ft) => {
                    for (name, fitem) in ft.iter() {
                        let key_span = ft.key(name).and_then(|k| k.span());
                        let vspan = fitem.span().or(key_span.clone());
                        let Some(transform) = parse_transform(cx, fitem, &vspan) else {
                            continue;
                        };
                        if let Some(k) = kind {
                            match k.field(name) {
                                None => {
                                    let names: Vec<&str> =
                                        k.fields.iter().map(|f| f.name.as_str()).collect();
                                    cx.error(
                                        "unknown-field",
                                        key_span.clone(),
                                        format!("record kind `{}` has no field `{name}`", k.id),
                                        Some(choices_hint(name, &names)),
                                    );
                                }
                                Some(fd) if !transform.fits(&fd.ty) => {
                                    cx.error("transform-type", vspan.clone(), format!("transform `{}` does not fit field `{name}` of type `{}`", transform.describe(), fd.ty.name()), Some(fits_hint(&fd.ty)));
                                }
                                Some(_) => {}
                            }
                        }
                        rs.fields.insert(name.to_owned(), vspan);
                        fields.insert(name.to_owned(), transform);
                    }
                }
            }
        }
        (None, Effect::Deny) => {}
    }

    // release_cji names existing CJI fields of the kind.
    let mut release_cji = BTreeSet::new();
    for c in &release_cji_sp {
        if let Some(k) = kind {
            match k.field(&c.v) {
                Some(fd) if fd.labels.contains(&Label::Cji) => {}
                Some(_) => cx.error(
                    "not-cji",
                    c.span.clone(),
                    format!("field `{}` is not labelled `cji`", c.v),
                    Some("list only criminal-justice-information fields in `release_cji`".into()),
                ),
                None => cx.error(
                    "unknown-field",
                    c.span.clone(),
                    format!("record kind `{}` has no field `{}`", k.id, c.v),
                    None,
                ),
            }
        }
        release_cji.insert(c.v.clone());
    }

    // Encryption needs a key for every recipient.
    if fields.values().any(|t| *t == Transform::Encrypt) {
        for r in &recipients {
            if partners.get(r).is_some_and(|f| !f.has_encryption_key) {
                let span = rs
                    .fields
                    .iter()
                    .find(|(n, _)| fields.get(*n) == Some(&Transform::Encrypt))
                    .and_then(|(_, s)| s.clone());
                cx.error("no-encryption-key", span, format!("transform `encrypt` needs an encryption key for recipient `{r}`, and it has none"), Some(format!("add `[partner.encryption]` with `jwk_file` to `{r}` in `partners.toml`")));
            }
        }
    }

    // Hard limits: the best case at validation (a consent naming every field).
    if let (Some(k), Some(basis)) = (kind, &basis)
        && effect == Effect::Permit
    {
        for (name, transform) in &fields {
            if *transform == Transform::Omit {
                continue;
            }
            let Some(fd) = k.field(name) else { continue };
            'field: for r in &recipients {
                let Some(pf) = partners.get(r) else { continue };
                for p in &purposes {
                    let flow = FieldFlow {
                        labels: &fd.labels,
                        recipient_kind: pf.kind,
                        purpose: p.as_str(),
                        basis,
                        cji_named: release_cji.contains(name),
                        consent_names_field: true,
                    };
                    if let Some(limit) = limits::check(&flow) {
                        cx.error(
                            "hard-limit",
                            rs.fields.get(name).cloned().flatten(),
                            format!(
                                "field `{name}` to `{r}` for `{p}` breaks a hard limit ({}): {}",
                                limit.code(),
                                limit.explanation()
                            ),
                            Some(limit.hint().into()),
                        );
                        break 'field;
                    }
                }
            }
        }
    }

    let (id, kind, basis) = (id?, kind?, basis?);
    Some((
        Rule {
            id: id.v,
            title: title.map(|t| t.v).unwrap_or_default(),
            effect,
            recipients,
            roles,
            purposes,
            kind: kind.id.clone(),
            basis,
            fields,
            release_cji,
        },
        rs,
    ))
}

fn check_basis(
    cx: &mut Cx<'_>,
    t: &dyn TableLike,
    span: &Span,
    purposes: &BTreeSet<Purpose>,
) -> Option<LegalBasis> {
    let w = "`[[rule]]`";
    let b = cx.string(t, "legal_basis", true, w, span)?;
    let citation = cx.string(t, "citation", false, w, span);
    let emergency = purposes.iter().any(|p| p.as_str() == EMERGENCY_PURPOSE);
    let need_citation = |cx: &mut Cx<'_>, kind: &str| -> Option<String> {
        match &citation {
            Some(c) if !c.v.trim().is_empty() => Some(c.v.clone()),
            _ => {
                cx.error(
                    "missing-key",
                    b.span.clone(),
                    format!("legal basis `{kind}` needs a `citation`"),
                    Some("name the provision, e.g. `citation = \"45 CFR 164.506(c)\"`".into()),
                );
                None
            }
        }
    };
    let basis = match b.v.as_str() {
        "consent" => Some(LegalBasis::Consent),
        "law" => need_citation(cx, "law").map(|citation| LegalBasis::Law { citation }),
        "emergency" => {
            if purposes.iter().any(|p| p.as_str() != EMERGENCY_PURPOSE) {
                cx.error("emergency-profile", b.span.clone(), "an emergency rule may only serve purpose `emergency`".into(), Some("keep the emergency profile in its own rule with `purposes = [\"emergency\"]`".into()));
            }
            need_citation(cx, "emergency").map(|citation| LegalBasis::Emergency { citation })
        }
        "medical-emergency" => {
            if purposes.iter().any(|p| p.as_str() != EMERGENCY_PURPOSE) {
                cx.error(
                    "emergency-profile",
                    b.span.clone(),
                    "a medical-emergency rule may only serve purpose `emergency`".into(),
                    Some(
                        "keep the 42 CFR 2.51 profile in its own rule with `purposes = \
                         [\"emergency\"]`"
                            .into(),
                    ),
                );
            }
            need_citation(cx, "medical-emergency")
                .map(|citation| LegalBasis::MedicalEmergency { citation })
        }
        other => {
            cx.error(
                "unknown-basis",
                b.span.clone(),
                format!("unknown legal basis `{other}`"),
                Some(choices_hint(
                    other,
                    &["consent", "law", "emergency", "medical-emergency"],
                )),
            );
            None
        }
    };
    if emergency
        && !matches!(
            basis,
            Some(LegalBasis::Emergency { .. } | LegalBasis::MedicalEmergency { .. }) | None
        )
    {
        cx.error(
            "emergency-profile",
            b.span.clone(),
            "purpose `emergency` needs `legal_basis = \"emergency\"` or \
             `\"medical-emergency\"`"
                .into(),
            Some(
                "the serious-and-imminent-threat profile (HIPAA 164.512(j)) is a rule of its own"
                    .into(),
            ),
        );
    }
    basis
}

fn fits_hint(ty: &FieldType) -> String {
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

fn parse_transform(cx: &mut Cx<'_>, item: &Item, span: &Span) -> Option<Transform> {
    if let Some(s) = item.as_str() {
        return match s {
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
        };
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
        "mask" => {
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
        "generalize" => {
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
        "reveal" | "omit" | "pseudonymize" | "encrypt" => {
            cx.check_keys(t, &["transform"], "a transform without parameters");
            parse_transform(cx, &Item::Value(Value::from(name.v.as_str())), span)
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

/// Permit rules that can apply to the same request must agree on every field they both name.
fn check_overlaps(mous: &[(Mou, SourceFile, MouSpans)], report: &mut Report) {
    let mut seen: Vec<(&Mou, &Rule, &SourceFile, &RuleSpans)> = Vec::new();
    for (m, f, spans) in mous {
        for (r, rs) in m.rules.iter().zip(spans.rules.iter()) {
            if r.effect != Effect::Permit {
                continue;
            }
            for (om, or, _, _) in &seen {
                let overlap = or.kind == r.kind
                    && om.effective <= m.expires
                    && m.effective <= om.expires
                    && !or.recipients.is_disjoint(&r.recipients)
                    && !or.roles.is_disjoint(&r.roles)
                    && !or.purposes.is_disjoint(&r.purposes);
                if !overlap {
                    continue;
                }
                for (field, t) in &r.fields {
                    if let Some(ot) = or.fields.get(field)
                        && ot != t
                    {
                        report.push(Diagnostic::at(
                            Severity::Error,
                            "overlap",
                            f,
                            rs.fields.get(field).cloned().flatten(),
                            format!(
                                "rules `{}/{}` and `{}/{}` apply to the same recipients, roles and purposes and disagree on field `{field}`: `{}` here, `{}` there",
                                m.id, r.id, om.id, or.id, t.describe(), ot.describe()
                            ),
                            Some("give the field the same transform in both rules, or make the rules' roles or purposes disjoint".into()),
                        ));
                    }
                }
            }
            seen.push((m, r, f, rs));
        }
    }
}

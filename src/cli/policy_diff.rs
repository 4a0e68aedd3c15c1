//! `coresponse-gateway policy diff OLD_DIR NEW_DIR [--json] [--at TIME]`: every flow whose
//! outcome an edit of the policy changes, and exit status 3 when anything is newly revealed
//! (or revealed in a more revealing form), so the command can gate a change in a partner's
//! review process. Needs no key material and no database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::policy::PolicySet;
use crate::policy::diff;

/// Exit status when the new set reveals something the old one did not.
pub(super) const EXIT_REVEALS_MORE: u8 = 3;

/// `policy diff`: the arguments.
#[derive(Debug, clap::Args)]
pub(super) struct DiffArgs {
    /// The policy directory in force (e.g. a checkout of the reviewed set).
    pub(super) old: PathBuf,
    /// The proposed policy directory.
    pub(super) new: PathBuf,
    /// Compare from this time on, RFC 3339 (default: now); later days on which an MOU takes
    /// effect or ends are compared too.
    #[arg(long)]
    pub(super) at: Option<String>,
    /// Print the diff as JSON.
    #[arg(long)]
    pub(super) json: bool,
}

fn load(dir: &Path, at: chrono::DateTime<chrono::Utc>) -> anyhow::Result<PolicySet> {
    match PolicySet::load_unkeyed(dir, at) {
        Ok((set, _)) => Ok(set),
        Err(crate::policy::PolicyError::Invalid(report)) => {
            super::write_err(format_args!("{}", report.render().trim_end_matches('\n')));
            anyhow::bail!(
                "`{}` has errors; run `policy check {}` for details",
                dir.display(),
                dir.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs `policy diff`: exit 0 when nothing is newly revealed, 3 when something is, 1 on error.
pub(super) fn run(a: &DiffArgs) -> anyhow::Result<ExitCode> {
    let at = match &a.at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("`--at {t}` is not an RFC 3339 time: {e}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let old = load(&a.old, at)?;
    let new = load(&a.new, at)?;
    let d = diff::diff(&old, &new, at)?;
    if a.json {
        super::write_out(format_args!("{}", serde_json::to_string_pretty(&d)?))?;
    } else {
        super::write_out(format_args!("{}", d.render().trim_end()))?;
    }
    Ok(if d.reveals_more() {
        ExitCode::from(EXIT_REVEALS_MORE)
    } else {
        ExitCode::SUCCESS
    })
}

//! What every throwaway PostgreSQL server of the tests and benchmarks shares: finding the
//! server binaries, running them (as the `postgres` user when run as root, since root cannot
//! run initdb), a directory the server may write to, a free port, and `initdb`.
//!
//! Included by path (`#[path = ".../tests/common/pg_server.rs"] mod pg_server;`) into each test
//! or benchmark program that starts a cluster; each keeps its own cluster type on top.

// Each program that includes this file uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The directory of the PostgreSQL server binaries: `PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` holding `initdb`, else where `initdb` is on the `PATH`.
pub fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
    {
        return Ok(dir);
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = p.parent() {
            return Ok(dir.to_owned());
        }
    }
    Err(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found: install them \
         (Debian/Ubuntu: `apt-get install postgresql`; `bash .ci/run` does) or set PG_BIN to \
         their directory"
            .to_owned(),
    )
}

/// Whether this process runs as root (then the server runs as `postgres`).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A new temporary directory, kept on disk (its owner removes it), owned by `postgres` when
/// `as_postgres`.
pub fn server_dir(prefix: &str, as_postgres: bool) -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?
        .keep();
    if as_postgres {
        must(
            Path::new("chown"),
            &["postgres:postgres", &dir.display().to_string()],
            false,
        )
        .map_err(|e| format!("{e} (is the postgres user missing?)"))?;
    }
    Ok(dir)
}

/// `bin`, to be run as `postgres` when `as_postgres`.
pub fn command(bin: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// Runs `bin` with `args` (standard input closed) and returns what it printed.
pub fn run(bin: &Path, args: &[&str], as_postgres: bool) -> Result<Output, String> {
    command(bin, as_postgres)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))
}

/// Runs `bin` with `args`; an error names it and says what it printed when it fails.
pub fn must(bin: &Path, args: &[&str], as_postgres: bool) -> Result<(), String> {
    let out = run(bin, args, as_postgres)?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} {args:?} failed: {}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// `initdb` of a new cluster in `data`: superuser `postgres`, trust authentication (the
/// server listens on loopback only), UTF-8, no sync (a throwaway cluster).
pub fn initdb(bin_dir: &Path, data: &Path, as_postgres: bool) -> Result<(), String> {
    must(
        &bin_dir.join("initdb"),
        &[
            "-D",
            &data.display().to_string(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        as_postgres,
    )
}

/// The shell command that stops the server of `data` at once, as a crash would (no shutdown
/// checkpoint), and waits until it is gone.
pub fn shell_stop(bin_dir: &Path, data: &Path, as_postgres: bool) -> String {
    let pg_ctl = format!(
        "{}/pg_ctl -D {} -m immediate -w stop",
        bin_dir.display(),
        data.display()
    );
    if as_postgres {
        format!("runuser -u postgres -- {pg_ctl}")
    } else {
        pg_ctl
    }
}

/// Starts a process that waits for this one to end, then stops the server of `data` and
/// removes `dir`: the cluster goes away however this process ends (it outlives it by at most a
/// second).
pub fn spawn_reaper(
    bin_dir: &Path,
    data: &Path,
    dir: &Path,
    as_postgres: bool,
) -> Result<(), String> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        stop = shell_stop(bin_dir, data, as_postgres),
        dir = dir.display()
    );
    // The reaper must outlive this process, so it is never waited for.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster reaper: {e}"))?;
    Ok(())
}

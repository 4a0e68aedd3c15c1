//! The README's first command, `demo`, in an empty directory, run as the real binary: it
//! writes the dev material and the database, prints a `curl` line and a console link, and
//! serves; the README's first journey works against it, with a token from the README's
//! `token` command; two partners witness it as "Two witnesses against the demo" says, and the
//! checkpoint then carries both cosignatures; stopped with SIGTERM, it exits cleanly, and a
//! second `demo` reuses what the first wrote and serves the same data. Then the README's
//! rollback: `demo/data/` put back from a copy after the witnesses saw a larger tree, and both
//! witnesses report the conflict.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{client_trusting, repo_root};

const BIN: &str = env!("CARGO_BIN_EXE_coresponse-gateway");

/// A running `demo`, its output collected as it comes.
struct Demo {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    fn start(dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .envs(env.iter().copied())
            .arg("demo")
            .arg("--dir")
            .arg(dir)
            .arg("--policies")
            .arg(repo_root().join("policies"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |mut from: Box<dyn std::io::Read + Send>| {
            let into = Arc::new(Mutex::new(String::new()));
            let sink = into.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            into
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> (String, String) {
        (
            self.stdout.lock().unwrap().clone(),
            self.stderr.lock().unwrap().clone(),
        )
    }

    /// Waits (bounded) until `/healthz` answers 200 to the compliance partner's certificate.
    async fn wait_ready(&mut self, dir: &Path, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut client = None;
        loop {
            // The certificates are complete once `demo` says it wrote (or found) them.
            if client.is_none() && self.output().1.contains(" dev material in ") {
                client = Some(partner_client(dir, "oversight"));
            }
            if let Some(c) = &client
                && let Ok(r) = c
                    .get(format!("https://localhost:{port}/healthz"))
                    .send()
                    .await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("demo exited with {status}: {:?}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "demo not ready: {:?}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// SIGTERM, then waits (bounded) for the exit status. The gateway lets open connections
    /// finish for up to 30 s; this test's clients are dropped by then, so it stops at once.
    async fn stop(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "demo did not stop on SIGTERM: {:?}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client with `partner`'s demo certificate, trusting the demo CA.
fn partner_client(dir: &Path, partner: &str) -> reqwest::Client {
    let read = |name: String| std::fs::read_to_string(dir.join(name)).unwrap();
    let identity = (
        read(format!("{partner}.pem")),
        read(format!("{partner}-key.pem")),
    );
    client_trusting(&dir.join("ca.pem"), Some(&identity))
}

/// The README's `token` command.
fn token(dir: &Path, partner: &str, user: &str, role: &str) -> String {
    let out = Command::new(BIN)
        .arg("token")
        .arg("--config")
        .arg(dir.join("gateway.toml"))
        .args(["--partner", partner, "--user", user, "--role", role])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The README's `w PARTNER`: one run of a partner's witness (its cron job) against the demo,
/// with the files `init` wrote. Returns the exit status and the output.
fn witness(dir: &Path, port: u16, partner: &str) -> (i32, String) {
    let file = |name: String| dir.join(name);
    let out = Command::new(BIN)
        .args([
            "audit",
            "witness",
            "--url",
            &format!("https://localhost:{port}"),
        ])
        .arg("--log-key")
        .arg(file("audit-log.vkey".into()))
        .arg("--witness-key")
        .arg(file(format!("{partner}-witness.key")))
        .arg("--state")
        .arg(file(format!("{partner}-witness.state")))
        .arg("--cert")
        .arg(file(format!("{partner}.pem")))
        .arg("--key")
        .arg(file(format!("{partner}-key.pem")))
        .arg("--ca")
        .arg(file("ca.pem".into()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The README's first journey: a clinician reads the incident behind the demo referral.
async fn clinician_reads_the_incident(dir: &Path, port: u16) -> serde_json::Value {
    let r = partner_client(dir, "county-mh")
        .get(format!(
            "https://localhost:{port}/v1/records/crisis-incident/INC-2026-0042"
        ))
        .bearer_auth(token(dir, "county-mh", "clin-7", "clinician"))
        .header("Purpose-Of-Use", "treatment")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let disclosure = r.headers().get("Disclosure-Id").cloned();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(disclosure.is_some(), "every disclosure names its log entry");
    body
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn demo_from_nothing_serves_the_journey_is_witnessed_and_a_rollback_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("demo");
    let port = free_port();

    let started = Instant::now();
    // Checkpoints only every 1,000 entries (the seed makes several): one timed checkpoint
    // between the two witness runs would have them cosign different tree heads.
    let mut first = Demo::start(
        &dir,
        port,
        &[("GATEWAY__AUDIT__CHECKPOINT_EVERY_SECS", "3600")],
    );
    first.wait_ready(&dir, port).await;
    eprintln!("first demo ready after {:?}", started.elapsed());
    let body = clinician_reads_the_incident(&dir, port).await;
    assert_eq!(body["id"], "INC-2026-0042", "{body}");
    let (stdout, stderr) = first.output();
    assert!(stderr.contains("generated dev material in"), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "The gateway is starting on https://localhost:{port} with demo data"
        )) && stdout.contains("https://localhost:")
            && stdout.contains("/v1/records/crisis-incident/INC-2026-0042")
            && stdout.contains(&format!("https://localhost:{port}/console/#token=")),
        "the curl line and the console link: {stdout}"
    );
    for file in ["ca.pem", "gateway.toml", "county-mh.pem", "oversight.p12"] {
        assert!(dir.join(file).exists(), "{file} written");
    }
    // Two witnesses, as the README runs them; the checkpoint then carries both cosignatures,
    // and the offline verification requires them.
    for partner in ["metro-pd", "county-mh"] {
        let (code, out) = witness(&dir, port, partner);
        assert_eq!(code, 0, "{partner}'s witness: {out}");
        assert!(dir.join(format!("{partner}-witness.state")).exists());
    }
    let r = partner_client(&dir, "oversight")
        .get(format!("https://localhost:{port}/v1/audit/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let note = r.text().await.unwrap();
    for partner in ["metro-pd", "county-mh"] {
        assert!(
            note.lines()
                .any(|l| l.starts_with(&format!("\u{2014} {partner} "))),
            "{partner}'s cosignature on the checkpoint: {note}"
        );
    }
    let out = Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(dir.join("gateway.toml"))
        .args(["--require-witnesses", "metro-pd,county-mh"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let status = first.stop().await;
    assert!(status.success(), "SIGTERM ends the demo cleanly: {status}");

    // The README's rollback, "as a restored backup would": a copy of `demo/data/` taken now.
    let data = dir.join("data");
    let copy = dir.join("data.copy");
    copy_dir(&data, &copy);

    // A second run reuses the material and the database: same certificates, same data. A few
    // requests, a checkpoint past them, and both witnesses cosign the larger tree.
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let started = Instant::now();
    let every_second = [("GATEWAY__AUDIT__CHECKPOINT_EVERY_SECS", "1")];
    let mut second = Demo::start(&dir, port, &every_second);
    second.wait_ready(&dir, port).await;
    eprintln!("second demo ready after {:?}", started.elapsed());
    let again = clinician_reads_the_incident(&dir, port).await;
    assert_eq!(again["fields"], body["fields"], "the same record");
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    let (_, stderr) = second.output();
    assert!(stderr.contains("reusing dev material in"), "{stderr}");
    for _ in 0..2 {
        clinician_reads_the_incident(&dir, port).await;
    }
    let seen = state_size(&dir, "metro-pd");
    wait_for_checkpoint_past(&dir, port, seen).await;
    for partner in ["metro-pd", "county-mh"] {
        let (code, out) = witness(&dir, port, partner);
        assert_eq!(code, 0, "{partner}'s witness: {out}");
        assert!(
            state_size(&dir, partner) > seen,
            "{partner} cosigned the larger tree"
        );
    }
    assert!(second.stop().await.success());

    // The copy put back: the log is consistent in itself but not the one the partners saw.
    // After more requests than before and a checkpoint past what they saw, both witnesses
    // report the conflict and keep both checkpoints as evidence.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&copy, &data).unwrap();
    let witnessed = state_size(&dir, "metro-pd");
    let mut third = Demo::start(&dir, port, &every_second);
    third.wait_ready(&dir, port).await;
    for _ in 0..8 {
        clinician_reads_the_incident(&dir, port).await;
    }
    wait_for_checkpoint_past(&dir, port, witnessed).await;
    for partner in ["metro-pd", "county-mh"] {
        let (code, out) = witness(&dir, port, partner);
        assert_eq!(
            code, 2,
            "{partner}'s witness must report the rollback: {out}"
        );
        assert!(out.contains("does not extend the tree of"), "{out}");
        assert!(dir.join(format!("{partner}-witness.conflict")).exists());
        assert_eq!(
            state_size(&dir, partner),
            witnessed,
            "the state keeps what it saw"
        );
    }
    assert!(third.stop().await.success());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The tree size of the checkpoint a partner's witness last accepted (its state file, a C2SP
/// checkpoint: the size is the second line).
fn state_size(dir: &Path, partner: &str) -> u64 {
    let text = std::fs::read_to_string(dir.join(format!("{partner}-witness.state"))).unwrap();
    text.lines().nth(1).unwrap().parse().unwrap()
}

/// Waits (bounded) until the served checkpoint's tree is larger than `size`.
async fn wait_for_checkpoint_past(dir: &Path, port: u16, size: u64) {
    let client = partner_client(dir, "oversight");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let note = client
            .get(format!("https://localhost:{port}/v1/audit/checkpoint"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let served: u64 = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if served > size {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint past {size}: {note}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! `deployhook demo`: a self-contained run of the real daemon. It makes a scratch git
//! repository and a Capistrano-style site in a temp dir, starts a receiver on
//! 127.0.0.1, runs `daemon::run` on it, performs a deploy with Capistrano's own file
//! operations, and prints the payloads the receiver got. No network, no config.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::listen::{self, Received};
use crate::config::{Config, DaemonConfig, HookConfig, Secret, SignatureKind, SiteConfig};
use crate::daemon::{self, Control};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create the scratch directory {}", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`git {args}` failed (is git installed?): {detail}")]
    Git { args: String, detail: String },
    #[error("cannot {op} {}", path.display())]
    File {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the receiver")]
    Receiver(#[source] std::io::Error),
    #[error(transparent)]
    Daemon(#[from] daemon::Fatal),
    #[error("the daemon stopped before it was ready")]
    NotReady,
    #[error("no PostDeployment arrived within {0:?}")]
    Timeout(Duration),
}

fn git(dir: &Path, args: &[&str]) -> Result<String, DemoError> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Jane Doe")
        .env("GIT_AUTHOR_EMAIL", "jane@example.com")
        .env("GIT_COMMITTER_NAME", "Jane Doe")
        .env("GIT_COMMITTER_EMAIL", "jane@example.com")
        .output()
        .map_err(|e| DemoError::Git {
            args: args.join(" "),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(DemoError::Git {
            args: args.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(|source| DemoError::File {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn release_name(t: std::time::SystemTime) -> String {
    // YYYYMMDDHHMMSS, as Capistrano names its releases.
    crate::model::Timestamp::from_system(t)
        .rfc3339()
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect()
}

/// Capistrano's deploy of `branch` from the mirror `repo/` into a new release, step by
/// step as `cap deploy` does it; `pause` is called between steps.
async fn capistrano_deploy(
    site: &Path,
    release: &str,
    step: impl Fn(&str),
    pause: Duration,
) -> Result<String, DemoError> {
    let repo = site.join("repo");
    step("git:update       git remote update --prune (in repo/)");
    git(&repo, &["remote", "update", "--prune"])?;
    tokio::time::sleep(pause).await;
    let dir = site.join("releases").join(release);
    step(&format!(
        "git:create_release  mkdir releases/{release}; git archive main | tar -x"
    ));
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::File {
        op: "create",
        path: dir.clone(),
        source,
    })?;
    let archive = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive main | tar -x -f - -C '{}'",
            repo.display(),
            dir.display()
        ))
        .status()
        .map_err(|e| DemoError::Git {
            args: "archive".into(),
            detail: e.to_string(),
        })?;
    if !archive.success() {
        return Err(DemoError::Git {
            args: "archive".into(),
            detail: format!("exit status {archive}"),
        });
    }
    let sha = git(&repo, &["rev-parse", "main"])?;
    tokio::time::sleep(pause).await;
    step("deploy:set_current_revision  echo SHA > REVISION");
    write(&dir.join("REVISION"), &format!("{sha}\n"))?;
    tokio::time::sleep(pause).await;
    step(&format!(
        "deploy:symlink:release  ln -s releases/{release} releases/current; mv releases/current ."
    ));
    let tmp = site.join("releases").join("current");
    std::os::unix::fs::symlink(&dir, &tmp).map_err(|source| DemoError::File {
        op: "symlink",
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, site.join("current")).map_err(|source| DemoError::File {
        op: "rename",
        path: tmp.clone(),
        source,
    })?;
    tokio::time::sleep(pause).await;
    step("deploy:log_revision  append to revisions.log");
    let log = site.join("revisions.log");
    let line = format!("Branch main (at {sha}) deployed as release {release} by demo\n");
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|source| DemoError::File {
            op: "append to",
            path: log.clone(),
            source,
        })?;
    Ok(sha)
}

/// Runs the demo; prints to stdout.
pub async fn run() -> Result<(), DemoError> {
    let root = std::env::temp_dir().join(format!(
        "deployhook-demo-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = run_in(&root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run_in(root: &Path) -> Result<(), DemoError> {
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| DemoError::Scratch {
            path: p.to_path_buf(),
            source,
        })
    };
    let src = root.join("src");
    let site = root.join("site");
    mkdir(&src)?;
    mkdir(&site.join("releases"))?;
    println!(
        "deployhook demo: a scratch Capistrano site in {}",
        site.display()
    );

    git(&src, &["init", "-q", "-b", "main"])?;
    write(&src.join("index.html"), "<h1>Shop</h1>\n")?;
    git(&src, &["add", "."])?;
    git(&src, &["commit", "-q", "-m", "Initial shop"])?;
    git(root, &["clone", "-q", "--mirror", "src", "site/repo"])?;

    // The release that is live before the daemon starts: the baseline, not reported.
    let now = std::time::SystemTime::now();
    let first = release_name(now - Duration::from_secs(3600));
    capistrano_deploy(&site, &first, |_| {}, Duration::ZERO).await?;

    let (rx_tx, mut rx) = mpsc::unbounded_channel::<Received>();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Receiver)?;
    let addr = listener.local_addr().map_err(DemoError::Receiver)?;
    let (stop_rx_tx, stop_rx_rx) = oneshot::channel::<()>();
    let receiver = tokio::spawn(listen::serve(listener, 200, rx_tx, async move {
        let _ = stop_rx_rx.await;
    }));
    println!("receiver listening on http://{addr}/hooks");

    let secret = Secret::new(format!(
        "whsec_{}",
        base64_of(
            &std::iter::repeat_with(|| fastrand::u8(..))
                .take(24)
                .collect::<Vec<_>>()
        )
    ));
    let config = Config {
        file: PathBuf::from("(demo)"),
        daemon: DaemonConfig {
            state_dir: root.join("state"),
            host_name: crate::config::machine_host_name(),
            resync: Duration::from_secs(60),
            history_max_age: Duration::from_secs(86400),
            shutdown_timeout: Duration::from_secs(5),
        },
        sites: vec![SiteConfig::new("shop", &site)],
        chains: Vec::new(),
        sources: Vec::new(),
        hooks: vec![HookConfig {
            events: vec!["StatusChanged".into(), "PostDeployment".into()],
            secret: Some(secret.clone()),
            signature: SignatureKind::Standard,
            timeout: Duration::from_secs(5),
            retry: vec![Duration::from_millis(200), Duration::from_secs(1)],
            ..HookConfig::new(
                "demo-receiver",
                url::Url::parse(&format!("http://{addr}/hooks"))
                    .map_err(|e| DemoError::Receiver(std::io::Error::other(e.to_string())))?,
            )
        }],
        api: None,
        warnings: Vec::new(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = oneshot::channel();
    let daemon = tokio::spawn(daemon::run(
        config,
        Control {
            shutdown: stop_rx,
            reload: None,
            ready: Some(ready_tx),
            config_path: None,
            look_again: None,
        },
    ));
    if ready_rx.await.is_err() {
        return match daemon.await {
            Ok(Err(e)) => Err(e.into()),
            _ => Err(DemoError::NotReady),
        };
    }
    println!("daemon ready: release {first} is live (the baseline, not reported)\n");

    write(&src.join("checkout.html"), "<h1>Checkout</h1>\n")?;
    git(&src, &["add", "."])?;
    git(&src, &["commit", "-q", "-m", "Add checkout page"])?;
    let release = release_name(now);
    println!("cap production deploy  (release {release})");
    capistrano_deploy(
        &site,
        &release,
        |s| println!("  {s}"),
        Duration::from_millis(300),
    )
    .await?;
    println!();

    let deadline = Duration::from_secs(15);
    let mut got = Vec::new();
    let waited = tokio::time::timeout(deadline, async {
        while let Some(r) = rx.recv().await {
            let done = r.header("x-deployhook-event") == Some("PostDeployment");
            got.push(r);
            if done {
                break;
            }
        }
    })
    .await;
    for r in &got {
        if r.header("x-deployhook-event") == Some("PostDeployment") {
            println!("\nreceived {}\n", r.describe(Some(&secret)));
        } else {
            println!("received {}", r.summary(Some(&secret)));
        }
    }
    let _ = stop_tx.send(true);
    let _ = daemon.await;
    let _ = stop_rx_tx.send(());
    let _ = receiver.await;
    if waited.is_err() {
        return Err(DemoError::Timeout(deadline));
    }
    println!(
        "{} payloads received; the PostDeployment above is what a hook gets when a deploy finishes.",
        got.len()
    );
    Ok(())
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

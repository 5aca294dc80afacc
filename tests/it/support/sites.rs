//! Sites for hostile-input tests: several sites in one config, FIFOs, atomic writes,
//! Kudu deployments written as Kudu writes them, and the daemon's resident memory.

use std::path::{Path, PathBuf};

use super::env::TestEnv;
use super::receiver::Receiver;

/// A config with several sites (name, path, extra keys) and one hook for every event.
pub fn sites_config(env: &TestEnv, sites: &[(&str, &Path, &str)], hook: &str) -> String {
    let mut s = format!(
        "[daemon]\nstate_dir = \"{}\"\nhost_name = \"test-host\"\n",
        env.join("state").display()
    );
    for (name, path, extra) in sites {
        s.push_str(&format!(
            "\n[[site]]\nname = \"{name}\"\npath = \"{}\"\nsettle = \"300ms\"\n{extra}\n",
            path.display()
        ));
    }
    s.push_str(&format!(
        "\n[[hook]]\nname = \"all\"\nevents = [\"StatusChanged\", \"PostDeployment\"]\nretry = [\"100ms\"]\n{hook}\n"
    ));
    s
}

pub fn hook_url(rx: &Receiver) -> String {
    format!("url = \"{}\"", rx.url)
}

pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// Writes `content` to `path` atomically (temp file, rename), as deploy tools do.
pub fn write_atomic(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, content).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{e}"));
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn kudu_xml(id: &str, status: &str, complete: bool, received: &str, extra: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<deployment>\n  <id>{id}</id>\n  \
         <author>Sam Roe</author>\n  <authorEmail>sam@example.com</authorEmail>\n  \
         <message>Add checkout page</message>\n  <status>{status}</status>\n  \
         <receivedTime>{received}</receivedTime>\n  {extra}\n  \
         <complete>{}</complete>\n</deployment>\n",
        if complete { "True" } else { "False" }
    )
}

pub fn kudu_deploy(root: &Path, id: &str, received: &str, extra: &str) {
    let dir = root.join("deployments").join(id);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    write_atomic(
        &dir.join("status.xml"),
        kudu_xml(id, "Success", true, received, extra).as_bytes(),
    );
    write_atomic(&root.join("deployments/active"), id.as_bytes());
}

pub fn kudu_site(env: &TestEnv, name: &str) -> PathBuf {
    let root = env.join(name);
    std::fs::create_dir_all(root.join("deployments")).unwrap_or_else(|e| panic!("{e}"));
    root
}

/// A config with one site at `path` (with `extra` keys) and a hook for every event.
pub fn app_config(env: &TestEnv, path: &Path, extra: &str, hook_url: &str) -> String {
    format!(
        r#"[daemon]
state_dir = "{}"
host_name = "test-host"

[[site]]
name = "app"
path = "{}"
settle = "300ms"
{extra}

[[hook]]
name = "all"
url = "{hook_url}"
events = ["StatusChanged", "PostDeployment"]
retry = ["100ms"]
"#,
        env.join("state").display(),
        path.display()
    )
}

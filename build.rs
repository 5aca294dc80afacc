//! Which of the programs some integration tests drive are here, as `tool_*` cfgs, so that
//! a test whose program is missing is reported by the test harness as *ignored*, with the
//! reason (`#[cfg_attr(not(tool_nats), ignore = "…")]`), and counted in its summary line;
//! nothing of the daemon depends on them. Under `CI` every cfg is set: the test runs, and
//! fails loudly when its program is missing (`tests/it/support/tools.rs`).
//!
//! The script runs again when `PATH` or `CI` changes, or when a directory on `PATH` or
//! Python's package directories change (a program or a package installed or removed).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// (cfg, program, arguments): the cfg is set when the command runs and succeeds.
const PROBES: &[(&str, &str, &[&str])] = &[
    ("tool_nats", "nats-server", &["--version"]),
    ("tool_cap", "cap", &["--version"]),
    ("tool_ansible", "ansible-playbook", &["--version"]),
    ("tool_curl", "curl", &["--version"]),
    (
        "tool_netns",
        "unshare",
        &["-rn", "ip", "link", "set", "lo", "up"],
    ),
    ("tool_schemathesis", "schemathesis", &["--version"]),
    ("tool_python3", "python3", &["--version"]),
    ("tool_node", "node", &["--version"]),
    ("tool_go", "go", &["version"]),
    ("tool_root", "sh", &["-c", "test \"$(id -u)\" = 0"]),
    (
        "tool_browser",
        "sh",
        &[
            "-c",
            "command -v chromium && NODE_PATH=$(npm root -g) node -e 'require(\"playwright-core\")'",
        ],
    ),
    (
        "tool_py_standardwebhooks",
        "python3",
        &["-c", "import standardwebhooks"],
    ),
    (
        "tool_py_cloudevents",
        "python3",
        &["-c", "import cloudevents.core.bindings.http"],
    ),
    (
        "tool_py_jsonschema",
        "python3",
        &["-c", "import jsonschema"],
    ),
    (
        "tool_py_prometheus",
        "python3",
        &["-c", "import prometheus_client"],
    ),
    (
        "tool_py_otlp",
        "python3",
        &[
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ],
    ),
];

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let python_dirs = Command::new("python3")
        .args([
            "-c",
            "import site, sysconfig; print(sysconfig.get_paths()['purelib']); print(site.getusersitepackages())",
        ])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for dir in python_dirs
        .lines()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
    {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let ci = std::env::var_os("CI").is_some();
    for (cfg, program, args) in PROBES {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if ci || runs(program, args) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

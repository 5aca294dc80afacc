//! The README's HTTP API examples, run as printed (`curl` against a real daemon on
//! 127.0.0.1:8791), in a network namespace of their own (`unshare -rn`) so that port is
//! free and the example's public hook URL reaches nothing. Only the token file's path
//! is put in place of `/etc/deployhook/api.token`.

use crate::support::env::TestEnv;
use crate::support::netns;

/// The shell block that follows the README's "run as printed" marker.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/api.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let marker = "<!-- The block below is run as printed by tests/it/api_readme.rs. -->";
    let after = readme
        .split_once(marker)
        .unwrap_or_else(|| panic!("docs/src/api.md lost its marker"))
        .1;
    let body = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .unwrap_or_else(|| panic!("no ```sh block after the marker"))
        .0;
    body.to_string()
}

#[test]
#[cfg_attr(
    not(all(tool_curl, tool_netns)),
    ignore = "curl and network namespaces are needed: apt-get install curl iproute2, with user namespaces allowed"
)]
fn the_readme_curl_examples_work_as_printed() {
    if !netns::have("curl", &["--version"], "apt-get install curl") || !netns::available() {
        return;
    }
    let env = TestEnv::new();
    std::fs::create_dir_all(env.join("site/releases")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(env.join("api.token"), "readme-token\n").unwrap_or_else(|e| panic!("{e}"));
    // hooks.example.com resolves to a public address (debug builds read this file).
    std::fs::write(env.join("hosts"), "93.184.216.34 hooks.example.com\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "[daemon]\nstate_dir = \"{state}\"\nhost_name = \"test-host\"\nshutdown_timeout = \"1s\"\n\n\
         [[site]]\nname = \"shop\"\npath = \"{site}\"\n\n\
         [[hook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/hook\"\n\n\
         [api]\nlisten = \"127.0.0.1:8791\"\ntoken_file = \"{token}\"\n",
        state = env.join("state").display(),
        site = env.join("site").display(),
        token = env.join("api.token").display(),
    );
    let cfg = env.join("deployhook.toml");
    std::fs::write(&cfg, config).unwrap_or_else(|e| panic!("{e}"));
    let block = readme_block();
    let printed = "TOKEN=$(cat /etc/deployhook/api.token)";
    assert!(block.contains(printed), "{block}");
    let examples = block.replace(
        printed,
        &format!("TOKEN=$(cat '{}')", env.join("api.token").display()),
    );
    let hosts = format!(
        "DEPLOYHOOK_DEBUG_HOSTS_FILE='{}'",
        env.join("hosts").display()
    );
    let (out, log) =
        netns::run_with_daemon(&env, &cfg, 8791, &hosts, &format!("set -e\n{examples}\n"));
    let report = netns::report(&out, &log);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    for expected in [
        r#""id":"1","url":"https://hooks.example.com/deployed","event":"PostDeployment""#,
        r#""source":"config""#,
        r#""last_status":"#,
        r#""deliveries":["msg_"#,
        r#"{"delivery":"msg_"#,
        r#""cancelled":"#,
        r#"{"status":"ok"}"#,
        "# TYPE deployhook_deliveries counter",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} not in the output\n{report}"
        );
    }
}

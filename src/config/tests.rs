//! Tests of config validation: every error at once, with file, line and key.

use super::*;
use std::path::Path;
use std::time::Duration;

fn env() -> Env<'static> {
    Env {
        host_name: "test-host".into(),
        state_directory: None,
        credentials_directory: None,
        credentials_unchecked: false,
        read_file: &|p| {
            if p == Path::new("/etc/dh/secret") {
                Ok("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n".into())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        },
        read_env: &|_| None,
        mode_of: &|_| Some(0o644),
    }
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, Path::new("/etc/dh.toml"), &env()) {
        Ok(_) => vec![],
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn full_example_parses() {
    let c = parse(
        r#"
[daemon]
state_dir = "/var/lib/deployhook"
resync = "30s"

[[site]]
name = "shop"
path = "/var/www/shop"
layout = "releases"
settle = "1s"

[[hook]]
name = "ops"
url = "https://user:pw@hooks.example.com/x"
events = ["PostDeployment", "StatusChanged"]
statuses = ["success", "failed"]
secret_file = "/etc/dh/secret"
timeout = "3s"
retry = ["1s", "2s"]
headers = { "X-Env" = "prod" }
"#,
        Path::new("/etc/dh.toml"),
        &env(),
    )
    .map_err(|e| format!("{e:?}"));
    let c = match c {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.daemon.host_name, "test-host");
    assert_eq!(c.daemon.resync, Duration::from_secs(30));
    assert_eq!(c.sites[0].settle, Duration::from_secs(1));
    assert_eq!(c.hooks[0].signature, SignatureKind::Standard);
    assert_eq!(c.hooks[0].retry.len(), 2);
    assert_eq!(c.hooks[0].display_url(), "https://hooks.example.com/x");
    assert_eq!(format!("{:?}", c.hooks[0].secret), "Some(***)");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("readable by every user"))
    );
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = errors("[[site]]\nname = \"a\"\npath = \"/x\"\ncolour = \"red\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("/etc/dh.toml:4:1: site[0].colour: unknown field `colour`"),
        "{e:?}"
    );
    let e = errors(
        "[daemon]\nresync = \"1s\"\n[[site]]\nname = \"a\"\npath = \"/x\"\n\
         [[site]]\nname = \"b\"\npath = \"/y\"\nsetle = \"1s\"\n",
    );
    assert!(e[0].contains(":9:1: site[1].setle: unknown field"), "{e:?}");
    let e = errors("[daemon]\nresinc = \"1s\"\n");
    assert!(
        e.iter()
            .any(|e| e.contains(":2:1: daemon.resinc: unknown field")),
        "{e:?}"
    );
}

#[test]
fn validation_errors_are_collected_with_lines() {
    let e = errors(
        "[[site]]\nname = \"a b\"\npath = \"relative\"\nidle_timeout = \"soon\"\n\
         [[site]]\nname = \"c\"\npath = \"/c\"\n[[site]]\nname = \"c\"\npath = \"/d\"\n\
         [[hook]]\nname = \"h!\"\nurl = \"ftp://x\"\nsites = [\"nope\"]\n",
    );
    let joined = e.join("\n");
    for want in [
        ":2:8: site[0].name: \"a b\" is not a valid name",
        ":3:8: site[0].path: \"relative\" must be an absolute path",
        ":4:16: site[0].idle_timeout: \"soon\" is not a duration",
        ":9:8: site[2].name: duplicate site name \"c\"",
        ":12:8: hook[0].name: \"h!\" is not a valid name",
        ":13:7: hook[0].url: must be an absolute http:// or https:// URL",
        ":14:9: hook[0].sites: no [[site]] is named \"nope\"",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
}

#[test]
fn signature_without_secret_is_an_error() {
    let e = errors(
        "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"http://x/\"\nsignature = \"github\"\n",
    );
    assert!(
        e[0].contains("hook[0].signature: signature \"github\" needs secret_file"),
        "{e:?}"
    );
}

#[test]
fn every_error_of_a_file_in_one_run() {
    let e = errors(
        "[daemon]\nresinc = \"1s\"\n[[site]]\nname = \"a\"\npath = \"/a\"\nsetle = \"1s\"\n\
         settle = 5\n[[hook]]\nname = \"h\"\nurl = \"http://x/\"\nevnts = [\"PostDeployment\"]\n",
    );
    let joined = e.join("\n");
    for want in [
        ":2:1: daemon.resinc: unknown field",
        ":6:1: site[0].setle: unknown field",
        ":7:10: site[0].settle: invalid type",
        ":11:1: hook[0].evnts: unknown field",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
    assert_eq!(e.len(), 4, "{joined}");
    // A near miss says which key was meant.
    let e = errors("[[site]]\nname = \"a\"\npth = \"/a\"\n");
    assert!(
        e.join("\n")
            .contains("site[0].pth: unknown field `pth`: did you mean `path`?"),
        "{e:?}"
    );
    assert_eq!(e.len(), 1, "not also reported missing: {e:?}");
    let e = errors("[[site]]\nname = \"a\"\npath = \"/a\"\n[api]\nallow_private_target = true\n");
    assert!(
        e[0].contains("did you mean `allow_private_targets`?"),
        "{e:?}"
    );
    let e = errors("[[site]]\nname = \"a\"\npath = \"/a\"\nzzzzzz = 1\n");
    assert!(!e[0].contains("did you mean"), "{e:?}");
    // A wrong type on a required key is one error, not two.
    let e = errors("[[site]]\nname = 5\npath = \"/a\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains(":2:8: site[0].name: invalid type"), "{e:?}");
    // An unknown table is one error.
    let e = errors("[[site]]\nname = \"a\"\npath = \"/a\"\n[sitez]\nx = 1\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("sitez"), "{e:?}");
}

#[test]
fn misspelled_events_are_errors_custom_ones_are_not() {
    let cfg = |events: &str| {
        errors(&format!(
            "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"http://x/\"\nevents = {events}\n"
        ))
    };
    for bad in [
        "PostDeployments",
        "postdeploy",
        "StatusChange",
        "Post-Deployment",
    ] {
        let e = cfg(&format!("[\"{bad}\"]"));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(e[0].contains("did you mean"), "{bad}: {e:?}");
    }
    assert!(cfg("[\"postdeployment\", \"STATUSCHANGED\"]").is_empty());
    assert!(cfg("[\"BuildStarted\", \"release-notes\"]").is_empty());
}

#[test]
fn authorization_header_with_url_credentials_is_an_error() {
    let e = errors(
        "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"https://u:p@x/\"\nheaders = { Authorization = \"Bearer t\" }\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("keep one"), "{e:?}");
    let e = errors(
        "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"https://x/\"\nheaders = { \"X-Key\" = \"se\\ncret\" }\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(!e[0].contains("se"), "the value is not quoted: {e:?}");
}

#[test]
fn shown_urls_hide_credentials_and_query_values() {
    let u = url::Url::parse("https://user:p%2Bss@hooks.example.com/x?token=abc&env=prod")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        redact_url(&u),
        "https://hooks.example.com/x?token=***&env=***"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// Any text, and any valid file with a piece replaced, is a config or errors that
    /// name a line of the file: never a panic.
    #[test]
    fn any_text_is_a_config_or_errors_with_lines(
        junk in "[\\[\\]a-z_=\" .0-9\n{}é\u{1b}]{0,200}",
        cut in 0usize..400,
    ) {
        let valid = "[daemon]\nresync = \"1s\"\n[[site]]\nname = \"a\"\npath = \"/a\"\n\
                     [[hook]]\nname = \"h\"\nurl = \"http://x/\"\nevents = [\"StatusChanged\"]\n";
        let at = valid.char_indices().map(|(i, _)| i).nth(cut % valid.chars().count()).unwrap_or(0);
        for text in [junk.clone(), format!("{}{junk}{}", &valid[..at], &valid[at..])] {
            if let Err(errors) = parse(&text, Path::new("/f.toml"), &env()) {
                proptest::prop_assert!(!errors.is_empty());
                for e in errors {
                    proptest::prop_assert!(e.line >= 1 && e.line <= text.lines().count() + 1, "{}", e);
                }
            }
        }
    }
}

#[test]
fn a_relative_secret_file_is_a_systemd_credential() {
    let text = "[[site]]\nname = \"a\"\npath = \"/a\"\n[[hook]]\nname = \"h\"\nurl = \"http://x/\"\nsecret_file = \"hook-secret\"\n";
    let creds = Env {
        credentials_directory: Some("/run/credentials/deployhook.service".into()),
        read_file: &|p| {
            if p == Path::new("/run/credentials/deployhook.service/hook-secret") {
                Ok("from-a-credential\n".into())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        },
        mode_of: &|_| Some(0o400),
        ..env()
    };
    let c = parse(text, Path::new("/etc/dh.toml"), &creds).map_err(|e| format!("{e:?}"));
    let secret = c.as_ref().ok().and_then(|c| c.hooks[0].secret.clone());
    assert_eq!(
        secret.as_ref().map(Secret::expose),
        Some("from-a-credential"),
        "{c:?}"
    );
    // Without $CREDENTIALS_DIRECTORY a relative path is an error that says what to do.
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("LoadCredential="), "{e:?}");
    // `check` by hand: a warning, and the rest is checked.
    let by_hand = Env {
        credentials_unchecked: true,
        ..env()
    };
    let c = parse(text, Path::new("/etc/dh.toml"), &by_hand).map_err(|e| format!("{e:?}"));
    let warnings = c.as_ref().map(|c| c.warnings.clone()).unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("only the service can read")),
        "{c:?}"
    );
}

#[test]
fn github_deployments_needs_a_repository_and_a_token_and_signs_nothing() {
    let site = "[[site]]\nname = \"shop\"\npath = \"/var/www/shop\"\n\n";
    let ok = format!(
        "{site}[[hook]]\nname = \"gh\"\nurl = \"https://api.github.com\"\n\
         format = \"github-deployments\"\nrepository = \"acme/shop\"\n\
         secret_file = \"/etc/dh/secret\"\nlog_url = \"https://ci.example.com/{{site}}/{{id}}\"\n"
    );
    let c = parse(&ok, Path::new("/etc/dh.toml"), &env()).map_err(|e| format!("{e:?}"));
    let hook = c
        .map(|c| c.hooks[0].clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hook.format, Format::GithubDeployments);
    assert_eq!(
        hook.signature,
        SignatureKind::None,
        "the token signs nothing"
    );
    assert_eq!(
        hook.github.map(|g| g.repository),
        Some("acme/shop".to_string())
    );

    let errs = errors(&format!(
        "{site}[[hook]]\nname = \"gh\"\nurl = \"https://api.github.com\"\n\
         format = \"github-deployments\"\nrepository = \"acme\"\nsignature = \"github\"\n\
         environment_url = \"not a url\"\n\n\
         [[hook]]\nname = \"plain\"\nurl = \"https://hooks.example.com\"\nrepository = \"a/b\"\n"
    ));
    let all = errs.join("\n");
    for needle in [
        "hook[0].repository: \"acme\" is not owner/name",
        "hook[0].secret_file: format = \"github-deployments\" needs the API token",
        "hook[0].signature: a github-deployments hook's secret is its API token",
        "hook[0].environment_url: must be an absolute http:// or https:// URL",
        "hook[1].repository: only for format = \"github-deployments\"",
    ] {
        assert!(all.contains(needle), "{needle} in:\n{all}");
    }
}

#[test]
fn chains_name_real_kudu_hooks_once_and_need_a_public_url() {
    let base = "[[site]]\nname = \"shop\"\npath = \"/var/www/shop\"\n\n\
                [[hook]]\nname = \"a\"\nurl = \"https://a.example.com\"\n\n\
                [[hook]]\nname = \"b\"\nurl = \"https://b.example.com\"\nformat = \"slack\"\n\n";
    let ok = format!(
        "{base}[api]\npublic_url = \"https://build-01.example.com:8791\"\n\n\
         [[chain]]\nname = \"promote\"\nhooks = [\"a\"]\ncallback_timeout = \"10m\"\n"
    );
    let c = parse(&ok, Path::new("/etc/dh.toml"), &env()).map_err(|e| format!("{e:?}"));
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.chains[0].callback_timeout, Duration::from_secs(600));
    assert_eq!(c.hooks[0].chain.as_deref(), Some("promote"));
    assert_eq!(c.hooks[1].chain, None);

    let all = errors(&format!(
        "{base}[[chain]]\nname = \"one\"\nhooks = [\"a\", \"b\", \"nope\"]\non = \"building\"\n\n\
         [[chain]]\nname = \"two\"\nhooks = [\"a\"]\nsites = [\"blog\"]\n"
    ))
    .join("\n");
    for needle in [
        "chain[0].name: a chain needs [api] with public_url",
        "chain[0].hooks: hook \"b\" has format \"slack\"",
        "chain[0].hooks: no [[hook]] is named \"nope\"",
        "chain[0].on: \"building\": a chain starts on success or failed",
        "chain[1].hooks: hook \"a\" is already in chain \"one\"",
        "chain[1].sites: no [[site]] is named \"blog\"",
    ] {
        assert!(all.contains(needle), "{needle} in:\n{all}");
    }
}

#[test]
fn nats_hooks_take_a_subject_template_and_sign_nothing() {
    let site = "[[site]]\nname = \"shop\"\npath = \"/var/www/shop\"\n\n";
    let ok = format!(
        "{site}[[hook]]\nname = \"bus\"\nurl = \"nats://127.0.0.1:4222\"\nsecret_file = \"/etc/dh/secret\"\n"
    );
    let c = parse(&ok, Path::new("/etc/dh.toml"), &env()).map_err(|e| format!("{e:?}"));
    let hook = c
        .map(|c| c.hooks[0].clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hook.signature, SignatureKind::None);
    assert_eq!(
        hook.nats.map(|n| n.subject),
        Some(nats::DEFAULT_SUBJECT.to_string())
    );
    let all = errors(&format!(
        "{site}[[hook]]\nname = \"bus\"\nurl = \"tls://nats.example.com\"\nsubject = \"deploys.>\"\nsignature = \"standard\"\n\n\
         [[hook]]\nname = \"web\"\nurl = \"https://a.example.com\"\nsubject = \"x\"\n"
    ))
    .join("\n");
    for needle in [
        "hook[0].subject: \"deploys.>\" is not a NATS subject",
        "hook[0].signature: a NATS hook's secret is its connection credential",
        "hook[1].subject: only for a nats:// or tls:// url",
    ] {
        assert!(all.contains(needle), "{needle} in:\n{all}");
    }
}

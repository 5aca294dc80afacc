//! `deployhook man`: the manual. deployhook(1) and one page per command
//! (deployhook-run(1), deployhook-deliveries-list(1), …) from the clap definition, each
//! with the sections an operator looks for (ENVIRONMENT, FILES, EXIT STATUS, SIGNALS where
//! they apply, SEE ALSO); and deployhook.toml(5), the config file's reference.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::Cli;

/// deployhook.toml(5), written by hand beside `config/raw.rs` (a test checks that every
/// key of the file is in it).
pub const CONFIG_PAGE: &str = include_str!("deployhook.toml.5");

/// Writes every page into `dir`, or deployhook(1) to `out`.
pub fn run(dir: Option<&Path>, out: &mut dyn Write) -> std::io::Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = dir else {
        return render(&cmd, out);
    };
    std::fs::create_dir_all(dir)?;
    write_all(&cmd, dir)?;
    std::fs::write(dir.join("deployhook.toml.5"), CONFIG_PAGE)
}

fn write_all(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_all(sub, dir)?;
    }
    let mut file = std::fs::File::create(dir.join(format!("{}.1", page_name(cmd))))?;
    render(cmd, &mut file)?;
    file.flush()
}

/// `deployhook-deliveries-list`, as clap names a built subcommand.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

fn render(cmd: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let man = Man::new(cmd.clone())
        .manual("deployhook manual")
        .source(format!("deployhook {}", env!("CARGO_PKG_VERSION")));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
        man.render_extra_section(w)?;
    }
    let name = page_name(cmd);
    let reads_config = cmd.get_arguments().any(|a| a.get_id() == "config");
    w.write_all(environment(&name, reads_config).as_bytes())?;
    w.write_all(files(&name, reads_config).as_bytes())?;
    w.write_all(exit_status(&name).as_bytes())?;
    if let Some(signals) = signals(&name) {
        w.write_all(signals.as_bytes())?;
    }
    w.write_all(see_also(cmd).as_bytes())?;
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

fn entry(term: &str, text: &str) -> String {
    format!(".TP\n{term}\n{text}\n")
}

fn environment(name: &str, reads_config: bool) -> String {
    let mut s = ".SH ENVIRONMENT\n".to_string();
    if reads_config {
        s += &entry(
            "\\fBDEPLOYHOOK_CONFIG\\fR",
            "The config file, when \\fB\\-\\-config\\fR is not given.",
        );
    }
    s += &entry(
        "\\fBRUST_LOG\\fR",
        "A log filter (\\fIinfo\\fR, \\fIdeployhook=debug\\fR); it wins over \\fB\\-\\-log\\-level\\fR.",
    );
    s += &entry(
        "\\fBDEPLOYHOOK_LOG_OUTPUT\\fR",
        "\\fIstderr\\fR or \\fIstdout\\fR, when \\fB\\-\\-log\\-output\\fR is not given.",
    );
    if name == "deployhook" || name == "deployhook-run" {
        s += &entry(
            "\\fBNOTIFY_SOCKET\\fR, \\fBWATCHDOG_USEC\\fR",
            "Set by systemd for \\fIType=notify\\-reload\\fR: READY, RELOADING, STOPPING, STATUS and watchdog pings go there.",
        );
        s += &entry(
            "\\fBSTATE_DIRECTORY\\fR",
            "Set by systemd's \\fIStateDirectory=\\fR: the default of \\fBdaemon.state_dir\\fR.",
        );
        s += &entry(
            "\\fBCREDENTIALS_DIRECTORY\\fR",
            "Set by systemd's \\fILoadCredential=\\fR: a relative \\fBsecret_file\\fR or \\fBtoken_file\\fR is read from there.",
        );
    }
    if name == "deployhook-reload" {
        s += &entry(
            "\\fBMAINPID\\fR",
            "The daemon's pid, as systemd passes it to \\fIExecReload=\\fR.",
        );
    }
    s
}

fn files(name: &str, reads_config: bool) -> String {
    if !reads_config && name != "deployhook" {
        return String::new();
    }
    let mut s = ".SH FILES\n".to_string();
    s += &entry(
        "\\fI/etc/deployhook/deployhook.toml\\fR",
        "The config file (see \\fBdeployhook.toml\\fR(5)).",
    );
    s += &entry(
        "\\fI/var/lib/deployhook/deployhook.sqlite\\fR",
        "The outbox: deployments, deliveries and attempts (in \\fBdaemon.state_dir\\fR, mode 0600).",
    );
    s += &entry(
        "\\fI/var/lib/deployhook/deployhook.lock\\fR",
        "Held by the running daemon; it holds its pid.",
    );
    s += &entry(
        "\\fI/var/lib/deployhook/api.address\\fR",
        "The address the API bound (with \\fBlisten\\fR port 0, the one picked).",
    );
    s += &entry(
        "\\fI/var/lib/deployhook/reload.status\\fR",
        "The daemon's answer to the last reload, for \\fBdeployhook reload\\fR.",
    );
    s
}

fn exit_status(name: &str) -> String {
    let mut s = ".SH EXIT STATUS\n".to_string();
    match name {
        "deployhook-wrap" => {
            s += &entry(
                "\\fIN\\fR",
                "The command's exit status; 128+N when a signal N killed it.",
            );
            s += &entry(
                "1",
                "The site is not a marker site, or the command cannot start.",
            );
        }
        _ => {
            s += &entry("0", "Success.");
            let failure = match name {
                "deployhook-check" => "The config is invalid, or a site cannot be read.",
                "deployhook-hooks-test" => "The hook did not answer 2xx, or cannot be found.",
                "deployhook-reload" => {
                    "The config is invalid (the daemon is not signalled), the daemon rejected it, or no daemon runs."
                }
                "deployhook-run" => {
                    "The config is invalid at start, or a fatal error (the store, the watcher, the API's address)."
                }
                _ => "Failure: an invalid config, an unreadable outbox, an error from the daemon.",
            };
            s += &entry("1", failure);
            s += &entry("2", "A usage error (bad arguments).");
            if name == "deployhook-status" || name == "deployhook" {
                s += &entry("3", "\\fBstatus\\fR: the daemon is not running.");
            }
        }
    }
    s
}

fn signals(name: &str) -> Option<String> {
    match name {
        "deployhook" | "deployhook-run" => Some(format!(
            ".SH SIGNALS\n{}{}{}",
            entry(
                "\\fBSIGHUP\\fR",
                "Reload the config; a config that fails validation is rejected and the running one stays."
            ),
            entry(
                "\\fBSIGUSR1\\fR",
                "Look at every hook's queue now: another process wrote the outbox (\\fBdeliveries retry\\fR, \\fBredeliver\\fR and \\fBhooks enable\\fR send it)."
            ),
            entry(
                "\\fBSIGTERM\\fR, \\fBSIGINT\\fR",
                "Stop: attempts in flight may finish (\\fBdaemon.shutdown_timeout\\fR), then exit 0."
            )
        )),
        "deployhook-wrap" => Some(format!(
            ".SH SIGNALS\n{}",
            entry(
                "\\fBSIGINT\\fR, \\fBSIGTERM\\fR, \\fBSIGHUP\\fR, \\fBSIGQUIT\\fR, \\fBSIGUSR1\\fR, \\fBSIGUSR2\\fR",
                "Passed to the command."
            )
        )),
        _ => None,
    }
}

fn see_also(cmd: &clap::Command) -> String {
    let name = page_name(cmd);
    let mut pages: Vec<String> = vec!["deployhook(1)".into(), "deployhook.toml(5)".into()];
    pages.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("{}(1)", page_name(s))),
    );
    pages.retain(|p| *p != format!("{name}(1)"));
    let refs: Vec<String> = pages
        .iter()
        .filter_map(|p| p.split_once('('))
        .map(|(n, sec)| format!("\\fB{}\\fR({sec}", n.replace('-', "\\-")))
        .collect();
    format!(".SH SEE ALSO\n{}\n", refs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and argument of every command, with its command's name.
    fn every_arg(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for a in cmd.get_arguments() {
            out.push((path.to_string(), a.clone()));
        }
        for sub in cmd.get_subcommands() {
            every_arg(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_and_argument_is_described() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut args = Vec::new();
        every_arg(&cmd, "deployhook", &mut args);
        let undescribed: Vec<String> = args
            .iter()
            .filter(|(_, a)| !matches!(a.get_id().as_str(), "help" | "version"))
            .filter(|(_, a)| a.get_help().is_none() && a.get_long_help().is_none())
            .map(|(path, a)| format!("{path}: {}", a.get_id()))
            .collect();
        assert!(undescribed.is_empty(), "no help text: {undescribed:?}");
    }

    #[test]
    fn config_is_an_option_only_of_commands_that_read_it() {
        let mut cmd = Cli::command();
        cmd.build();
        for name in ["man", "completions", "demo", "listen"] {
            let sub = cmd
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no {name}"));
            assert!(
                sub.get_arguments().all(|a| a.get_id() != "config"),
                "{name} offers --config"
            );
        }
        for name in [
            "run",
            "check",
            "status",
            "reload",
            "deliveries",
            "hooks",
            "mark",
        ] {
            let sub = cmd
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no {name}"));
            assert!(
                sub.get_arguments().any(|a| a.get_id() == "config"),
                "{name} lacks --config"
            );
        }
        let shells: Vec<String> = cmd
            .find_subcommand("completions")
            .and_then(|c| c.get_arguments().find(|a| a.get_id() == "shell"))
            .map(|a| {
                a.get_possible_values()
                    .iter()
                    .map(|v| v.get_name().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(shells, ["bash", "zsh", "fish"]);
    }

    /// The keys serde knows for a table, from its own "expected one of" message.
    fn keys_of<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let e = toml::from_str::<T>("__not_a_key = 1").map(|_| ()).err();
        let message = e.map(|e| e.message().to_string()).unwrap_or_default();
        let list = message
            .split_once("expected one of ")
            .map(|(_, l)| l.to_string())
            .unwrap_or_else(|| panic!("no key list in {message:?}"));
        list.split(", ")
            .map(|k| k.trim().trim_matches('`').to_string())
            .collect()
    }

    #[test]
    fn the_config_page_has_every_key_of_the_file() {
        use crate::config::raw::{RawApi, RawDaemon, RawHook, RawSite};
        let mut keys = Vec::new();
        keys.extend(keys_of::<RawDaemon>());
        keys.extend(keys_of::<RawSite>());
        keys.extend(keys_of::<RawHook>());
        keys.extend(keys_of::<RawApi>());
        keys.extend(keys_of::<crate::config::sources::RawSource>());
        keys.extend(keys_of::<crate::config::chains::RawChain>());
        assert!(keys.len() > 40, "{keys:?}");
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| !CONFIG_PAGE.contains(&format!("\\fB{k}\\fR")))
            .collect();
        assert!(missing.is_empty(), "deployhook.toml(5) lacks {missing:?}");
    }

    #[test]
    fn every_page_is_written_with_its_sections() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        run(Some(dir.path()), &mut std::io::sink()).unwrap_or_else(|e| panic!("{e}"));
        let read = |name: &str| {
            std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        for page in [
            "deployhook.1",
            "deployhook-run.1",
            "deployhook-deliveries-list.1",
        ] {
            let text = read(page);
            for section in [
                ".SH ENVIRONMENT",
                ".SH FILES",
                ".SH EXIT STATUS",
                ".SH SEE ALSO",
            ] {
                assert!(text.contains(section), "{page} lacks {section}");
            }
        }
        assert!(read("deployhook-run.1").contains(".SH SIGNALS"));
        assert!(read("deployhook-status.1").contains("is not running"));
        assert!(read("deployhook.toml.5").starts_with(".TH DEPLOYHOOK.TOML 5"));
    }
}

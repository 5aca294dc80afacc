//! SIGHUP: a config that fails validation is rejected (with file, line and key) and the
//! running one stays; a valid one is applied.

use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, config};
use crate::support::env::TestEnv;
use crate::support::receiver::Receiver;

#[test]
fn a_broken_reload_keeps_the_old_config_and_a_good_one_applies() {
    let env = TestEnv::new();
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let old = Receiver::start();
    let new = Receiver::start();
    let d = Daemon::start(&env, &config(&env, &site, &old.url, ""));

    let good = config(&env, &site, &old.url, "");
    std::fs::write(
        &d.config,
        good.replace("[[hook]]", "colour = \"red\"\n\n[[hook]]"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    d.signal(1);
    d.wait_log("reload rejected");
    let line = good
        .lines()
        .position(|l| l == "[[hook]]")
        .map_or(0, |i| i + 1);
    assert!(
        d.has_log(&format!(
            "{}:{line}:1: site[0].colour: unknown field",
            d.config.display()
        )),
        "the error names the file, line and key: {:?}",
        d.logs()
    );
    site.commit("a.html", "After a broken reload");
    site.cap_deploy("20261120100000", "bob");
    eventually!(
        old.payloads("PostDeployment").len() == 1,
        "the old config still delivers"
    );

    std::fs::write(&d.config, config(&env, &site, &new.url, "")).unwrap_or_else(|e| panic!("{e}"));
    d.signal(1);
    d.wait_log("config reloaded");
    site.commit("b.html", "After a good reload");
    site.cap_deploy("20261120110000", "bob");
    eventually!(
        new.payloads("PostDeployment").len() == 1,
        "the new hook gets it"
    );
    assert_eq!(
        old.payloads("PostDeployment").len(),
        1,
        "the old hook no longer does"
    );
    assert_eq!(d.stop(), Some(0));
}

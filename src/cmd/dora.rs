//! `deployhook dora`: the five DORA keys of each site over a window, from the outbox
//! (`store::dora`), as a table or as the API's JSON.

use std::io::Write;

use super::admin::{Failed, load, say};
use crate::model::Timestamp;
use crate::store::Store;
use crate::store::dora::{Figures, Report, Window, rate, report, spread};
use crate::telemetry::escape;

/// Prints the report of `site` (or of every site) over the window.
pub fn run(
    path: &std::path::Path,
    site: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failed> {
    let config = load(path)?;
    let window = Window::parse(since, until, Timestamp::now()).map_err(Failed)?;
    if let Some(s) = site
        && !config.sites.iter().any(|c| c.name == s)
    {
        let names: Vec<&str> = config.sites.iter().map(|c| c.name.as_str()).collect();
        return Err(Failed(format!(
            "no site named {} (sites: {})",
            escape(s),
            names.join(", ")
        )));
    }
    let store = Store::open_shared(&config.daemon.state_dir)?;
    let r = report(&store.dora_history(site)?, window);
    if json {
        // JSON escapes every control character itself.
        let text = serde_json::to_string_pretty(&r).unwrap_or_default();
        let _ = writeln!(out, "{text}");
        return Ok(());
    }
    table(&r, site.is_none(), out)
}

fn table(r: &Report, with_all: bool, out: &mut impl Write) -> Result<(), Failed> {
    say!(
        out,
        "DORA, deployments that ended {} → {} ({:.0} days)",
        &r.since[..16.min(r.since.len())].replace('T', " "),
        &r.until[..16.min(r.until.len())].replace('T', " "),
        r.days
    );
    let mut rows = vec![[
        "site".to_string(),
        "deploys".into(),
        "per day".into(),
        "lead time (median / p90)".into(),
        "change failure rate".into(),
        "recovery (median)".into(),
        "rework rate".into(),
    ]];
    let mut add = |name: &str, f: &Figures| {
        rows.push([
            escape(name).to_string(),
            f.deployments.to_string(),
            format!("{:.2}", f.per_day),
            spread(&f.lead_time, true),
            rate(
                f.change_failure_rate,
                f.failed + f.rolled_back,
                f.deployments,
            ),
            spread(&f.recovery, false),
            rate(f.rework_rate, f.rework, f.deployments),
        ]);
    };
    for s in &r.sites {
        add(&s.site, &s.figures);
    }
    if with_all && r.sites.len() > 1 {
        add("all", &r.all);
    }
    if r.sites.is_empty() {
        say!(out, "no deployment ended in this window");
        return Ok(());
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        say!(out, "{}", line.join("  ").trim_end());
    }
    Ok(())
}

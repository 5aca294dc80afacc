//! The table the bench prints and `target/bench/results.json`.

use std::path::Path;

// ---- results ------------------------------------------------------------------------------

#[derive(serde::Serialize)]
pub struct Row {
    scenario: String,
    metric: String,
    deployhook: Option<f64>,
    baseline: Option<f64>,
    baseline_name: String,
    unit: String,
    target: String,
}

#[derive(Default)]
pub struct Results(pub Vec<Row>);

impl Results {
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        scenario: &str,
        metric: &str,
        value: Option<f64>,
        baseline: Option<f64>,
        baseline_name: &str,
        unit: &str,
        target: &str,
    ) {
        self.0.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            deployhook: value,
            baseline,
            baseline_name: baseline_name.into(),
            unit: unit.into(),
            target: target.into(),
        });
    }

    pub fn print(&self) {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "\n| scenario | metric | deployhook | baseline | unit | target |\n|---|---|---|---|---|---|"
        );
        for r in &self.0 {
            let base = if r.baseline_name.is_empty() {
                "".to_string()
            } else {
                format!("{} ({})", f(r.baseline), r.baseline_name)
            };
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.metric,
                f(r.deployhook),
                base,
                r.unit,
                r.target
            );
        }
    }

    pub fn write(&self) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        let _ = std::fs::create_dir_all(&dir);
        let json = serde_json::to_vec_pretty(&self.0).unwrap_or_default();
        let _ = std::fs::write(dir.join("results.json"), json);
        println!("\nwritten to {}", dir.join("results.json").display());
    }
}

pub fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

//! Reports: `summary.json`, Markdown tables laid out like the paper's Tables 3 and 5, and an SVG
//! chart of the per-category metrics.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// The paper's four metrics, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Instances measured.
    pub instances: usize,
    /// Round-1 responses without code.
    pub communication_rate: f64,
    /// Instances whose questions were judged good (3).
    pub good_question_rate: f64,
    /// Instances whose every test case passed after the clarification round.
    pub pass_at_1: f64,
    /// Mean fraction of test cases passed.
    pub test_pass_rate: f64,
}

/// A benchmark run's results.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What was evaluated.
    pub model: String,
    /// Per category code, in the paper's order; `original` is the unmodified prompts.
    pub categories: Vec<(String, Metrics)>,
    /// Over every modified (unclear) instance.
    pub overall: Metrics,
    /// How often the model asks when nothing is unclear (communication rate on the originals).
    pub false_alarm_rate: Option<f64>,
    /// Wall time of this run.
    pub seconds: f64,
    /// Throughput.
    pub instances_per_minute: f64,
    /// Whether generated code ran without network.
    pub network: String,
}

/// The Markdown report.
pub fn markdown(s: &Summary) -> String {
    let mut out = format!("# HumanEvalComm: {}\n\n", s.model);
    out.push_str("| Category | Instances | Communication Rate | Good Question Rate | Pass@1 | Test Pass Rate |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    let row = |name: &str, m: &Metrics| {
        format!(
            "| {name} | {} | {:.2}% | {:.2}% | {:.2}% | {:.2}% |\n",
            m.instances, m.communication_rate, m.good_question_rate, m.pass_at_1, m.test_pass_rate
        )
    };
    for (c, m) in &s.categories {
        let label = if c == "original" {
            "original (no change)".to_string()
        } else {
            c.clone()
        };
        out.push_str(&row(&label, m));
    }
    out.push_str(&row("**all modified**", &s.overall));
    if let Some(f) = s.false_alarm_rate {
        out.push_str(&format!(
            "\nFalse-alarm rate (asks although nothing is unclear): {f:.2}%\n"
        ));
    }
    out.push_str(&format!(
        "\n{:.0} s, {:.1} instances/min. {}\n",
        s.seconds, s.instances_per_minute, s.network
    ));
    out
}

/// A grouped bar chart: per category, the four metrics.
pub fn svg(s: &Summary) -> String {
    let colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];
    let names = [
        "Communication Rate",
        "Good Question Rate",
        "Pass@1",
        "Test Pass Rate",
    ];
    let (left, top, height, group_w, bar_w) = (50.0, 40.0, 200.0, 90.0, 18.0);
    let width = left + group_w * s.categories.len().max(1) as f64 + 20.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n",
        top + height + 70.0
    );
    out.push_str(&format!(
        "<text x=\"{left}\" y=\"20\" font-size=\"14\">HumanEvalComm: {}</text>\n",
        escape(&s.model)
    ));
    for pct in [0, 25, 50, 75, 100] {
        let y = top + height * (1.0 - pct as f64 / 100.0);
        out.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{pct}%</text>\n",
            width - 10.0,
            left - 5.0,
            y + 4.0
        ));
    }
    for (g, (c, m)) in s.categories.iter().enumerate() {
        let x0 = left + g as f64 * group_w + 8.0;
        for (k, v) in [
            m.communication_rate,
            m.good_question_rate,
            m.pass_at_1,
            m.test_pass_rate,
        ]
        .iter()
        .enumerate()
        {
            let h = height * v.clamp(0.0, 100.0) / 100.0;
            out.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar_w}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}: {v:.1}%</title></rect>\n",
                x0 + k as f64 * bar_w,
                top + height - h,
                colors[k],
                escape(c),
                names[k]
            ));
        }
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            x0 + 2.0 * bar_w,
            top + height + 15.0,
            escape(c)
        ));
    }
    for (k, name) in names.iter().enumerate() {
        let x = left + k as f64 * 140.0;
        let y = top + height + 40.0;
        out.push_str(&format!(
            "<rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{name}</text>\n",
            colors[k],
            x + 14.0,
            y + 9.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes `summary.json`, `summary.md` and `chart.svg`.
pub fn write(dir: &Path, s: &Summary) -> anyhow::Result<()> {
    let w = |name: &str, text: String| {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("cannot write '{}'", dir.join(name).display()))
    };
    w("summary.json", serde_json::to_string_pretty(s)?)?;
    w("summary.md", markdown(s))?;
    w("chart.svg", svg(s))?;
    Ok(())
}

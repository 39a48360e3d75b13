//! Prometheus counters (`<ns>_<name>_<unit>_total`), no ids in labels.
//! One process-wide registry, rendered in the text exposition format.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Mutex, OnceLock},
};

#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), u64>>,
}

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// Adds `n` to the counter `name` with the label set `labels`
    /// (already rendered, e.g. `service="routing",verb="put-queue"`).
    pub fn add(&self, name: &str, labels: &str, n: u64) {
        let labels =
            if labels.contains('=') { labels.to_owned() } else { format!("service=\"{labels}\"") };
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters.entry((name.to_owned(), labels)).or_default() += n;
    }

    pub fn get(&self, name: &str, labels: &str) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters.get(&(name.to_owned(), labels.to_owned())).copied().unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), value) in counters.iter() {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_text_format() {
        let m = Metrics::default();
        m.add("sb_commands_total", "service=\"routing\",outcome=\"ok\"", 2);
        m.add("sb_commands_total", "service=\"routing\",outcome=\"ok\"", 1);
        m.add("sb_events_published_total", "routing", 5);
        let text = m.render();
        assert!(text.contains("# TYPE sb_commands_total counter\nsb_commands_total{service=\"routing\",outcome=\"ok\"} 3\n"), "{text}");
        assert!(text.contains("sb_events_published_total{service=\"routing\"} 5"), "{text}");
    }
}

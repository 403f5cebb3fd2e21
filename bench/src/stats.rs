//! Latency samples and what the report shows of them.

use std::time::Duration;

/// Latencies of one measured operation.
#[derive(Debug, Default)]
pub struct Samples {
    latencies: Vec<Duration>,
    elapsed: Duration,
    count: Option<usize>,
}

impl Samples {
    /// Samples taken over `elapsed` wall time.
    pub fn new(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        Self {
            latencies,
            elapsed,
            count: None,
        }
    }

    /// A throughput without latencies: `count` operations over `elapsed`.
    pub fn throughput(count: usize, elapsed: Duration) -> Self {
        Self {
            latencies: Vec::new(),
            elapsed,
            count: Some(count),
        }
    }

    /// Operations per second over the wall time.
    pub fn rate(&self) -> f64 {
        self.count() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency at quantile `q` (0..=1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)].as_secs_f64() * 1000.0
    }

    /// How many operations were measured.
    pub fn count(&self) -> usize {
        self.count.unwrap_or(self.latencies.len())
    }
}

/// Print the report table.
pub fn table(title: &str, rows: &[(&str, &Samples)]) {
    println!("\n{title}");
    println!(
        "{:<48} {:>8} {:>12} {:>10} {:>10}",
        "operation", "count", "ops/s", "p50 ms", "p99 ms"
    );
    for (name, s) in rows {
        let ms = |q: f64| {
            let v = s.quantile_ms(q);
            if v.is_nan() {
                "-".to_string()
            } else {
                format!("{v:.3}")
            }
        };
        println!(
            "{:<48} {:>8} {:>12.0} {:>10} {:>10}",
            name,
            s.count(),
            s.rate(),
            ms(0.5),
            ms(0.99)
        );
    }
}

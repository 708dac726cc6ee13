//! A live progress line for people watching a run, and an SVG latency chart
//! for the report.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Counters the scenario threads bump as they go.
#[derive(Debug)]
pub struct Progress {
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages acknowledged (SENDACK).
    pub acked: AtomicU64,
    /// Distinct messages delivered.
    pub delivered: AtomicU64,
    /// Send-to-SENDACK latencies since the last line (ns).
    recent: Mutex<Histogram<u64>>,
    done: AtomicBool,
}

impl Progress {
    /// Fresh counters.
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            recent: Mutex::new(
                Histogram::new_with_bounds(1_000, 600_000_000_000, 2).expect("valid bounds"),
            ),
            done: AtomicBool::new(false),
        })
    }

    /// One acknowledged message and its send-to-SENDACK latency.
    pub fn acked(&self, latency_ns: u64) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut h) = self.recent.lock() {
            h.saturating_record(latency_ns);
        }
    }

    /// Prints one line per `every` to stderr until [`Progress::finish`]:
    /// totals, the acknowledged rate and ack p50/p99 over the last interval.
    pub fn print_every(self: &Arc<Self>, every: Duration) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut last_acked = 0;
            let mut last_at = start;
            while !me.done.load(Ordering::Relaxed) {
                std::thread::park_timeout(every);
                if me.done.load(Ordering::Relaxed) {
                    break;
                }
                let acked = me.acked.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = (acked - last_acked) as f64 / now.duration_since(last_at).as_secs_f64();
                let (p50, p99) = match me.recent.lock() {
                    Ok(mut h) => {
                        let q = (ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)));
                        h.reset();
                        q
                    }
                    Err(_) => (0.0, 0.0),
                };
                eprintln!(
                    "[{:>5.1} s] sent {} acked {} delivered {}  {:.0} acked/s  ack p50 {:.2} ms p99 {:.2} ms",
                    start.elapsed().as_secs_f64(),
                    me.sent.load(Ordering::Relaxed),
                    acked,
                    me.delivered.load(Ordering::Relaxed),
                    rate,
                    p50,
                    p99
                );
                (last_acked, last_at) = (acked, now);
            }
        })
    }

    /// Stops the printer.
    pub fn finish(&self, printer: std::thread::JoinHandle<()>) {
        self.done.store(true, Ordering::Relaxed);
        printer.thread().unpark();
        let _ = printer.join();
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// An SVG chart of latency by percentile, one line per series, in the
/// style of HdrHistogram plots: the x axis spreads the tail (50%, 90%,
/// 99%, 99.9%, 99.99% equally spaced), the y axis is milliseconds.
pub fn latency_chart_svg(title: &str, series: &[(&str, &Histogram<u64>)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 70.0;
    const BOTTOM: f64 = 50.0;
    const TOP: f64 = 40.0;
    const RIGHT: f64 = 20.0;
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    // x = log10(1 / (1 - q)): 0 at 0%, 1 at 90%, 2 at 99%, ... 4 at 99.99%.
    const X_MAX: f64 = 4.0;
    let quantiles: Vec<f64> = (0..=200)
        .map(|i| 1.0 - 10f64.powf(-X_MAX * f64::from(i) / 200.0))
        .collect();
    let y_max = series
        .iter()
        .map(|(_, h)| ms(h.value_at_quantile(0.9999)))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let px = |x: f64| LEFT + x / X_MAX * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y_max * (H - BOTTOM - TOP);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>
"#,
        W / 2.0,
        escape(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%"].iter().enumerate() {
        let x = px(i as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            py(0.0),
            py(y_max),
            H - BOTTOM + 18.0
        );
    }
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let y = py(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency (ms)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0,
        H / 2.0,
        H / 2.0
    );
    for (i, (name, h)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = quantiles
            .iter()
            .map(|&q| {
                let x = (1.0 / (1.0 - q).max(1e-9)).log10().min(X_MAX);
                format!("{:.1},{:.1}", px(x), py(ms(h.value_at_quantile(q))))
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
            points.join(" "),
            LEFT + 10.0,
            TOP + 16.0 * (i as f64 + 1.0),
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_one_line_per_series_ending_at_the_tail() {
        let mut fast = Histogram::<u64>::new_with_bounds(1_000, 600_000_000_000, 3).unwrap();
        let mut slow = fast.clone();
        for i in 1..=10_000u64 {
            fast.record(i * 1_000).unwrap();
            slow.record(i * 10_000).unwrap();
        }
        let svg = latency_chart_svg("a <test>", &[("fast", &fast), ("slow", &slow)]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;test&gt;"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // The slow series' last point is at the top of the chart (its
        // 99.99% sets the y range), the fast one's well below.
        let last_y = |name: &str| -> f64 {
            let line = svg
                .lines()
                .find(|l| l.contains(&format!(">{name}<")))
                .unwrap();
            let points = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let last = points.split(' ').next_back().unwrap();
            last.split(',').nth(1).unwrap().parse().unwrap()
        };
        assert!(last_y("slow") < last_y("fast"), "smaller y is higher up");
    }

    #[test]
    fn progress_counts_and_stops() {
        let p = Progress::new();
        let printer = p.print_every(Duration::from_secs(3600));
        p.sent.fetch_add(2, Ordering::Relaxed);
        p.acked(1_000_000);
        assert_eq!(p.acked.load(Ordering::Relaxed), 1);
        p.finish(printer); // returns at once: the printer is woken
    }
}

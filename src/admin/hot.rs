//! The metrics that every request updates, counted per thread: requests, verdicts, the gate's
//! and the upstream's durations.
//!
//! Through the `metrics` facade a counter increment is an atomic read-modify-write and a
//! histogram sample is several (the exporter's lock-free bucket, an epoch guard) plus a clock
//! read, and the sample is folded into its buckets later by the upkeep thread. On x86 each
//! atomic read-modify-write costs ~5 ns, and a request made ~200 of them (docs/benchmarks.md,
//! "Atomic operations per request"). Here each thread has its own cells, written only by that
//! thread with a plain load and store, and `/metrics` adds up the cells of every thread.
//! A scrape may miss the samples being written at that instant; no sample is ever lost.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The upper bounds of the histograms' buckets, in nanoseconds (50 µs to 60 s, as the
/// exporter's histograms): gate overhead sits in the microseconds, upstream time in seconds.
const BOUNDS_NS: [u64; 19] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// Cells of one histogram: one per bucket, one for samples above the last bound, the sum.
const HISTOGRAM_CELLS: usize = BOUNDS_NS.len() + 2;

/// The histograms kept here.
#[derive(Clone, Copy, Debug)]
pub enum Hist {
    /// Time from the request head to the forwarding decision (identify + policy + counters).
    Gate = 0,
    /// Time from sending upstream to the upstream's response head.
    Upstream = 1,
}

const HISTOGRAMS: [(&str, &str); 2] = [
    (
        "portcullis_gate_duration_seconds",
        "Time from the request head to the forwarding decision.",
    ),
    (
        "portcullis_upstream_duration_seconds",
        "Time from sending upstream to the upstream's response head.",
    ),
];

/// The gate's verdicts (`portcullis_verdicts_total`, label `verdict`).
#[derive(Clone, Copy, Debug)]
pub enum Verdict {
    Allow = 0,
    Reject = 1,
    Flag = 2,
    Tarpit = 3,
}

const VERDICTS: [&str; 4] = ["allow", "reject", "flag", "tarpit"];

/// Cell 0 counts requests, the next ones verdicts; then the histograms, one after the other.
const VERDICT_BASE: usize = 1;
const HISTOGRAM_BASE: usize = VERDICT_BASE + VERDICTS.len();
const CELLS: usize = HISTOGRAM_BASE + HISTOGRAMS.len() * HISTOGRAM_CELLS;

struct Cells([AtomicU64; CELLS]);

impl Cells {
    /// Only the owning thread calls this: a load and a store, no read-modify-write.
    fn add(&self, i: usize, n: u64) {
        let c = &self.0[i];
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// Every thread's cells, kept after the thread ends so that its counts stay in the totals.
static THREADS: Mutex<Vec<Arc<Cells>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<Cells> = {
        let cells = Arc::new(Cells(std::array::from_fn(|_| AtomicU64::new(0))));
        THREADS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cells.clone());
        cells
    };
}

/// Counts one request (`portcullis_requests_total`).
pub fn count_request() {
    // `try_with`: a thread being torn down counts nothing rather than panicking.
    let _ = LOCAL.try_with(|c| c.add(0, 1));
}

/// Counts one verdict of the gate.
pub fn count_verdict(v: Verdict) {
    let _ = LOCAL.try_with(|c| c.add(VERDICT_BASE + v as usize, 1));
}

/// Records one sample in a histogram.
pub fn record(h: Hist, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let bucket = BOUNDS_NS.partition_point(|&b| b < ns);
    let base = HISTOGRAM_BASE + h as usize * HISTOGRAM_CELLS;
    let _ = LOCAL.try_with(|c| {
        c.add(base + bucket, 1);
        c.add(base + HISTOGRAM_CELLS - 1, ns);
    });
}

/// The totals over every thread.
fn totals() -> [u64; CELLS] {
    let mut sum = [0u64; CELLS];
    for cells in THREADS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        for (s, c) in sum.iter_mut().zip(cells.0.iter()) {
            *s = s.wrapping_add(c.load(Relaxed));
        }
    }
    sum
}

/// Appends these metrics to `out` in Prometheus text format.
pub fn render(out: &mut String) {
    let t = totals();
    let _ = writeln!(
        out,
        "# HELP portcullis_requests_total Requests received.\n\
         # TYPE portcullis_requests_total counter\nportcullis_requests_total {}\n",
        t[0]
    );
    let _ = writeln!(
        out,
        "# HELP portcullis_verdicts_total Verdicts of the gate.\n\
         # TYPE portcullis_verdicts_total counter"
    );
    for (i, v) in VERDICTS.iter().enumerate() {
        let n = t[VERDICT_BASE + i];
        let _ = writeln!(out, "portcullis_verdicts_total{{verdict=\"{v}\"}} {n}");
    }
    out.push('\n');
    for (h, (name, help)) in HISTOGRAMS.iter().enumerate() {
        let base = HISTOGRAM_BASE + h * HISTOGRAM_CELLS;
        let cells = &t[base..base + HISTOGRAM_CELLS];
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (bound, n) in BOUNDS_NS.iter().zip(cells) {
            cumulative += n;
            let le = *bound as f64 / 1e9;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += cells[BOUNDS_NS.len()];
        let sum = cells[HISTOGRAM_CELLS - 1] as f64 / 1e9;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {sum}\n{name}_count {cumulative}\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one series in a rendering.
    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in {text}"))
    }

    #[test]
    fn every_threads_samples_are_in_the_totals() {
        let mut before = String::new();
        render(&mut before);
        let threads: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    count_verdict(Verdict::Tarpit);
                    for _ in 0..1000 {
                        count_request();
                        record(Hist::Gate, Duration::from_micros(70));
                    }
                    // One sample per thread above every bound, one on a bound.
                    record(Hist::Upstream, Duration::from_secs(61 + i));
                    record(Hist::Upstream, Duration::from_millis(1));
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let mut after = String::new();
        render(&mut after);
        let delta = |series: &str| value(&after, series) - value(&before, series);
        assert_eq!(delta("portcullis_requests_total"), 4000.0);
        assert_eq!(delta("portcullis_verdicts_total{verdict=\"tarpit\"}"), 4.0);
        let gate = "portcullis_gate_duration_seconds";
        assert_eq!(delta(&format!("{gate}_bucket{{le=\"0.00005\"}}")), 0.0);
        assert_eq!(delta(&format!("{gate}_bucket{{le=\"0.0001\"}}")), 4000.0);
        assert_eq!(delta(&format!("{gate}_count")), 4000.0);
        let sum = delta(&format!("{gate}_sum"));
        assert!((sum - 0.28).abs() < 1e-9, "{sum}");
        let up = "portcullis_upstream_duration_seconds";
        // 1 ms is in the bucket whose bound it equals; 61-64 s only in +Inf.
        assert_eq!(delta(&format!("{up}_bucket{{le=\"0.0005\"}}")), 0.0);
        assert_eq!(delta(&format!("{up}_bucket{{le=\"0.001\"}}")), 4.0);
        assert_eq!(delta(&format!("{up}_bucket{{le=\"60\"}}")), 4.0);
        assert_eq!(delta(&format!("{up}_bucket{{le=\"+Inf\"}}")), 8.0);
        assert_eq!(delta(&format!("{up}_count")), 8.0);
        assert!((delta(&format!("{up}_sum")) - 250.004).abs() < 1e-6);
    }
}

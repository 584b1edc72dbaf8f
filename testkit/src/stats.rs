//! Statistics of the benchmarks and tests: nearest-rank percentiles, medians, ratios, latency
//! summaries in milliseconds.

use std::time::Duration;

use serde::Serialize;

/// Summary of one series of timings.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// Milliseconds, rounded to microseconds (finer is noise here and bloats the JSON).
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Nearest-rank percentile of values in any order (`p` in 0..=1); NaN for none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_sorted(&sorted, p)
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` of the
/// samples at or below it (so p99 of 50 samples is the maximum).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Self {
        let mut v: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
        v.sort_by(f64::total_cmp);
        let mean = if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        Summary {
            n: v.len(),
            p50_ms: percentile_sorted(&v, 0.50),
            p99_ms: percentile_sorted(&v, 0.99),
            mean_ms: (mean * 1e3).round() / 1e3,
            min_ms: v.first().copied().unwrap_or(f64::NAN),
            max_ms: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The median (the mean of the two middle values for an even count; NaN for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Rounds to three decimals, for reports.
pub fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// `a / b`, rounded to 3 decimals.
pub fn ratio(a: f64, b: f64) -> f64 {
    ((a / b) * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile_sorted(&v, 0.5), 100.0);
        assert_eq!(percentile_sorted(&v, 0.99), 198.0);
        let small: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile_sorted(&small, 0.99), 50.0);
        assert_eq!(percentile_sorted(&[7.0], 0.5), 7.0);
        assert_eq!(percentile(&[3.0, 9.0, 1.0, 5.0], 0.5), 3.0);
        assert_eq!(percentile(&[3.0, 9.0, 1.0, 5.0], 0.9), 9.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn medians_and_rounding() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(round3(1.23456), 1.235);
        assert_eq!(ratio(3.0, 2.0), 1.5);
    }
}

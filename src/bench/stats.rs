//! Summary statistics of a latency sample, computed as numpy computes them (vLLM's report
//! uses numpy): population standard deviation, percentiles by linear interpolation.

/// Mean, median, standard deviation and chosen percentiles of one metric, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    /// `(p, value)` for each requested percentile, e.g. `(99.0, 123.4)`.
    pub percentiles: Vec<(f64, f64)>,
}

impl Summary {
    /// Summarises `seconds` (converted to milliseconds). An empty sample gives zeros, as
    /// vLLM reports a metric no successful request produced.
    pub fn of_seconds(seconds: &[f64], percentiles: &[f64]) -> Self {
        let mut ms: Vec<f64> = seconds.iter().map(|s| s * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        if ms.is_empty() {
            return Self {
                percentiles: percentiles.iter().map(|&p| (p, 0.0)).collect(),
                ..Self::default()
            };
        }
        let n = ms.len() as f64;
        let mean = ms.iter().sum::<f64>() / n;
        let var = ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean,
            median: percentile(&ms, 50.0),
            std: var.sqrt(),
            percentiles: percentiles
                .iter()
                .map(|&p| (p, percentile(&ms, p)))
                .collect(),
        }
    }

    /// The value at percentile `p`, if it was computed.
    pub fn at(&self, p: f64) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|(q, _)| (q - p).abs() < 1e-9)
            .map(|&(_, v)| v)
    }
}

/// numpy's default ("linear") percentile of a sorted, non-empty sample.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let last = sorted.len().saturating_sub(1);
    let rank = (p.clamp(0.0, 100.0) / 100.0) * last as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let (a, b) = (sorted[lo.min(last)], sorted[hi.min(last)]);
    a + (b - a) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
    }

    #[test]
    fn summary_is_in_milliseconds_with_population_std() {
        let s = Summary::of_seconds(&[0.001, 0.003], &[99.0]);
        assert!((s.mean - 2.0).abs() < 1e-9);
        assert!((s.median - 2.0).abs() < 1e-9);
        assert!((s.std - 1.0).abs() < 1e-9);
        assert!((s.at(99.0).unwrap_or_default() - 2.98).abs() < 1e-9);
        assert_eq!(Summary::of_seconds(&[], &[99.0]).at(99.0), Some(0.0));
    }
}

//! When each request is sent: all at once (`--request-rate inf`), or a Poisson process at the
//! given rate. As in vLLM, gaps are drawn from a gamma distribution whose shape is the
//! burstiness (1 = exponential gaps = Poisson arrivals; lower is burstier) and whose mean is
//! 1/rate, from a seeded generator so a run's schedule is reproducible.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

/// Request rate: requests per second, or unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestRate {
    Infinite,
    PerSecond(f64),
}

impl std::str::FromStr for RequestRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("inf") || s.eq_ignore_ascii_case("infinity") {
            return Ok(RequestRate::Infinite);
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_infinite() && r > 0.0 => Ok(RequestRate::Infinite),
            Ok(r) if r > 0.0 && r.is_finite() => Ok(RequestRate::PerSecond(r)),
            _ => Err(format!(
                "{s:?}: a positive number of requests per second, or inf"
            )),
        }
    }
}

impl std::fmt::Display for RequestRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestRate::Infinite => f.write_str("inf"),
            RequestRate::PerSecond(r) => write!(f, "{r}"),
        }
    }
}

/// Send times, in seconds from the start, of `n` requests.
pub fn send_times(
    n: usize,
    rate: RequestRate,
    burstiness: f64,
    seed: u64,
) -> Result<Vec<f64>, String> {
    let RequestRate::PerSecond(rate) = rate else {
        return Ok(vec![0.0; n]);
    };
    if !(burstiness > 0.0 && burstiness.is_finite()) {
        return Err(format!(
            "--burstiness {burstiness}: must be a positive number"
        ));
    }
    let gamma = Gamma::new(burstiness, 1.0 / (rate * burstiness))
        .map_err(|e| format!("request rate {rate}, burstiness {burstiness}: {e}"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = 0.0;
    Ok((0..n)
        .map(|_| {
            let at = t;
            t += gamma.sample(&mut rng);
            at
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("inf".parse::<RequestRate>(), Ok(RequestRate::Infinite));
        assert_eq!(
            "2.5".parse::<RequestRate>(),
            Ok(RequestRate::PerSecond(2.5))
        );
        assert!("0".parse::<RequestRate>().is_err());
        assert!("fast".parse::<RequestRate>().is_err());
    }

    #[test]
    fn poisson_gaps_average_one_over_the_rate() {
        let times = send_times(4000, RequestRate::PerSecond(10.0), 1.0, 0).unwrap_or_default();
        assert_eq!(times.len(), 4000);
        assert!(times.windows(2).all(|w| w[1] >= w[0]));
        let mean_gap = times[3999] / 3999.0;
        assert!((mean_gap - 0.1).abs() < 0.01, "mean gap {mean_gap}");
    }

    #[test]
    fn infinite_rate_sends_everything_at_once() {
        assert_eq!(
            send_times(3, RequestRate::Infinite, 1.0, 0),
            Ok(vec![0.0; 3])
        );
    }
}

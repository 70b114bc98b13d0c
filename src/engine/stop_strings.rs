//! Stop strings over streamed text: text is never released past a stop string, and a tail that
//! could still become one is held back until the next delta settles it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopScan {
    /// Text safe to release now (may be empty).
    Continue(String),
    /// A stop string matched: release `text` and finish; `matched` is the stop string.
    Stopped { text: String, matched: String },
}

#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    include_in_output: bool,
    held: String,
}

impl StopStrings {
    pub fn new(stops: Vec<String>, include_in_output: bool) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            include_in_output,
            held: String::new(),
        }
    }

    pub fn push(&mut self, delta: &str) -> StopScan {
        if self.stops.is_empty() {
            return StopScan::Continue(delta.to_owned());
        }
        self.held.push_str(delta);
        // Earliest match wins; among matches at the same place, the longest.
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by(|(a, s1), (b, s2)| a.cmp(b).then(s2.len().cmp(&s1.len())));
        if let Some((at, stop)) = found {
            let end = if self.include_in_output {
                at + stop.len()
            } else {
                at
            };
            let text = self.held[..end].to_owned();
            let matched = stop.clone();
            self.held.clear();
            return StopScan::Stopped { text, matched };
        }
        let keep = self.partial_suffix_len();
        let release = self.held.len() - keep;
        let text = self.held[..release].to_owned();
        self.held.drain(..release);
        StopScan::Continue(text)
    }

    /// Text produced before stop strings apply (`min_tokens` not reached yet): nothing stops,
    /// but a tail that could begin a stop string completed later is still held back, so a
    /// stop string straddling that point is found.
    pub fn push_unchecked(&mut self, delta: &str) -> String {
        if self.stops.is_empty() {
            return delta.to_owned();
        }
        self.held.push_str(delta);
        let release = self.held.len() - self.partial_suffix_len();
        self.held.drain(..release).collect()
    }

    /// Releases held text when generation ends for another reason.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of the held text that is a proper prefix of a stop string.
    fn partial_suffix_len(&self) -> usize {
        let held = &self.held;
        held.char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &held[i..];
                self.stops
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .map(|i| held.len() - i)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], include: bool, deltas: &[&str]) -> (String, Option<String>) {
        let mut s = StopStrings::new(stops.iter().map(|s| s.to_string()).collect(), include);
        let mut out = String::new();
        for d in deltas {
            match s.push(d) {
                StopScan::Continue(t) => out.push_str(&t),
                StopScan::Stopped { text, matched } => {
                    out.push_str(&text);
                    return (out, Some(matched));
                }
            }
        }
        out.push_str(&s.flush());
        (out, None)
    }

    #[test]
    fn stop_split_across_deltas_is_never_streamed() {
        let mut s = StopStrings::new(vec!["STOP".into()], false);
        assert_eq!(s.push("abc ST"), StopScan::Continue("abc ".into()));
        assert_eq!(s.push("O"), StopScan::Continue(String::new()));
        assert_eq!(
            s.push("Pxyz"),
            StopScan::Stopped {
                text: String::new(),
                matched: "STOP".into()
            }
        );
    }

    #[test]
    fn false_alarm_is_released() {
        assert_eq!(
            run(&["STOP"], false, &["ST", "ART", " end"]),
            ("START end".into(), None)
        );
    }

    #[test]
    fn include_stop_str_in_output() {
        assert_eq!(
            run(&["\n\n"], true, &["a\n", "\nb"]),
            ("a\n\n".into(), Some("\n\n".into()))
        );
    }

    #[test]
    fn earliest_of_several_stops_wins_and_unicode_is_safe() {
        assert_eq!(
            run(&["界", "x"], false, &["你好世", "界x"]),
            ("你好世".into(), Some("界".into()))
        );
        assert_eq!(
            run(&["é!"], false, &["caf", "é", "?"]),
            ("café?".into(), None)
        );
    }

    #[test]
    fn unchecked_text_passes_stops_but_holds_a_possible_beginning() {
        let mut s = StopStrings::new(vec!["\n\n".into()], true);
        assert_eq!(s.push_unchecked("a\n\nb\n"), "a\n\nb");
        // The held "\n" completes the stop once checks apply.
        assert_eq!(
            s.push("\nc"),
            StopScan::Stopped {
                text: "\n\n".into(),
                matched: "\n\n".into()
            }
        );
    }

    #[test]
    fn no_stops_passes_text_through() {
        assert_eq!(run(&[], false, &["a", "b"]), ("ab".into(), None));
    }
}

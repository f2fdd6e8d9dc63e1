//! The fault a dashboard cannot see: a stack whose every container reports
//! healthy while accepted searches wait and none is answered. A sampler
//! runs beside a fault level and reports the longest such stretch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Stack;

/// One look at the stack: every service running and healthy (or without a
/// healthcheck), and the searches answered and waiting in the database.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub healthy: bool,
    pub done: Option<i64>,
    pub waiting: Option<i64>,
}

/// Samples `stack` about twice a second (on a blocking thread) until `stop`
/// is set; the samples, in order.
pub async fn sample_until(stack: Stack, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let at = started.elapsed().as_secs_f64();
            let healthy = stack.all_healthy();
            let (done, waiting) = stack.answered_and_waiting().unzip();
            out.push(Sample { at, healthy, done, waiting });
            std::thread::sleep(Duration::from_millis(400));
        }
        out
    })
    .await
    .unwrap_or_default()
}

/// The longest stretch (seconds) during which every sample said all
/// healthy, searches were waiting, and the answered count did not move.
/// A sample that could not read the database ends a stretch.
pub fn longest_healthy_silence(samples: &[Sample]) -> f64 {
    let mut longest = 0.0f64;
    let mut start: Option<(f64, i64)> = None;
    for s in samples {
        let silent = match (s.healthy, s.done, s.waiting, start) {
            (true, Some(done), Some(waiting), Some((_, since))) => waiting > 0 && done == since,
            (true, Some(_), Some(waiting), None) => waiting > 0,
            _ => false,
        };
        match (silent, start) {
            (true, None) => start = s.done.map(|d| (s.at, d)),
            (true, Some((from, _))) => longest = longest.max(s.at - from),
            (false, _) => {
                // A silent stretch that ends with an answer starts again here.
                start = (s.healthy && s.waiting.unwrap_or(0) > 0).then_some(()).and(s.done.map(|d| (s.at, d)));
            }
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: f64, healthy: bool, done: i64, waiting: i64) -> Sample {
        Sample { at, healthy, done: Some(done), waiting: Some(waiting) }
    }

    #[test]
    fn only_healthy_waiting_stretches_without_answers_count() {
        let samples = [
            s(0.0, true, 10, 5),
            s(1.0, true, 12, 5),  // answered: a new stretch starts
            s(2.0, false, 12, 5), // the broker restarts: not healthy
            s(3.0, true, 12, 5),  // healthy, nothing answered from here...
            s(9.0, true, 12, 6),  // ...6 s of silence
            s(10.0, true, 20, 0), // answered, nothing waits
            s(30.0, true, 20, 0), // idle is not silence
        ];
        assert_eq!(longest_healthy_silence(&samples), 6.0);
    }

    #[test]
    fn an_unread_database_ends_a_stretch() {
        let mut samples = vec![s(0.0, true, 1, 1), s(5.0, true, 1, 1)];
        samples.push(Sample { at: 6.0, healthy: true, done: None, waiting: None });
        samples.push(s(7.0, true, 1, 1));
        samples.push(s(8.0, true, 1, 1));
        assert_eq!(longest_healthy_silence(&samples), 5.0);
    }
}

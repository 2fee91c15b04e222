/// The last hour of working set at one value per minute, kept in memory so the
/// dashboard never queries the store to draw sparklines.
#[derive(Clone, Debug, Default)]
pub struct Sparkline {
    /// (minute start in Unix ms, sum of working set, sample count), oldest first.
    minutes: std::collections::VecDeque<(i64, u128, u64)>,
}

pub const SPARKLINE_MINUTES: i64 = 60;
const MINUTE_MS: i64 = 60_000;

impl Sparkline {
    pub fn push(&mut self, time_ms: i64, working_set: u64) {
        let minute = time_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        match self.minutes.back_mut() {
            Some(last) if last.0 == minute => {
                last.1 += working_set as u128;
                last.2 += 1;
            }
            Some(last) if last.0 > minute => {} // a late sample; the minute is gone
            _ => self.minutes.push_back((minute, working_set as u128, 1)),
        }
        while self.minutes.len() as i64 > SPARKLINE_MINUTES {
            self.minutes.pop_front();
        }
    }

    /// Seeds one minute's mean (from the store, after a restart).
    pub fn seed(&mut self, minute_ms: i64, mean: u64) {
        self.push(minute_ms, mean);
    }

    /// One value per minute for the hour ending at `now_ms`; `None` where nothing was sampled.
    pub fn values(&self, now_ms: i64) -> Vec<Option<u64>> {
        let current = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        (0..SPARKLINE_MINUTES)
            .rev()
            .map(|back| {
                let minute = current - back * MINUTE_MS;
                self.minutes
                    .iter()
                    .find(|m| m.0 == minute)
                    .map(|&(_, sum, n)| (sum / n.max(1) as u128) as u64)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_per_minute_and_leaves_gaps() {
        let mut s = Sparkline::default();
        let t0 = 60 * MINUTE_MS;
        s.push(t0, 10);
        s.push(t0 + 1000, 30);
        s.push(t0 + 2 * MINUTE_MS, 50);
        let v = s.values(t0 + 2 * MINUTE_MS);
        assert_eq!(v.len(), 60);
        assert_eq!(&v[57..], &[Some(20), None, Some(50)]);
    }
}

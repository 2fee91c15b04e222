use leakscope_model::MemoryPoint;

/// Reduces points to at most two per pixel column (keeping each column's
/// minimum and maximum), so a week at 2-s resolution (~300 000 points)
/// draws as fast as an hour. Points outside `from..to` are dropped.
pub fn downsample(points: &[MemoryPoint], from_ms: i64, to_ms: i64, columns: usize) -> Vec<MemoryPoint> {
    let in_range = points.iter().filter(|p| p.time_ms >= from_ms && p.time_ms <= to_ms);
    if points.len() <= columns * 2 {
        return in_range.copied().collect();
    }
    let span = (to_ms - from_ms).max(1) as i128;
    let columns = columns.max(1);
    let mut out: Vec<MemoryPoint> = Vec::with_capacity(columns);
    let mut current: Option<(usize, MemoryPoint, u128, u128, u64)> = None;
    let flush = |out: &mut Vec<MemoryPoint>, c: (usize, MemoryPoint, u128, u128, u64)| {
        let (_, mut p, ws_sum, usage_sum, n) = c;
        p.working_set_bytes = (ws_sum / n as u128) as u64;
        p.usage_bytes = (usage_sum / n as u128) as u64;
        out.push(p);
    };
    for p in in_range {
        let column = ((p.time_ms - from_ms) as i128 * columns as i128 / span) as usize;
        match current.as_mut() {
            Some(c) if c.0 == column => {
                c.1.working_set_min_bytes = c.1.working_set_min_bytes.min(p.working_set_min_bytes);
                c.1.working_set_max_bytes = c.1.working_set_max_bytes.max(p.working_set_max_bytes);
                c.1.limit_bytes = c.1.limit_bytes.max(p.limit_bytes);
                c.2 += p.working_set_bytes as u128;
                c.3 += p.usage_bytes as u128;
                c.4 += 1;
            }
            _ => {
                if let Some(done) = current.take() {
                    flush(&mut out, done);
                }
                current = Some((column, *p, p.working_set_bytes as u128, p.usage_bytes as u128, 1));
            }
        }
    }
    if let Some(done) = current {
        flush(&mut out, done);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_extremes_per_column() {
        let pts: Vec<MemoryPoint> = (0..10_000)
            .map(|i| {
                let ws = if i == 5_000 { 1_000_000 } else { 10 };
                MemoryPoint {
                    time_ms: i,
                    working_set_bytes: ws,
                    working_set_min_bytes: ws,
                    working_set_max_bytes: ws,
                    usage_bytes: ws,
                    limit_bytes: None,
                }
            })
            .collect();
        let out = downsample(&pts, 0, 10_000, 100);
        assert!(out.len() <= 100);
        assert_eq!(out.iter().map(|p| p.working_set_max_bytes).max(), Some(1_000_000), "the spike survives");
        assert_eq!(out.iter().map(|p| p.working_set_min_bytes).min(), Some(10));
    }
}

//! What grew between two dumps of the same service.

use std::collections::HashMap;

use leakscope_model::analysis::{Analysis, ClassDelta, HeapDiff, SuspectDelta};

fn delta(a: u64, b: u64) -> i64 {
    b as i64 - a as i64
}

pub fn diff(before: &Analysis, after: &Analysis) -> HeapDiff {
    let mut classes: HashMap<&str, ClassDelta> = HashMap::new();
    let empty = |class: &str| ClassDelta {
        class: class.to_string(),
        instances_before: 0,
        instances_after: 0,
        instances_delta: 0,
        shallow_bytes_before: 0,
        shallow_bytes_after: 0,
        shallow_bytes_delta: 0,
        retained_bytes_before: 0,
        retained_bytes_after: 0,
        retained_bytes_delta: 0,
    };
    // Classes of one name from several loaders are summed.
    for e in &before.histogram {
        let d = classes.entry(&e.class).or_insert_with(|| empty(&e.class));
        d.instances_before += e.instances;
        d.shallow_bytes_before += e.shallow_bytes;
        d.retained_bytes_before += e.retained_bytes;
    }
    for e in &after.histogram {
        let d = classes.entry(&e.class).or_insert_with(|| empty(&e.class));
        d.instances_after += e.instances;
        d.shallow_bytes_after += e.shallow_bytes;
        d.retained_bytes_after += e.retained_bytes;
    }
    let mut classes: Vec<ClassDelta> = classes
        .into_values()
        .map(|mut d| {
            d.instances_delta = delta(d.instances_before, d.instances_after);
            d.shallow_bytes_delta = delta(d.shallow_bytes_before, d.shallow_bytes_after);
            d.retained_bytes_delta = delta(d.retained_bytes_before, d.retained_bytes_after);
            d
        })
        .collect();
    classes.sort_by(|a, b| {
        b.shallow_bytes_delta.cmp(&a.shallow_bytes_delta).then(b.instances_delta.cmp(&a.instances_delta)).then(a.class.cmp(&b.class))
    });
    let suspects = after
        .suspects
        .iter()
        .map(|s| {
            let before_bytes = before
                .suspects
                .iter()
                .find(|b| b.accumulation_class == s.accumulation_class && b.accumulated_class == s.accumulated_class)
                .map(|b| b.retained_bytes)
                .unwrap_or(0);
            SuspectDelta {
                description: s.description.clone(),
                accumulation_class: s.accumulation_class.clone(),
                retained_bytes_before: before_bytes,
                retained_bytes_after: s.retained_bytes,
                retained_bytes_delta: delta(before_bytes, s.retained_bytes),
            }
        })
        .collect();
    HeapDiff {
        before: before.summary.clone(),
        after: after.summary.clone(),
        heap_bytes_delta: delta(before.summary.heap_bytes, after.summary.heap_bytes),
        classes,
        suspects,
    }
}

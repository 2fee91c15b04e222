//! A 7-day range at 2-s resolution (302 400 points) rendered to SVG.
//! Target: at most 50 ms. Run: cargo bench -p leakscope-chart --bench render
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use leakscope_chart::{render_svg, ChartSpec, Theme};
use leakscope_model::MemoryPoint;

fn week_at_two_seconds() -> Vec<MemoryPoint> {
    let n = 7 * 86_400 / 2;
    (0..n)
        .map(|i| {
            // A slow leak under a GC sawtooth.
            let base = (200u64 << 20) + i as u64 * 200;
            let ws = base + (i as u64 % 150) * (1 << 18);
            MemoryPoint {
                time_ms: i as i64 * 2000,
                working_set_bytes: ws,
                working_set_min_bytes: ws,
                working_set_max_bytes: ws,
                usage_bytes: ws + (30 << 20),
                limit_bytes: Some(1 << 30),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let points = week_at_two_seconds();
    let spec = ChartSpec {
        points: &points,
        from_ms: 0,
        to_ms: 7 * 86_400_000,
        step_ms: 2000,
        width: 1000,
        height: 320,
        tz_offset_minutes: 0,
        trend: None,
        events: &[],
        theme: Theme::Light,
    };
    println!("points: {}", points.len());
    c.bench_function("svg_7d_2s_302400_points", |b| b.iter(|| render_svg(black_box(&spec)).unwrap()));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);

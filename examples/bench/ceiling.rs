//! redis-benchmark: the machine's ceiling.

use std::process::Command;

use crate::Config;
use crate::common::{MANY, Res};
use crate::stats::{Count, Series};

fn redis_benchmark_binary() -> String {
    std::env::var("REDIS_BENCHMARK").unwrap_or_else(|_| "redis-benchmark".into())
}

/// One `redis-benchmark -t get,set -d 200` run: (GET rps, SET rps).
fn redis_benchmark(port: u16, clients: usize, pipeline: usize, requests: u64) -> Res<(f64, f64)> {
    let binary = redis_benchmark_binary();
    let output = Command::new(&binary)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "get,set", "-d", "200", "--csv"])
        .args(["-n", &requests.to_string(), "-c", &clients.to_string()])
        .args(["-P", &pipeline.to_string()])
        .output()
        .map_err(|e| {
            format!("cannot run {binary}: {e} (install redis-tools, or set REDIS_BENCHMARK=/path)")
        })?;
    if !output.status.success() {
        return Err(format!(
            "{binary} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rps = |test: &str| -> Res<f64> {
        stdout
            .lines()
            .find_map(|line| {
                let mut fields = line.split(',').map(|f| f.trim_matches('"'));
                (fields.next() == Some(test)).then(|| fields.next())?
            })
            .ok_or_else(|| format!("no {test} line in redis-benchmark output:\n{stdout}"))?
            .parse::<f64>()
            .map_err(|e| format!("bad {test} rate in redis-benchmark output: {e}").into())
    };
    Ok((rps("GET")?, rps("SET")?))
}

/// Rounds of redis-benchmark at 1 client, 64 clients, and 1 client pipelining 64 requests (what
/// 64 tasks on one multiplexed connection amount to), alternating.
pub(crate) async fn ceiling(config: &Config, port: u16) -> Res<Vec<Series>> {
    eprintln!("  measuring: redis-benchmark -c 1 | -c {MANY} | -c 1 -P {MANY}");
    let mut rates: [Vec<f64>; 6] = Default::default();
    for _ in 0..config.rb_rounds {
        let (n1, n64, np) = (config.rb_n1, config.rb_n64, config.rb_np);
        let ((g1, s1), (g64, s64), (gp, sp)) = tokio::task::spawn_blocking(move || -> Res<_> {
            Ok((
                redis_benchmark(port, 1, 1, n1)?,
                redis_benchmark(port, MANY, 1, n64)?,
                redis_benchmark(port, 1, MANY, np)?,
            ))
        })
        .await??;
        for (r, v) in rates.iter_mut().zip([g1, s1, g64, s64, gp, sp]) {
            r.push(v);
        }
    }
    let names = [
        "redis-benchmark GET -c 1".to_string(),
        "redis-benchmark SET -c 1".to_string(),
        format!("redis-benchmark GET -c {MANY}"),
        format!("redis-benchmark SET -c {MANY}"),
        format!("redis-benchmark GET -P {MANY}"),
        format!("redis-benchmark SET -P {MANY}"),
    ];
    Ok(names
        .into_iter()
        .zip(rates)
        .map(|(name, rates)| Series {
            name,
            unit: "ops",
            rates,
            cpu_per_unit: Vec::new(),
            count: Count::default(),
            group: usize::MAX,
        })
        .collect())
}

//! Measurement: workloads, their rounds, and the statistics over the rounds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Config;
use crate::common::Res;

/// What the tasks of one round did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Count {
    /// Operations, keys or successful updates, as the workload counts them.
    pub(crate) units: u64,
    /// `update`: attempts that lost the compare-and-set and ran again.
    pub(crate) retries: u64,
    /// `update`: calls that gave up with `Error::Conflict`.
    pub(crate) conflicts: u64,
}

impl Count {
    pub(crate) fn units(units: u64) -> Count {
        Count {
            units,
            ..Count::default()
        }
    }
}

/// Hands out operation numbers until the round's deadline (or, with `--profile`, a count).
#[derive(Debug)]
pub(crate) struct Ticker {
    deadline: Instant,
    next: u64,
    limit: u64,
}

impl Ticker {
    pub(crate) fn tick(&mut self) -> Option<u64> {
        if self.next >= self.limit || Instant::now() >= self.deadline {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

/// One round: units per second, what was done, and this process's CPU time in the round
/// (nanoseconds, all threads; `None` where the kernel does not report it).
pub(crate) type RoundFuture = Pin<Box<dyn Future<Output = Res<(f64, Count, Option<u64>)>> + Send>>;

/// CPU time of all threads of this process so far, in nanoseconds, from
/// `/proc/self/task/*/schedstat` (Linux). This is the client's cost of a workload, which, unlike
/// its throughput, does not depend on what else the shared machine is running.
pub(crate) fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// A named workload: `tasks` concurrent tasks, each running its loop until the deadline.
pub(crate) struct Workload {
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    pub(crate) tasks: usize,
    /// Runs one round: for a duration, or until each task has done `limit` operations.
    pub(crate) run: Box<dyn Fn(Duration, u64) -> RoundFuture + Send + Sync>,
}

pub(crate) fn workload<F, Fut>(
    name: impl Into<String>, unit: &'static str, tasks: usize, task: F,
) -> Workload
where
    F: Fn(usize, Ticker) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<Count>> + Send + 'static,
{
    let task = Arc::new(task);
    Workload {
        name: name.into(),
        unit,
        tasks,
        run: Box::new(move |duration, limit| {
            let task = task.clone();
            Box::pin(async move {
                let cpu_start = process_cpu_ns();
                let start = Instant::now();
                let deadline = start + duration;
                let handles: Vec<_> = (0..tasks)
                    .map(|t| {
                        tokio::spawn(task(
                            t,
                            Ticker {
                                deadline,
                                next: 0,
                                limit,
                            },
                        ))
                    })
                    .collect();
                let mut total = Count::default();
                for handle in handles {
                    let count = handle.await??;
                    total.units += count.units;
                    total.retries += count.retries;
                    total.conflicts += count.conflicts;
                }
                // Measured to the end of the slowest task, not the nominal deadline.
                let rate = total.units as f64 / start.elapsed().as_secs_f64();
                let cpu = cpu_start
                    .zip(process_cpu_ns())
                    .map(|(a, b)| b.saturating_sub(a));
                Ok((rate, total, cpu))
            })
        }),
    }
}

/// Rates of several rounds of one workload.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    pub(crate) rates: Vec<f64>,
    /// Client CPU microseconds per unit, per round.
    pub(crate) cpu_per_unit: Vec<f64>,
    pub(crate) count: Count,
    /// Which `measure` call ran it: series of the same group ran in alternating rounds, so
    /// their ratio is taken round by round.
    pub(crate) group: usize,
}

impl Series {
    pub(crate) fn median(&self) -> f64 {
        median(&self.rates)
    }

    /// Median client CPU microseconds per unit.
    pub(crate) fn cpu(&self) -> Option<f64> {
        (!self.cpu_per_unit.is_empty()).then(|| median(&self.cpu_per_unit))
    }

    /// Adds a round of a workload that is not a `Workload` (a fixed amount of work): `units`
    /// done in `elapsed`, with the process's CPU time since `cpu_start`.
    pub(crate) fn push_round(&mut self, units: u64, elapsed: Duration, cpu_start: Option<u64>) {
        self.rates
            .push(units as f64 / elapsed.as_secs_f64().max(1e-9));
        if let Some(cpu) = cpu_start
            .zip(process_cpu_ns())
            .map(|(a, b)| b.saturating_sub(a))
            && units > 0
        {
            self.cpu_per_unit.push(cpu as f64 / units as f64 / 1000.0);
        }
        self.count.units += units;
    }

    /// (max - min) / median, as a rough noise figure.
    pub(crate) fn spread(&self) -> f64 {
        let max = self.rates.iter().copied().fold(f64::MIN, f64::max);
        let min = self.rates.iter().copied().fold(f64::MAX, f64::min);
        if self.median() > 0.0 {
            (max - min) / self.median()
        } else {
            0.0
        }
    }
}

/// `series` relative to `reference`, with the range over the rounds when they are paired: the
/// median of the per-round ratios (each round of one next to the same round of the other, so
/// that a slow stretch of the machine hits both), else the ratio of the medians.
pub(crate) fn ratio(series: &Series, reference: &Series) -> Option<(f64, Option<(f64, f64)>)> {
    if series.group == reference.group && series.rates.len() == reference.rates.len() {
        let ratios: Vec<f64> = series
            .rates
            .iter()
            .zip(&reference.rates)
            .filter(|(_, r)| **r > 0.0)
            .map(|(s, r)| s / r)
            .collect();
        if ratios.len() == series.rates.len() && !ratios.is_empty() {
            let min = ratios.iter().copied().fold(f64::MAX, f64::min);
            let max = ratios.iter().copied().fold(f64::MIN, f64::max);
            return Some((median(&ratios), Some((min, max))));
        }
    }
    (reference.median() > 0.0).then(|| (series.median() / reference.median(), None))
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Warms every workload up, then runs the rounds interleaved, in alternating order so that
/// neither side always goes first: A B C, C B A, A B C ...
pub(crate) async fn measure(config: &Config, group: Vec<Workload>) -> Res<Vec<Series>> {
    static GROUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let group_id = GROUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let names: Vec<&str> = group.iter().map(|w| w.name.as_str()).collect();
    eprintln!("  measuring: {}", names.join(" | "));
    for w in &group {
        (w.run)(config.warmup, u64::MAX).await?;
    }
    let mut series: Vec<Series> = group
        .iter()
        .map(|w| Series {
            name: w.name.clone(),
            unit: w.unit,
            rates: Vec::new(),
            cpu_per_unit: Vec::new(),
            count: Count::default(),
            group: group_id,
        })
        .collect();
    for round in 0..config.rounds {
        let mut order: Vec<usize> = (0..group.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (w, s) = (&group[i], &mut series[i]);
            let (rate, count, cpu) = (w.run)(config.round, u64::MAX).await?;
            s.rates.push(rate);
            if let Some(cpu) = cpu.filter(|_| count.units > 0) {
                s.cpu_per_unit
                    .push(cpu as f64 / count.units as f64 / 1000.0);
            }
            s.count.units += count.units;
            s.count.retries += count.retries;
            s.count.conflicts += count.conflicts;
        }
    }
    Ok(series)
}

//! What a namespace holds: keys, estimated bytes and expiries per prefix
//! ([`Store::usage`](crate::Store::usage), [`Store::usage`](crate::Store::usage)).
//!
//! A walk is built to be safe on a large production server: `SCAN` with a `COUNT` (never
//! `KEYS`), sizes measured on a bounded sample of keys per prefix, and a time limit after which
//! it stops and says so ([`Usage::complete`]). Counts of keys and of keys without expiry are exact
//! for the part walked; bytes are an estimate (the mean size of the sample times the count).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::setters::setters;

/// The progress callback of [`UsageOptions::on_progress`].
pub type ProgressFn = dyn Fn(&UsageProgress) + Send + Sync;

/// How many prefixes a [`Usage`] tells apart; the keys of any further prefix are counted under
/// [`PrefixUsage::OTHER`]. Keys written by other clients may have an unbounded number of
/// distinct first segments (an id where a prefix is expected), and each prefix costs memory.
pub const MAX_PREFIXES: usize = 1000;

/// How a usage walk goes: batch size, sample size, time limit and a progress callback.
///
/// ```
/// use std::time::Duration;
/// use state_store::UsageOptions;
///
/// let options = UsageOptions::new()
///     .scan_count(500)
///     .sample(100)
///     .time_limit(Duration::from_secs(10))
///     .on_progress(|p| eprintln!("{} keys after {:?}", p.keys, p.elapsed));
/// # assert_eq!(options.sample, 100);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct UsageOptions {
    /// How many keys each `SCAN` call asks the server to look at (its `COUNT`), at least 1;
    /// 1000 by default. Also how many keys the provided [`Store::usage`](crate::Store::usage) lists between two
    /// progress reports.
    pub scan_count: u32,
    /// How many keys per prefix have their size measured (`MEMORY USAGE` on Redis): a uniform
    /// random sample of that many of the prefix's keys; 200 by default. 0 measures nothing (for
    /// a server that refuses `MEMORY`): every estimate is then 0 bytes.
    pub sample: usize,
    /// How long the walk may run: past it, it stops after the batch at hand and returns what
    /// it counted with [`Usage::complete`] false; 30 s by default.
    pub time_limit: Duration,
    /// Called after each batch of keys with the progress so far.
    pub progress: Option<Arc<ProgressFn>>,
}

impl UsageOptions {
    /// The defaults: `COUNT 1000`, 200 keys sampled per prefix, 30 s, no progress callback.
    pub fn new() -> UsageOptions {
        UsageOptions {
            scan_count: 1000,
            sample: 200,
            time_limit: Duration::from_secs(30),
            progress: None,
        }
    }

    /// Calls `progress` after each batch of keys (on the task running the walk: keep it quick).
    pub fn on_progress(
        mut self, progress: impl Fn(&UsageProgress) + Send + Sync + 'static,
    ) -> UsageOptions {
        self.progress = Some(Arc::new(progress));
        self
    }
}

setters! {
    impl[] UsageOptions {
        /// Asks each `SCAN` call to look at about `count` keys (at least 1).
        scan_count(count: u32) = count.max(1);
        /// Measures the size of at most `keys` keys per prefix.
        sample(keys: usize);
        /// Stops the walk once it has run for `limit`.
        time_limit(limit: Duration);
    }
}

impl Default for UsageOptions {
    fn default() -> Self {
        UsageOptions::new()
    }
}

impl fmt::Debug for UsageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageOptions")
            .field("scan_count", &self.scan_count)
            .field("sample", &self.sample)
            .field("time_limit", &self.time_limit)
            .field("progress", &self.progress.as_ref().map(|_| "Fn"))
            .finish()
    }
}

/// How far a usage walk has gone, as [`UsageOptions::on_progress`] reports it.
///
/// `SCAN` cannot say how many keys match before it has walked them all. What it can say is how
/// many keys of the whole database it has looked at, matching or not (`examined`), against how
/// many the database held when the walk began (`database_keys`): the fraction for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageProgress {
    /// Keys of the namespace counted so far.
    pub keys: u64,
    /// About how many keys of the database the walk has looked at so far, matching or not: on
    /// Redis the number of `SCAN` calls times their `COUNT` (the server looks at about that
    /// many per call); elsewhere the keys listed.
    pub examined: u64,
    /// How many keys the whole database held when the walk began (`DBSIZE`, summed over the
    /// primaries of a Cluster), when the engine can tell: an upper bound of the namespace's
    /// keys, and about where `examined` ends.
    pub database_keys: Option<u64>,
    /// Time since the walk began.
    pub elapsed: Duration,
}

/// What a namespace holds, per prefix: the answer of [`Store::usage`](crate::Store::usage).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// One row per prefix, the largest estimated size first (then by name).
    pub prefixes: Vec<PrefixUsage>,
    /// Keys counted, over all prefixes.
    pub keys: u64,
    /// Estimated bytes, over all prefixes (the sum of theirs).
    pub estimated_bytes: u64,
    /// Keys counted that have no expiry, over all prefixes.
    pub without_expiry: u64,
    /// How many keys the whole database held when the walk began (see
    /// [`UsageProgress::database_keys`]).
    pub database_keys: Option<u64>,
    /// How long the walk took.
    pub elapsed: Duration,
    /// `false` when the time limit stopped the walk before its end: the figures then cover
    /// only the keys walked (a uniform part of the key space on Redis, whose `SCAN` order is the
    /// hash table's).
    pub complete: bool,
}

impl Usage {
    /// The row of `prefix` (such as `"session"`, or [`PrefixUsage::NO_PREFIX`]), if any key
    /// of it was counted.
    pub fn prefix(&self, prefix: &str) -> Option<&PrefixUsage> {
        self.prefixes.iter().find(|row| row.prefix == prefix)
    }
}

/// The keys of one prefix: the key segment after `{namespace}:` up to the next `:` (the
/// `prefix` of a [`StateKey`](crate::StateKey) type for the keys this crate writes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrefixUsage {
    /// The prefix, or [`NO_PREFIX`](Self::NO_PREFIX) / [`OTHER`](Self::OTHER).
    pub prefix: String,
    /// How many keys it has (exact for the part walked).
    pub keys: u64,
    /// Their estimated size in bytes: on Redis the mean `MEMORY USAGE` of the sampled keys
    /// times `keys` (the server's own accounting: key, value and overhead); on the memory
    /// backend the exact sum of key and value lengths; by the provided
    /// [`Store::usage`](crate::Store::usage) the mean key and value length of the sample times `keys`.
    pub estimated_bytes: u64,
    /// How many of its keys were measured for `estimated_bytes`; when it equals `keys`, every
    /// key was measured and the figure is exact.
    pub sampled: u64,
    /// How many of its keys have no expiry (exact for the part walked).
    pub without_expiry: u64,
    /// How the remaining time of its keys with an expiry is spread; `None` when none has one.
    pub ttl: Option<TtlSpread>,
}

impl PrefixUsage {
    /// The row of the namespace's keys without a further `:` (written by other clients: every
    /// key this crate writes has a prefix). Not a valid prefix, so it never names a real one.
    pub const NO_PREFIX: &'static str = "(no prefix)";

    /// The row of the keys of the prefixes past the first [`MAX_PREFIXES`].
    pub const OTHER: &'static str = "(other prefixes)";

    /// How many of its keys have an expiry.
    pub fn with_expiry(&self) -> u64 {
        self.keys - self.without_expiry
    }
}

/// The remaining time of the keys of a prefix that have an expiry, as it was when each was
/// walked. `min` and `max` are exact; `median` and `p90` come from a histogram whose bins are
/// 1/16 of a power of two wide, so they are within about 3 % (and exact below 16 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TtlSpread {
    /// The shortest remaining time.
    pub min: Duration,
    /// Half the keys expire sooner than this.
    pub median: Duration,
    /// 90 % of the keys expire sooner than this.
    pub p90: Duration,
    /// The longest remaining time.
    pub max: Duration,
}

/// The counting side of a usage walk, for a backend that overrides [`Store::usage`](crate::Store::usage): it
/// groups keys by prefix, keeps the counts, the ttl histogram and a reservoir sample of sizes
/// per prefix, reports progress and watches the time limit.
///
/// A walk over a key space that may show a key twice (Redis's `SCAN`) asks
/// [`first_sight`](Self::first_sight) before looking the key up; then
/// [`count`](Self::count)s each key that exists, measures the size of the keys it picks for
/// the sample and hands them to [`measured`](Self::measured); calls
/// [`progress`](Self::progress) after each batch and stops when
/// [`out_of_time`](Self::out_of_time); and ends with [`finish`](Self::finish). A walk that
/// knows every size at no cost uses [`count_measured`](Self::count_measured) instead (exact
/// figures).
pub struct UsageTally {
    /// `{namespace}:`, the start of every key counted.
    prefix: Box<[u8]>,
    options: UsageOptions,
    started: Instant,
    groups: Vec<Group>,
    by_name: HashMap<Box<[u8]>, usize>,
    /// 64-bit hashes of the keys seen, so that a key `SCAN` returns twice counts once. A
    /// collision (about one chance in 10^6 at ten million keys) would leave one key out.
    seen: HashSet<u64>,
    hasher: RandomState,
    rng: u64,
    database_keys: Option<u64>,
    keys: u64,
}

/// The tallies of one prefix.
struct Group {
    name: String,
    keys: u64,
    without_expiry: u64,
    /// Sizes of a uniform random sample of the prefix's keys (algorithm R).
    reservoir: Vec<u64>,
    /// Sizes known for every key ([`UsageTally::count_measured`]).
    exact_bytes: u64,
    exact_keys: u64,
    ttls: TtlHistogram,
}

/// Where in a prefix's sample the size of a key goes: returned by [`UsageTally::count`] for a
/// key to measure, handed back with its size to [`UsageTally::measured`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleSlot {
    group: usize,
    slot: usize,
}

impl UsageTally {
    /// A walk of the keys that start with `prefix` (`{namespace}:`, or empty for every key),
    /// beginning now.
    pub fn new(prefix: &str, options: &UsageOptions) -> UsageTally {
        let hasher = RandomState::new();
        let rng = hasher.hash_one(0x5eed_u64) | 1;
        UsageTally {
            prefix: prefix.as_bytes().into(),
            options: options.clone(),
            started: Instant::now(),
            groups: Vec::new(),
            by_name: HashMap::new(),
            seen: HashSet::new(),
            hasher,
            rng,
            database_keys: None,
            keys: 0,
        }
    }

    /// Records how many keys the whole database holds (see [`UsageProgress::database_keys`]).
    pub fn set_database_keys(&mut self, keys: u64) {
        self.database_keys = Some(keys);
    }

    /// Whether `key` is seen for the first time in this walk (and notes it).
    pub fn first_sight(&mut self, key: &[u8]) -> bool {
        self.seen.insert(self.hasher.hash_one(key))
    }

    /// Counts `key`, which exists and has `ttl` left (`None`: no expiry). `Some` when the key
    /// is picked for the sample of its prefix: measure its size and hand it to
    /// [`measured`](Self::measured) (a key gone meanwhile is simply not handed back).
    pub fn count(&mut self, key: &[u8], ttl: Option<Duration>) -> Option<SampleSlot> {
        let group = self.tally(key, ttl);
        let sample = self.options.sample;
        let seen = self.groups[group].keys;
        let filled = self.groups[group].reservoir.len();
        let slot = if filled < sample {
            filled
        } else {
            // Algorithm R: the n-th key replaces a random one of the sample with chance
            // sample / n, so that the sample stays uniform.
            let pick = self.random() % seen;
            usize::try_from(pick).ok().filter(|&pick| pick < sample)?
        };
        if slot == filled {
            // Held by a placeholder until the size comes, so that the next key's slot is
            // the next one; a key gone before it was measured leaves the mean of the others.
            self.groups[group].reservoir.push(u64::MAX);
        }
        Some(SampleSlot { group, slot })
    }

    /// The size of a key [`count`](Self::count) picked for the sample.
    pub fn measured(&mut self, slot: SampleSlot, bytes: u64) {
        if let Some(held) = self
            .groups
            .get_mut(slot.group)
            .and_then(|group| group.reservoir.get_mut(slot.slot))
        {
            *held = bytes;
        }
    }

    /// Counts `key` with its exact size: for an engine that knows every key's size at no cost.
    pub fn count_measured(&mut self, key: &[u8], ttl: Option<Duration>, bytes: u64) {
        let group = self.tally(key, ttl);
        let group = &mut self.groups[group];
        group.exact_keys += 1;
        group.exact_bytes = group.exact_bytes.saturating_add(bytes);
    }

    /// Reports progress to the callback of the options, if any: the keys counted so far and
    /// `examined` (see [`UsageProgress::examined`]).
    pub fn progress(&self, examined: u64) {
        if let Some(progress) = &self.options.progress {
            progress(&UsageProgress {
                keys: self.keys,
                examined,
                database_keys: self.database_keys,
                elapsed: self.started.elapsed(),
            });
        }
    }

    /// Whether the time limit of the options has passed.
    pub fn out_of_time(&self) -> bool {
        self.started.elapsed() >= self.options.time_limit
    }

    /// The figures: `complete` is whether the walk reached the end of the key space.
    pub fn finish(self, complete: bool) -> Usage {
        let mut prefixes: Vec<PrefixUsage> = self.groups.into_iter().map(Group::finish).collect();
        prefixes.sort_by(|a, b| {
            b.estimated_bytes
                .cmp(&a.estimated_bytes)
                .then_with(|| a.prefix.cmp(&b.prefix))
        });
        Usage {
            keys: prefixes.iter().map(|p| p.keys).sum(),
            estimated_bytes: prefixes.iter().map(|p| p.estimated_bytes).sum(),
            without_expiry: prefixes.iter().map(|p| p.without_expiry).sum(),
            prefixes,
            database_keys: self.database_keys,
            elapsed: self.started.elapsed(),
            complete,
        }
    }

    /// Counts `key` in its prefix's group; the group's index.
    fn tally(&mut self, key: &[u8], ttl: Option<Duration>) -> usize {
        let group = self.group_of(key);
        self.keys += 1;
        let group_tally = &mut self.groups[group];
        group_tally.keys += 1;
        match ttl {
            None => group_tally.without_expiry += 1,
            Some(ttl) => group_tally.ttls.add(ttl),
        }
        group
    }

    /// The index of the group of `key`, created on first sight.
    fn group_of(&mut self, key: &[u8]) -> usize {
        let rest = key.strip_prefix(&*self.prefix).unwrap_or(key);
        let name: &[u8] = match rest.iter().position(|&b| b == b':') {
            Some(end) => &rest[..end],
            None => PrefixUsage::NO_PREFIX.as_bytes(),
        };
        if let Some(&group) = self.by_name.get(name) {
            return group;
        }
        let name = if self.groups.len() < MAX_PREFIXES {
            name
        } else {
            PrefixUsage::OTHER.as_bytes()
        };
        if let Some(&group) = self.by_name.get(name) {
            return group;
        }
        self.groups
            .push(Group::new(String::from_utf8_lossy(name).into_owned()));
        self.by_name.insert(name.into(), self.groups.len() - 1);
        self.groups.len() - 1
    }

    /// splitmix64: enough randomness for a sample, without a dependency.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl fmt::Debug for UsageTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageTally")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("keys", &self.keys)
            .field("prefixes", &self.groups.len())
            .finish_non_exhaustive()
    }
}

impl Group {
    fn new(name: String) -> Group {
        Group {
            name,
            keys: 0,
            without_expiry: 0,
            reservoir: Vec::new(),
            exact_bytes: 0,
            exact_keys: 0,
            ttls: TtlHistogram::default(),
        }
    }

    fn finish(self) -> PrefixUsage {
        let measured: Vec<u64> = self
            .reservoir
            .into_iter()
            .filter(|&bytes| bytes != u64::MAX)
            .collect();
        let (sampled, estimated_bytes) = if self.exact_keys == self.keys {
            (self.exact_keys, self.exact_bytes)
        } else if measured.is_empty() {
            (0, 0)
        } else {
            let sum: u128 = measured.iter().map(|&b| u128::from(b)).sum();
            let estimate = sum * u128::from(self.keys) / measured.len() as u128;
            (
                measured.len() as u64,
                u64::try_from(estimate).unwrap_or(u64::MAX),
            )
        };
        PrefixUsage {
            prefix: self.name,
            keys: self.keys,
            estimated_bytes,
            sampled,
            without_expiry: self.without_expiry,
            ttl: self.ttls.spread(),
        }
    }
}

/// Remaining times in milliseconds, in bins 1/16 of a power of two wide (exact below 16 ms),
/// kept sparse: memory grows with the spread of the ttls, not with the number of keys.
#[derive(Default)]
struct TtlHistogram {
    bins: BTreeMap<u32, u64>,
    count: u64,
    min: u64,
    max: u64,
}

impl TtlHistogram {
    const SUB_BINS: u32 = 16;

    fn add(&mut self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        *self.bins.entry(Self::bin(ms)).or_default() += 1;
        if self.count == 0 {
            (self.min, self.max) = (ms, ms);
        } else {
            self.min = self.min.min(ms);
            self.max = self.max.max(ms);
        }
        self.count += 1;
    }

    fn bin(ms: u64) -> u32 {
        let sub = u64::from(Self::SUB_BINS);
        if ms < sub {
            return ms as u32;
        }
        let octave = 63 - ms.leading_zeros(); // at least 4
        let shift = octave - Self::SUB_BINS.trailing_zeros();
        let within = ((ms >> shift) - sub) as u32;
        Self::SUB_BINS + shift * Self::SUB_BINS + within
    }

    /// The middle of a bin.
    fn value(bin: u32) -> u64 {
        if bin < Self::SUB_BINS {
            return u64::from(bin);
        }
        let shift = (bin - Self::SUB_BINS) / Self::SUB_BINS;
        let within = u64::from((bin - Self::SUB_BINS) % Self::SUB_BINS);
        let low = (u64::from(Self::SUB_BINS) + within) << shift;
        low + ((1u64 << shift) >> 1)
    }

    /// The value below which a `q` part of the ttls lie, within the exact bounds.
    fn quantile(&self, q: f64) -> u64 {
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut below = 0;
        for (&bin, &n) in &self.bins {
            below += n;
            if below >= rank {
                return Self::value(bin).clamp(self.min, self.max);
            }
        }
        self.max
    }

    fn spread(&self) -> Option<TtlSpread> {
        (self.count > 0).then(|| TtlSpread {
            min: Duration::from_millis(self.min),
            median: Duration::from_millis(self.quantile(0.5)),
            p90: Duration::from_millis(self.quantile(0.9)),
            max: Duration::from_millis(self.max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sample: usize) -> UsageOptions {
        UsageOptions::new().sample(sample)
    }

    #[test]
    fn keys_are_grouped_by_the_segment_after_the_namespace() {
        let mut tally = UsageTally::new("svc:", &options(10));
        for key in ["svc:session:1", "svc:session:2", "svc:job:a:7", "svc:loose"] {
            tally.count_measured(key.as_bytes(), None, 10);
        }
        tally.count_measured(b"svc:job:b:1", Some(Duration::from_secs(5)), 30);
        let usage = tally.finish(true);
        assert_eq!(usage.keys, 5);
        assert_eq!(usage.without_expiry, 4);
        assert_eq!(usage.estimated_bytes, 70);
        let names: Vec<&str> = usage.prefixes.iter().map(|p| p.prefix.as_str()).collect();
        assert_eq!(names, ["job", "session", PrefixUsage::NO_PREFIX]);
        let job = usage.prefix("job").unwrap();
        assert_eq!((job.keys, job.without_expiry, job.with_expiry()), (2, 1, 1));
        assert_eq!((job.sampled, job.estimated_bytes), (2, 40));
        let ttl = job.ttl.unwrap();
        assert_eq!((ttl.min, ttl.max), (Duration::from_secs(5), ttl.median));
        assert!(usage.prefix("session").unwrap().ttl.is_none());
    }

    #[test]
    fn the_sample_is_bounded_and_its_mean_scales_to_the_count() {
        let mut tally = UsageTally::new("", &options(50));
        let mut measured = 0;
        for i in 0..10_000u32 {
            let key = format!("p:{i}");
            assert!(tally.first_sight(key.as_bytes()));
            if let Some(slot) = tally.count(key.as_bytes(), None) {
                measured += 1;
                tally.measured(slot, 100);
            }
        }
        assert!(!tally.first_sight(b"p:7"), "a key seen twice counts once");
        // About sample * (1 + ln(n / sample)) keys are measured: logarithmic in the count.
        assert!((50..600).contains(&measured), "{measured}");
        let usage = tally.finish(true);
        let p = usage.prefix("p").unwrap();
        assert_eq!(
            (p.keys, p.sampled, p.estimated_bytes),
            (10_000, 50, 1_000_000)
        );
    }

    #[test]
    fn without_a_sample_nothing_is_measured() {
        let mut tally = UsageTally::new("", &options(0));
        assert_eq!(tally.count(b"a:1", None), None);
        let usage = tally.finish(true);
        assert_eq!((usage.keys, usage.estimated_bytes), (1, 0));
    }

    #[test]
    fn prefixes_past_the_bound_share_one_row() {
        let mut tally = UsageTally::new("", &options(1));
        for i in 0..MAX_PREFIXES + 5 {
            tally.count_measured(format!("p{i}:x").as_bytes(), None, 1);
        }
        tally.count_measured(b"p0:y", None, 1);
        let usage = tally.finish(true);
        assert_eq!(usage.prefixes.len(), MAX_PREFIXES + 1);
        assert_eq!(usage.prefix(PrefixUsage::OTHER).unwrap().keys, 5);
        assert_eq!(usage.prefix("p0").unwrap().keys, 2);
    }

    #[test]
    fn ttl_quantiles_are_within_a_bin() {
        let mut histogram = TtlHistogram::default();
        for ms in 1..=1000u64 {
            histogram.add(Duration::from_millis(ms * 1000));
        }
        let spread = histogram.spread().unwrap();
        assert_eq!(spread.min, Duration::from_secs(1));
        assert_eq!(spread.max, Duration::from_secs(1000));
        let near = |d: Duration, secs: f64| (d.as_secs_f64() / secs - 1.0).abs() < 0.04;
        assert!(near(spread.median, 500.0), "{spread:?}");
        assert!(near(spread.p90, 900.0), "{spread:?}");
        for ms in [0, 1, 15, 16, 17, 31, 32, 1000, 123_456_789, u64::MAX] {
            let value = TtlHistogram::value(TtlHistogram::bin(ms));
            assert!(
                value.abs_diff(ms) as f64 <= (ms as f64 / 32.0).max(0.0) + 1.0,
                "{ms} -> {value}"
            );
        }
    }
}

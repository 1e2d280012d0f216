//! Leases on Redis: the lease's value (plain JSON) under its own key, its token in a record
//! beside it, tokens from a counter, and fenced writes, each one Lua script.
//!
//! **The keys.** For a lease `{p}:{id}` of a type whose prefix (namespace included) is `{p}`:
//! - `{p}#lease{T}:{id}`: the token of the current holder and the SHA-1 of the value it goes
//!   with (`{token}:{sha1}`), with the lease's expiry: a value written under the key by anything
//!   but `acquire` (a plain `SET`) is no lease, as on the memory engine;
//! - `{p}#tokens{T}`: the counter tokens come from, without expiry, one per hash slot of the
//!   type (at most 16,384), so tokens grow across expiry, release and removal of the lease key
//!   and survive a restart with persistence, without a record per id ever leased.
//!
//! `{T}` is a hash tag chosen to land in the lease key's own slot, so the three keys are in one
//! slot and every script runs on one Cluster node, whatever braces the id holds; the names start
//! with `{p}` (an ACL key pattern of the namespace covers them) and are not under `{p}:` (they
//! are not ids of the type).
//!
//! **Fenced writes.** On one server or under Sentinel the script that writes also checks that
//! the lease is still the one with the token (both rules). On a Cluster the lease lives in
//! another slot, so the written key `{g}:{id}` keeps a record, `{g}#fence{T}:{id}` in its own
//! slot: a hash of the newest token each lease key wrote with, refusing older ones (the
//! fencing rule). The record lives as long as the written key and at least one lease ttl after
//! each write, so a fenced removal is fenced too. The written key itself is plain.

use std::sync::LazyLock;
use std::time::Duration;

use super::feed::wire_channel;
use super::scripts::{
    FENCED_CURRENT, FENCED_RECORD, LEASE_ACQUIRE, LEASE_EXTEND, LEASE_HOLDER, LEASE_RELEASE,
};
use super::write::arg_expiry;
use super::{RedisBackend, is_digest, millis};
use crate::Result;
use crate::backend::{
    BoxFuture, Expiry, Fence, FencedWrites, HeldLease, LeaseKey, Leases, Notify, PutMode, Version,
};

impl Leases for RedisBackend {
    fn acquire<'a>(
        &'a self, lease: LeaseKey<'a>, value: Vec<u8>, ttl: Duration, notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<Option<u64>>> {
        let acquire = async move {
            let spec = self.journaled(notify, lease.history);
            let notify = spec.as_deref().or(notify);
            self.writing(self.forget_key(lease.key), async {
                let mut invocation = LEASE_ACQUIRE.key(lease.key);
                invocation
                    .key(token_key(lease))
                    .key(counter_key(lease))
                    .arg(value)
                    .arg(millis(ttl))
                    .arg(channel_arg(notify, self.db).as_str());
                // Not retried: after a lost reply, a second run would find the lease taken.
                let token: u64 = self.run("acquire", lease.key, &invocation).await?;
                Ok((token > 0).then_some(token))
            })
            .await
        };
        Box::pin(self.durably(lease.durable, lease.key, acquire))
    }

    fn holder<'a>(&'a self, lease: LeaseKey<'a>) -> BoxFuture<'a, Result<Option<HeldLease>>> {
        Box::pin(async move {
            let mut invocation = LEASE_HOLDER.key(lease.key);
            invocation.key(token_key(lease));
            let held: Option<(Vec<u8>, u64, i64)> =
                self.run("holder", lease.key, &invocation).await?;
            Ok(held.map(|(value, token, left)| {
                // -1: a value without expiry, written under the key by something else.
                let left = u64::try_from(left).map_or(Duration::MAX, Duration::from_millis);
                HeldLease::new(value, token, left)
            }))
        })
    }

    fn extend<'a>(
        &'a self, lease: LeaseKey<'a>, token: u64, ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        let extend = async move {
            let mut invocation = LEASE_EXTEND.key(lease.key);
            invocation.key(token_key(lease)).arg(token).arg(millis(ttl));
            // Safe to run twice: the second run extends again, from a moment later.
            let extended: i64 = self.run("extend", lease.key, &invocation).await?;
            Ok(extended == 1)
        };
        Box::pin(self.durably(lease.durable, lease.key, extend))
    }

    fn release<'a>(
        &'a self, lease: LeaseKey<'a>, token: u64, notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        let release = async move {
            let spec = self.journaled(notify, lease.history);
            let notify = spec.as_deref().or(notify);
            self.writing(self.forget_key(lease.key), async {
                let mut invocation = LEASE_RELEASE.key(lease.key);
                invocation
                    .key(token_key(lease))
                    .arg(token)
                    .arg(channel_arg(notify, self.db).as_str());
                let released: i64 = self.run("release", lease.key, &invocation).await?;
                Ok(released == 1)
            })
            .await
        };
        Box::pin(self.durably(lease.durable, lease.key, release))
    }

    fn fenced_writes(&self) -> FencedWrites {
        if self.conn.is_cluster() {
            FencedWrites::FencingRule
        } else {
            FencedWrites::CurrentLease
        }
    }
}

/// What a fenced write does to its key.
pub(super) enum FencedOp<'v> {
    /// A `put` of this value, with its mode and expiry.
    Put(Vec<u8>, &'v PutMode, Expiry),
    /// A `remove`, only of this version when given.
    Remove(Option<&'v Version>),
}

impl RedisBackend {
    /// A `put` or `remove` under `fence`: one script that checks the fence and writes (see the
    /// module docs for the rules on each topology). `true` when written or removed.
    pub(super) async fn fenced(
        &self, key: &str, op: FencedOp<'_>, notify: Notify<'_>, fence: &Fence<'_>,
    ) -> Result<bool> {
        let (operation, kind, condition, value, expiry) = match op {
            FencedOp::Put(value, mode, expiry) => {
                let (operation, condition) = match mode {
                    PutMode::Overwrite => ("set", ""),
                    PutMode::Create => ("set_if_absent", "nx"),
                    PutMode::Update(version) => match digest(version) {
                        Some(digest) => ("update", digest),
                        None => return Ok(false),
                    },
                };
                (operation, "set", condition, value, Some(expiry))
            }
            FencedOp::Remove(version) => {
                let condition = match version.map(digest) {
                    Some(Some(digest)) => digest,
                    Some(None) => return Ok(false),
                    None => "",
                };
                ("remove", "remove", condition, Vec::new(), None)
            }
        };
        self.writing(self.forget_key(key), async {
            let cluster = self.conn.is_cluster();
            let mut invocation = if cluster {
                let mut invocation = FENCED_RECORD.key(key);
                invocation.key(fence_key(key, fence.prefix));
                invocation
            } else {
                let mut invocation = FENCED_CURRENT.key(key);
                invocation.key(fence.lease.key).key(token_key(fence.lease));
                invocation
            };
            invocation
                .arg(fence.token)
                .arg(kind)
                .arg(condition)
                .arg(value);
            match expiry {
                Some(expiry) => arg_expiry(&mut invocation, expiry),
                // A removal has none: its argument is left empty.
                None => {
                    invocation.arg("");
                }
            }
            invocation
                .arg(channel_arg(notify, self.db).as_str())
                .arg(fence.lease.key)
                .arg(millis(fence.ttl));
            // Not retried: a second run after a lost reply would find its own write.
            let written: i64 = self.run(operation, key, &invocation).await?;
            match written {
                -1 => Err(fence.lost()),
                written => Ok(written == 1),
            }
        })
        .await
    }
}

/// The SHA-1 a version of this backend is, if it is one.
fn digest(version: &Version) -> Option<&str> {
    version.as_text().filter(|text| is_digest(text))
}

fn channel_arg(notify: Notify<'_>, db: i64) -> String {
    notify.map_or_else(String::new, |channel| {
        wire_channel(channel, db).into_owned()
    })
}

/// `{p}#lease{T}:{id}`: the token of the lease's current holder.
fn token_key(lease: LeaseKey<'_>) -> String {
    format!(
        "{}#lease{{{}}}:{}",
        lease.prefix,
        tag(slot(lease.key.as_bytes())),
        lease.id()
    )
}

/// `{p}#tokens{T}`: the counter of the tokens of the lease keys in the lease key's slot.
fn counter_key(lease: LeaseKey<'_>) -> String {
    format!(
        "{}#tokens{{{}}}",
        lease.prefix,
        tag(slot(lease.key.as_bytes()))
    )
}

/// `{g}#fence{T}:{id}`: the newest token of each lease that wrote `key` (Cluster only).
fn fence_key(key: &str, prefix: &str) -> String {
    let id = key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(key);
    format!("{prefix}#fence{{{}}}:{id}", tag(slot(key.as_bytes())))
}

/// The hash slot of `key`, as Redis Cluster computes it: CRC16 (XMODEM) of its hash tag (the
/// part between the first `{` and the next `}`, when not empty) or of the whole key, modulo
/// 16,384.
pub(super) fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

const SLOTS: u16 = 16_384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), as Redis Cluster's key slots use it.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from(((crc >> 8) as u8) ^ byte)]
    })
}

static CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// A hash tag that lands in `slot`: the first string, in order of length then of the alphabet,
/// of ASCII letters and digits whose CRC16 does (every slot has one of at most three characters,
/// which a test checks).
fn tag(slot: u16) -> &'static str {
    static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut tags = vec![String::new(); usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        let mut candidate = Vec::with_capacity(4);
        'lengths: for length in 1..=4 {
            let mut digits = vec![0usize; length];
            loop {
                candidate.clear();
                candidate.extend(digits.iter().map(|&d| ALPHABET[d]));
                let slot = usize::from(crc16(&candidate) % SLOTS);
                if tags[slot].is_empty() {
                    tags[slot] = String::from_utf8(candidate.clone()).unwrap_or_default();
                    missing -= 1;
                    if missing == 0 {
                        break 'lengths;
                    }
                }
                // The next candidate of this length, or the next length.
                let mut place = length;
                loop {
                    if place == 0 {
                        continue 'lengths;
                    }
                    place -= 1;
                    digits[place] += 1;
                    if digits[place] < ALPHABET.len() {
                        break;
                    }
                    digits[place] = 0;
                }
            }
        }
        tags
    });
    &TAGS[usize::from(slot % SLOTS)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_computes() {
        // `CLUSTER KEYSLOT` on a real server.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"somekey"), 11058);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // An empty tag does not count; only the first pair of braces does.
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        #[cfg(feature = "cluster")]
        for key in ["job:1", "job:{x}", "job:}{", "a{b}c"] {
            assert_eq!(
                redis::cluster_routing::Slot::for_key(key),
                redis::cluster_routing::Slot::for_key(format!("{{{}}}", tag(slot(key.as_bytes())))),
                "{key}"
            );
        }
    }

    #[test]
    fn every_slot_has_a_short_tag_of_its_own() {
        for slot in 0..SLOTS {
            let tag = tag(slot);
            assert!((1..=3).contains(&tag.len()), "slot {slot}: {tag:?}");
            assert_eq!(super::slot(format!("x{{{tag}}}y").as_bytes()), slot);
        }
    }

    #[test]
    fn the_records_of_a_lease_share_its_slot_and_namespace() {
        for id in ["42", "a:b", "{x}", "}{", "*?[]"] {
            let key = format!("svc:job-lease:{id}");
            let lease = LeaseKey::new(&key, "svc:job-lease");
            for record in [
                token_key(lease),
                counter_key(lease),
                fence_key(&key, "svc:job-lease"),
            ] {
                assert_eq!(slot(record.as_bytes()), slot(key.as_bytes()), "{record}");
                assert!(record.starts_with("svc:job-lease#"), "{record}");
            }
        }
        let lease = LeaseKey::new("job-lease:7", "job-lease");
        assert_eq!(
            token_key(lease),
            format!("job-lease#lease{{{}}}:7", tag(slot(b"job-lease:7")))
        );
    }
}

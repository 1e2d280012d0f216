//! Section 10: the typed `Store` on NATS JetStream KV against the raw `async-nats` KV client
//! doing the same work (the same bucket, the same keys, the same serde_json work), on a
//! `nats-server -js` of its own (never the NATS on 4222).

use state_store::async_nats;
use state_store::async_nats::jetstream::kv::Store as Kv;
use state_store::{NatsBackend, Store};

use crate::Config;
use crate::common::{BATCH, POOL, Res, Session, pick, session};
use crate::stats::{Count, Series, Workload, measure, workload};
use crate::support::nats::NatsServer;
use crate::typed_vs_raw::{typed_get, typed_sets};

/// The pairs of section 10, typed first: get and set at 1 and at 64 tasks.
pub(crate) async fn nats_section(config: &Config) -> Res<(String, Vec<Vec<Series>>)> {
    let server = NatsServer::start();
    let store = Store::new(NatsBackend::connect(&server.url()).await?).enable_set();
    for start in (0..POOL).step_by(BATCH as usize) {
        let items: Vec<(u64, Session)> =
            (start..start + BATCH).map(|id| (id, session(id))).collect();
        store.set_many::<Session>(&items).await?;
    }
    // The raw side writes and reads the bucket the store uses, under the keys it uses: for a
    // `u64` id, the id in decimal, as a user of the raw client would write it.
    let (bucket, key) = store
        .backend()
        .location(&store.full_key::<Session>(7_u64)?)?;
    if key != "7" {
        return Err(format!("unexpected key mapping: {key:?} for id 7").into());
    }
    let client = async_nats::connect(server.url()).await?;
    let version = client.server_info().version;
    let kv = async_nats::jetstream::new(client)
        .get_key_value(bucket.as_str())
        .await?;

    let mut pairs = Vec::new();
    for tasks in [1, 64] {
        pairs.push(
            measure(
                config,
                vec![typed_get(&store, "nats", tasks), raw_get(&kv, tasks)],
            )
            .await?,
        );
        pairs.push(
            measure(
                config,
                vec![
                    typed_sets(&store, "nats", tasks, session),
                    raw_put(&kv, tasks),
                ],
            )
            .await?,
        );
    }
    Ok((version, pairs))
}

fn raw_get(kv: &Kv, tasks: usize) -> Workload {
    let kv = kv.clone();
    workload(
        format!("get  kv     {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let kv = kv.clone();
            async move {
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let bytes = kv.get(pick(t, i).to_string()).await?;
                    let session: Option<Session> =
                        bytes.map(|b| serde_json::from_slice(&b)).transpose()?;
                    std::hint::black_box(session.ok_or("a seeded session is missing")?);
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

fn raw_put(kv: &Kv, tasks: usize) -> Workload {
    let kv = kv.clone();
    workload(
        format!("set  kv     {tasks:>2} task(s)"),
        "ops",
        tasks,
        move |t, mut ticker| {
            let kv = kv.clone();
            async move {
                let value = session(t as u64);
                let mut n = 0;
                while let Some(i) = ticker.tick() {
                    let bytes = serde_json::to_vec(&value)?;
                    kv.put(pick(t, i).to_string(), bytes.into()).await?;
                    n += 1;
                }
                Ok(Count::units(n))
            }
        },
    )
}

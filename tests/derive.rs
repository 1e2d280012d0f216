//! What `#[derive(StateKey)]` generates, checked through the public API.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_store::{IdError, Key, KeyParts, StateId, StateKey};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
pub struct Session {
    pub cart: Vec<String>,
    pub updated_at: i64,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = (String, u32))]
struct Job {
    status: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "ratelimit", id = String, ttl = "1m", counter)]
pub struct ApiCalls(pub i64);

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "lock", id = u32, ttl = "1h30m")]
struct Lock;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "invite", id = u64, ttl = "7d")]
struct Invite;

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "otp", id = u64, ttl = 90)]
struct Otp(String);

#[derive(Debug, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "order.v2", id = u64)]
enum Order {
    Pending,
    Shipped { tracking: String },
}

// Split over two attributes, with a path-qualified integer as counter field.
#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "visits_per-day", id = (u16, u8, u8))]
#[state(counter)]
pub(crate) struct Visits(core::primitive::i64);

#[derive(Debug, Clone, PartialEq)]
pub struct UserId(u64);

impl StateId for UserId {
    fn write_key(&self, out: &mut String) {
        self.0.write_key(out)
    }
    fn read_key(parts: &mut KeyParts<'_>) -> Result<Self, IdError> {
        u64::read_key(parts).map(UserId)
    }
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "profile", id = UserId)]
struct Profile {
    name: String,
}

mod nested {
    use serde::{Deserialize, Serialize};
    use state_store::StateKey;

    /// `key` shares the type's visibility, so it is usable wherever the type is.
    #[derive(Serialize, Deserialize, StateKey)]
    #[state(prefix = "cart", id = u64)]
    pub(crate) struct Cart;
}

fn is_counter<C: state_store::Counter>() {}

#[test]
fn keys_join_prefix_and_id() {
    assert_eq!(Session::key(&42).to_string(), "session:42");
    assert_eq!(Session::key(&42), Key::<Session>::new(&42));
    assert_eq!(Job::key(&("a:b".to_string(), 7)).to_string(), "job:a%3Ab:7");
    assert_eq!(ApiCalls::key(&"k".to_string()).as_str(), "ratelimit:k");
    assert_eq!(Order::key(&3).to_string(), "order.v2:3");
    assert_eq!(
        Visits::key(&(2025, 1, 31)).to_string(),
        "visits_per-day:2025:1:31"
    );
    assert_eq!(Profile::key(&UserId(7)).to_string(), "profile:7");
    assert_eq!(nested::Cart::key(&1).to_string(), "cart:1");
}

#[test]
fn constants() {
    assert_eq!(<Session as StateKey>::PREFIX, "session");
    assert_eq!(<Order as StateKey>::PREFIX, "order.v2");
    assert_eq!(
        <Session as StateKey>::TTL,
        Some(Duration::from_secs(30 * 60))
    );
    assert_eq!(<Lock as StateKey>::TTL, Some(Duration::from_secs(90 * 60)));
    assert_eq!(
        <Invite as StateKey>::TTL,
        Some(Duration::from_secs(7 * 86_400))
    );
    assert_eq!(<Otp as StateKey>::TTL, Some(Duration::from_secs(90)));
    assert_eq!(<ApiCalls as StateKey>::TTL, Some(Duration::from_secs(60)));
    assert_eq!(<Job as StateKey>::TTL, None);
    assert_eq!(<Profile as StateKey>::TTL, None);
}

#[test]
fn counters() {
    is_counter::<ApiCalls>();
    is_counter::<Visits>();
}

#[test]
fn id_types() {
    fn id_of<S: StateKey>(id: S::Id) -> S::Id {
        id
    }
    assert_eq!(id_of::<Profile>(UserId(1)), UserId(1));
    assert_eq!(id_of::<Job>(("a".into(), 1)), ("a".to_string(), 1));
    assert_eq!(id_of::<Order>(5u64), 5);
}

#[test]
fn values_still_serialize() {
    // The derive must not change how the value itself is (de)serialized.
    let value = Order::Shipped {
        tracking: "T1".into(),
    };
    let json = serde_json::to_string(&value).unwrap();
    assert_eq!(serde_json::from_str::<Order>(&json).unwrap(), value);
    assert_eq!(serde_json::to_string(&ApiCalls(3)).unwrap(), "3");
}

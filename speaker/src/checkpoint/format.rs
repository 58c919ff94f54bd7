//! The checkpoint file's format and the decision whether a checkpoint may be used: pure,
//! no I/O (bytes and times in, a verdict out).
//!
//! A checkpoint is one header line and a JSON body:
//!
//! ```text
//! HERALD-SPEAKER-CHECKPOINT 1 node=<node> confirmed=<unix seconds> fnv=<16 hex digits>
//! {"services":[...],"endpoint_slices":[...],...}
//! ```
//!
//! - the version (`1`) changes whenever the body's meaning changes; a checkpoint of any
//!   other version, older or newer, is refused (no migration: a refused checkpoint only
//!   costs what the speaker did before checkpoints existed);
//! - `confirmed` is the last moment the speaker knew this state to be current: the pass's
//!   time while the API server answered, or the beginning of the outage when it did not;
//!   the maximum age counts from it;
//! - `fnv` is FNV-1a (64 bit) over the body, the node name and `confirmed`, so a torn,
//!   truncated or edited file is refused rather than half-believed.
//!
//! The body is the speaker's [`Snapshot`] without the memberlist Secret: the watched
//! objects, as the watches delivered them (no Secret is ever written). A restored speaker
//! plans from [`for_resume`] of it exactly as from live watches, so it can announce only
//! addresses written in the checkpoint's Services.

use std::time::Duration;

use herald_crds::api::{
    BFDProfile, BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement,
};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::{Deserialize, Serialize};

use crate::runtime::watches::Snapshot;

/// The format this speaker writes and the only one it reads.
pub const VERSION: u32 = 1;
/// First word of the header line.
const MAGIC: &str = "HERALD-SPEAKER-CHECKPOINT";
/// A checkpoint confirmed this far in the future is refused (the clock went back, or the
/// file is not what it says).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Why a checkpoint is not used; each is logged once and counted
/// (`herald_speaker_checkpoint_refused{reason}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The file cannot be parsed or its checksum does not match.
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    /// Written by an older speaker.
    #[error("checkpoint format {found} is older than this speaker's {VERSION}")]
    OldVersion { found: u32 },
    /// Written by a newer speaker (a downgrade).
    #[error("checkpoint format {found} is newer than this speaker's {VERSION}")]
    FutureVersion { found: u32 },
    /// Written for another node.
    #[error("checkpoint of node {found:?}, not of this node")]
    OtherNode { found: String },
    /// Older than the maximum age.
    #[error("checkpoint confirmed {age_secs} s ago, over the maximum age of {max_age_secs} s")]
    TooOld { age_secs: u64, max_age_secs: u64 },
    /// Confirmed in the future.
    #[error("checkpoint confirmed {ahead_secs} s in the future (clock moved back?)")]
    FromTheFuture { ahead_secs: u64 },
    /// The file exists but cannot be read.
    #[error("checkpoint unreadable: {0}")]
    Unreadable(String),
}

impl Refusal {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Corrupt(_) => "corrupt",
            Self::OldVersion { .. } => "old_version",
            Self::FutureVersion { .. } => "future_version",
            Self::OtherNode { .. } => "other_node",
            Self::TooOld { .. } => "too_old",
            Self::FromTheFuture { .. } => "from_the_future",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// The body, borrowed for writing.
#[derive(Serialize)]
struct BodyRef<'a> {
    services: &'a [Service],
    endpoint_slices: &'a [EndpointSlice],
    nodes: &'a [Node],
    pools: &'a [IPAddressPool],
    l2_advertisements: &'a [L2Advertisement],
    bgp_advertisements: &'a [BGPAdvertisement],
    peers: &'a [BGPPeer],
    communities: &'a [Community],
    bfd_profiles: &'a [BFDProfile],
}

/// The body, owned for reading. Every field must be present: a body of another shape is
/// corrupt, not "empty" (an empty list would withdraw what it stands for).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    services: Vec<Service>,
    endpoint_slices: Vec<EndpointSlice>,
    nodes: Vec<Node>,
    pools: Vec<IPAddressPool>,
    l2_advertisements: Vec<L2Advertisement>,
    bgp_advertisements: Vec<BGPAdvertisement>,
    peers: Vec<BGPPeer>,
    communities: Vec<Community>,
    bfd_profiles: Vec<BFDProfile>,
}

/// The body of a snapshot, as bytes; compare two to know whether the state changed.
pub fn encode_body(snapshot: &Snapshot) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&BodyRef {
        services: &snapshot.services,
        endpoint_slices: &snapshot.endpoint_slices,
        nodes: &snapshot.nodes,
        pools: &snapshot.pools,
        l2_advertisements: &snapshot.l2_advertisements,
        bgp_advertisements: &snapshot.bgp_advertisements,
        peers: &snapshot.peers,
        communities: &snapshot.communities,
        bfd_profiles: &snapshot.bfd_profiles,
    })
    .map_err(|error| error.to_string())
}

/// FNV-1a, 64 bit, continued from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

fn checksum(node: &str, confirmed: u64, body: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let hash = fnv1a(OFFSET, body);
    let hash = fnv1a(hash, node.as_bytes());
    fnv1a(hash, &confirmed.to_le_bytes())
}

/// The whole file: header line and `body` (from [`encode_body`]).
pub fn encode(node: &str, confirmed: u64, body: &[u8]) -> Vec<u8> {
    let header = header(node, confirmed, checksum(node, confirmed, body));
    let mut file = Vec::with_capacity(header.len() + body.len());
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(body);
    file
}

fn header(node: &str, confirmed: u64, sum: u64) -> String {
    format!("{MAGIC} {VERSION} node={node} confirmed={confirmed} fnv={sum:016x}\n")
}

/// A checkpoint read back.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub node: String,
    /// Unix seconds.
    pub confirmed: u64,
    pub snapshot: Snapshot,
}

/// Parses a file written by [`encode`].
pub fn decode(file: &[u8]) -> Result<Checkpoint, Refusal> {
    let corrupt = |what: &str| Refusal::Corrupt(what.to_string());
    let newline = file
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no header line"))?;
    let header = std::str::from_utf8(&file[..newline]).map_err(|_| corrupt("header not UTF-8"))?;
    let body = &file[newline + 1..];
    let mut words = header.split(' ');
    if words.next() != Some(MAGIC) {
        return Err(corrupt("not a Herald speaker checkpoint"));
    }
    let version: u32 = words
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("no version"))?;
    if version > VERSION {
        return Err(Refusal::FutureVersion { found: version });
    }
    if version < VERSION {
        return Err(Refusal::OldVersion { found: version });
    }
    let mut field = |name: &str| {
        words
            .next()
            .and_then(|word| word.strip_prefix(name))
            .and_then(|word| word.strip_prefix('='))
            .map(str::to_string)
            .ok_or_else(|| corrupt(&format!("no {name} in the header")))
    };
    let node = field("node")?;
    let confirmed: u64 = field("confirmed")?
        .parse()
        .map_err(|_| corrupt("confirmed is not a number"))?;
    let sum = u64::from_str_radix(&field("fnv")?, 16).map_err(|_| corrupt("fnv is not hex"))?;
    // Only the exact header this speaker writes: no "+5", no upper-case hex, no extra word.
    if format!("{header}\n") != self::header(&node, confirmed, sum) {
        return Err(corrupt("header not as written"));
    }
    if sum != checksum(&node, confirmed, body) {
        return Err(corrupt("checksum mismatch (torn or edited file)"));
    }
    let body: Body =
        serde_json::from_slice(body).map_err(|error| Refusal::Corrupt(format!("body: {error}")))?;
    Ok(Checkpoint {
        node,
        confirmed,
        snapshot: Snapshot {
            services: body.services,
            endpoint_slices: body.endpoint_slices,
            nodes: body.nodes,
            pools: body.pools,
            l2_advertisements: body.l2_advertisements,
            bgp_advertisements: body.bgp_advertisements,
            peers: body.peers,
            communities: body.communities,
            bfd_profiles: body.bfd_profiles,
            // No Secret is ever written.
            memberlist_secret: None,
        },
    })
}

/// Whether a decoded checkpoint may be resumed from on `node` at `now` (Unix seconds).
pub fn usable(
    checkpoint: Checkpoint,
    node: &str,
    now: u64,
    max_age: Duration,
) -> Result<Checkpoint, Refusal> {
    if checkpoint.node != node {
        return Err(Refusal::OtherNode {
            found: checkpoint.node,
        });
    }
    if checkpoint.confirmed > now.saturating_add(CLOCK_SKEW.as_secs()) {
        return Err(Refusal::FromTheFuture {
            ahead_secs: checkpoint.confirmed - now,
        });
    }
    let age = now.saturating_sub(checkpoint.confirmed);
    if age > max_age.as_secs() {
        return Err(Refusal::TooOld {
            age_secs: age,
            max_age_secs: max_age.as_secs(),
        });
    }
    Ok(checkpoint)
}

/// The moment a pass's state is known to be current: now while the API server answers,
/// else the beginning of the outage (the watches have been silent since).
pub fn confirmed_at(now: u64, stale_since: Option<u64>) -> u64 {
    stale_since.map_or(now, |since| since.min(now))
}

/// What was last written, to decide whether to write again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// FNV-1a of the body.
    pub body_hash: u64,
    pub confirmed: u64,
}

impl Written {
    pub fn of(body: &[u8], confirmed: u64) -> Self {
        Self {
            body_hash: fnv1a(0xcbf2_9ce4_8422_2325, body),
            confirmed,
        }
    }
}

/// Whether to write: always when the state changed; when only the confirmation moved,
/// once it moved `refresh` past the file's (so an unchanged cluster costs one small write
/// per `refresh`, and the file is never older than `refresh` plus the outage).
pub fn write_due(last: Option<Written>, next: Written, refresh: Duration) -> bool {
    match last {
        None => true,
        Some(last) => {
            last.body_hash != next.body_hash
                || next.confirmed >= last.confirmed.saturating_add(refresh.as_secs())
        }
    }
}

/// How often an unchanged state's confirmation is written: a quarter of the maximum age,
/// at least 10 s and at most 60 s.
pub fn refresh_interval(max_age: Duration) -> Duration {
    (max_age / 4).clamp(Duration::from_secs(10), Duration::from_secs(60))
}

/// What a resumed speaker plans from: the checkpoint without layer 2. A resumed speaker
/// does not take part in layer 2 until the API answers: its layer-2 engine resumes an
/// address only after reading the current-announcer records (Service annotations, from
/// the API), and a speaker that joined membership meanwhile would make the nodes still
/// announcing give the address way to it, leaving nobody announcing (seen in
/// `chaos_checkpoint.rs`). So the L2Advertisements are left out (no layer-2 plan) and the
/// runtime keeps membership stopped; BGP and forwarding resume.
pub fn for_resume(mut snapshot: Snapshot) -> Snapshot {
    snapshot.l2_advertisements.clear();
    snapshot.memberlist_secret = None;
    snapshot
}

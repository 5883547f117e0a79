//! etcd v3 driver for [gosd](https://docs.rs/gosd).
//!
//! # Data model
//! | key | lease | content |
//! |---|---|---|
//! | `<prefix>/<service>/<id>` | the instance's own | the instance's URL |
//! | `<prefix>:gone/<service>/<id>` | the deregistered instance's | a tombstone: the URL |
//! | `<prefix>:generation` | none | the generation: a number made when this registry's state began |
//! | `<prefix>:changed` | none | empty; rewritten by every change this driver makes |
//!
//! The prefix is `/gosd` by default. An instance `order-api-20261121.1`
//! lives at `/gosd/order-api/20261121.1`; the field gosd sees is the key
//! after the prefix with its last `/` turned back into `-`.
//!
//! # How the contract maps onto etcd
//! - **Leases.** Each instance gets an etcd lease of its TTL (etcd counts
//!   whole seconds, so a TTL is rounded *up* to the next second, and etcd's
//!   own minimum applies) and its key is attached to it. A renewal is one
//!   keep-alive plus one transaction that checks the key still holds our
//!   URL on our lease. etcd deletes the keys of an expired lease itself and
//!   the watch pushes the removal, so snapshots report no
//!   [`next_expiry`](gosd_driver::Snapshot::next_expiry): nothing needs a
//!   client to come back at a lease's end.
//! - **Unique names.** Registration is a transaction that writes the key only
//!   if it was never created (`create_revision == 0`).
//! - **Deregistration** deletes the key and, in the same transaction, writes
//!   a tombstone on the *same lease*, so a renewal in flight sees the
//!   tombstone and answers [`Renewal::Gone`](gosd_driver::Renewal::Gone) until the lease would have run
//!   out, at which point etcd removes the tombstone too.
//! - **Revision.** The version's revision is etcd's own store revision. A
//!   fetch is unchanged when etcd's revision has not moved at all (one
//!   point read), or, when it moved for other keys, when `<prefix>:changed`
//!   was not rewritten after the revision the caller knows and the entry
//!   count is the same (a second request: a point read and a count). The
//!   table is never shipped or sorted for this (asking etcd for the newest
//!   mod revision under the prefix would sort the whole range: 3.6 ms at 8k
//!   entries). The count catches what the driver does not write itself,
//!   leases that etcd expired; an entry rewritten by hand with `etcdctl`
//!   that keeps the count shows at the next change. Because the store
//!   revision also moves for keys outside the registry, each pushed event
//!   names the revision it follows (`since`): the previous change under the
//!   prefix, which etcd's ordered, gap-free watch stream vouches for.
//! - **Generation.** `<prefix>:generation` holds a number made from the
//!   clock and the process when the key is first created (compare-and-set,
//!   so one writer wins). An etcd that restarts empty has no such key, and
//!   the next read makes a new one, so clients tell "the registry forgot
//!   everyone" from "everyone left". A *restore from an older backup* brings
//!   the old key back, so each driver also remembers the highest revision
//!   it has seen: when etcd answers with a lower one under the same
//!   generation, the driver writes a new generation. That catches a restore
//!   as long as some gosd process talks to etcd before the revision climbs
//!   back past where it was.
//!
//! # Connections
//! - One gRPC channel per member, opened on first use, so constructing a
//!   driver never blocks or fails on a down server. Requests and connecting
//!   are bounded by timeouts (2 s), and HTTP/2 pings detect a dead
//!   connection under a watch.
//! - The driver talks to one member at a time (the first endpoint, at
//!   first) and moves to the next after a request fails for a transport
//!   reason (logged once per move). A member that stops answering without
//!   closing its connections (frozen, partitioned) so costs one timeout,
//!   not a share of every heartbeat: with a channel balanced over all
//!   members, a frozen leader made both providers of the 3-member test
//!   lose their leases.
//! - Deregistration opens a channel of its own: it runs at shutdown,
//!   possibly on a fresh runtime while the one that drove the shared
//!   channel is blocked.
//! - [`EtcdOptions`] say where the cluster is and under which prefix the
//!   registry lives; they are checked when they are made, so
//!   `EtcdDriver::new` cannot fail.
//! - Plain `http://` endpoints only: TLS and etcd's user authentication are
//!   not supported yet, and are refused with a clear error.

//!
//! # Features
//! - `client` (default): `EtcdDriver`, with etcd-client and its gRPC
//!   stack (which needs `protoc` to build). Without it only
//!   [`EtcdOptions`] remain, so a program can check etcd settings without
//!   compiling an etcd client: gosd does, to validate `GOSD_ETCD_ENDPOINTS`
//!   in builds without etcd support.

#![warn(missing_docs)]

mod options;

pub use options::EtcdOptions;

#[cfg(feature = "client")]
mod driver;

#[cfg(feature = "client")]
pub use driver::EtcdDriver;

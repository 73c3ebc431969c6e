//! Who may connect: the accept policy on a dialer's identity.
//!
//! The endpoint asks the policy once per inbound stream, as soon as message
//! 3 of the handshake has authenticated the dialer's identity, and before
//! anything about that peer exists here (no engine, no session, no stream
//! slot in a peer's table). A refused stream ends with
//! [`StreamCloseReason::NotAllowed`](crate::StreamCloseReason::NotAllowed);
//! the node keeps no trace of the peer beyond that event.
//!
//! Streams this node dials are not asked about: dialing a peer is trusting
//! it. Replacing the policy affects handshakes that complete afterwards;
//! established streams stay (close them to cut a peer off).

use std::collections::BTreeSet;
use std::fmt;

use crate::{NodeId, Source};

/// Decides whether an authenticated dialer may use this node.
///
/// Any `Fn(&NodeId, Option<&Source>) -> bool` is a policy:
///
/// ```
/// use std::sync::Arc;
/// use astral_core::{AcceptPolicy, Identity, NodeId, Source};
/// let friend = Identity::from_seed([1; 32]).node_id();
/// let policy: Arc<dyn AcceptPolicy> =
///     Arc::new(move |peer: &NodeId, _from: Option<&Source>| *peer == friend);
/// assert!(policy.allow(&friend, None));
/// assert!(!policy.allow(&Identity::from_seed([2; 32]).node_id(), None));
/// ```
pub trait AcceptPolicy: Send + Sync {
    /// Whether `peer`, dialing from `source` (if the driver knows it), may
    /// connect. Called once per inbound stream; keep it quick (it runs
    /// inside the endpoint, like a handshake step).
    fn allow(&self, peer: &NodeId, source: Option<&Source>) -> bool;
}

impl<F> AcceptPolicy for F
where
    F: Fn(&NodeId, Option<&Source>) -> bool + Send + Sync,
{
    fn allow(&self, peer: &NodeId, source: Option<&Source>) -> bool {
        self(peer, source)
    }
}

/// A fixed set of identities that may connect (like OpenSSH's
/// `authorized_keys`); everyone else is refused.
///
/// ```
/// use astral_core::{AcceptPolicy, AllowList, Identity};
/// let a = Identity::from_seed([1; 32]).node_id();
/// let b = Identity::from_seed([2; 32]).node_id();
/// let list: AllowList = [a].into_iter().collect();
/// assert!(list.allow(&a, None));
/// assert!(!list.allow(&b, None));
/// assert_eq!(list.len(), 1);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    ids: BTreeSet<NodeId>,
}

impl AllowList {
    /// An empty list (it refuses everyone).
    pub fn new() -> AllowList {
        AllowList::default()
    }

    /// Adds an identity; returns false if it was there already.
    pub fn insert(&mut self, id: NodeId) -> bool {
        self.ids.insert(id)
    }

    /// Whether `id` is on the list.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.ids.contains(id)
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The identities, in order.
    pub fn iter(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.ids.iter()
    }
}

impl FromIterator<NodeId> for AllowList {
    fn from_iter<I: IntoIterator<Item = NodeId>>(iter: I) -> Self {
        AllowList {
            ids: iter.into_iter().collect(),
        }
    }
}

impl fmt::Debug for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.ids.iter().map(|i| i.short()))
            .finish()
    }
}

impl AcceptPolicy for AllowList {
    fn allow(&self, peer: &NodeId, _source: Option<&Source>) -> bool {
        self.contains(peer)
    }
}

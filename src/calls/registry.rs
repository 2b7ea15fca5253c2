//! The registry of live calls: which calls are streaming on this node, per tenant, for the API
//! and for a graceful shutdown that lets them finish. An entry lives as long as its
//! [`LiveCallGuard`], so a call leaves the registry however its handler ends. It also knows the
//! node (this process, in the node registry) its calls are streamed by.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;

use crate::domain::{AgentId, CallId, NodeId, TenantId};

#[derive(Debug, Clone, Copy)]
pub struct LiveCall {
    pub tenant: TenantId,
    pub agent: AgentId,
    pub started: Instant,
}

#[derive(Default)]
pub struct LiveCalls {
    // Short critical sections only (insert, remove, count); never held across an await.
    calls: Mutex<HashMap<CallId, LiveCall>>,
    /// Woken whenever a call leaves, for the shutdown drain.
    left: Notify,
    /// This process in the node registry, once registered at start-up.
    node: OnceLock<(NodeId, String)>,
}

/// Removes its call from the registry when dropped.
pub struct LiveCallGuard {
    registry: Arc<LiveCalls>,
    call: CallId,
}

impl Drop for LiveCallGuard {
    fn drop(&mut self) {
        self.registry
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.call);
        self.registry.left.notify_waiters();
    }
}

impl LiveCalls {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a call as live until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, call: CallId, live: LiveCall) -> LiveCallGuard {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call, live);
        LiveCallGuard {
            registry: Arc::clone(self),
            call,
        }
    }

    /// Names the node these calls are streamed by (once, at start-up).
    pub fn set_node(&self, node: NodeId, name: String) {
        let _ = self.node.set((node, name));
    }

    /// The node these calls are streamed by; `None` before it registered.
    pub fn node(&self) -> Option<NodeId> {
        self.node.get().map(|(id, _)| *id)
    }

    /// The node's name in the registry (empty before it registered).
    pub fn node_name(&self) -> &str {
        self.node.get().map_or("", |(_, name)| name.as_str())
    }

    /// The live calls' ids.
    pub fn ids(&self) -> Vec<CallId> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    pub fn get(&self, call: CallId) -> Option<LiveCall> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&call)
            .copied()
    }

    pub fn count(&self) -> usize {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn count_for_tenant(&self, tenant: TenantId) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|c| c.tenant == tenant)
            .count()
    }

    pub fn count_for_agent(&self, agent: AgentId) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|c| c.agent == agent)
            .count()
    }

    /// Waits until no call is live, or `timeout` passes; returns how many are still live.
    pub async fn drain(&self, timeout: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = self.left.notified();
            if self.count() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, left).await.is_err() {
                return self.count();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(tenant: i64) -> LiveCall {
        LiveCall {
            tenant: TenantId(tenant),
            agent: AgentId(1),
            started: Instant::now(),
        }
    }

    #[tokio::test]
    async fn calls_leave_when_their_guard_drops_and_drain_waits_for_them() {
        let registry = LiveCalls::new();
        let a = registry.register(CallId(1), live(1));
        let b = registry.register(CallId(2), live(2));
        assert_eq!(registry.count(), 2);
        assert_eq!(registry.count_for_tenant(TenantId(1)), 1);
        assert_eq!(registry.count_for_agent(AgentId(1)), 2);
        assert!(registry.get(CallId(2)).is_some());
        let mut ids = registry.ids();
        ids.sort();
        assert_eq!(ids, [CallId(1), CallId(2)]);
        assert_eq!(registry.node(), None);
        registry.set_node(NodeId(7), "host/127.0.0.1:1".into());
        assert_eq!(registry.node(), Some(NodeId(7)));
        assert_eq!(registry.node_name(), "host/127.0.0.1:1");
        drop(a);
        assert_eq!(registry.count(), 1);

        let waiter = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move { registry.drain(std::time::Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        drop(b);
        assert_eq!(waiter.await.unwrap(), 0);
        let c = registry.register(CallId(3), live(1));
        assert_eq!(
            registry.drain(std::time::Duration::from_millis(20)).await,
            1,
            "times out"
        );
        drop(c);
    }
}

//! What runs now: the hooks the daemon runs (the config's and those registered through
//! the API), their workers' wake-ups, and the chains — published by the daemon after
//! every reconcile, read by the API, the relay and `events` (a relayed message is
//! planned against it). It sits below `events`, so arrows only run down.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::HookConfig;

/// The hooks the daemon runs now (config and runtime ones), and their workers'
/// wake-ups.
#[derive(Clone, Default)]
pub struct HookView {
    pub hooks: Arc<Vec<HookConfig>>,
    /// Names of the hooks that come from the config file.
    pub config_hooks: Arc<Vec<String>>,
    pub wakes: Arc<BTreeMap<String, Arc<Notify>>>,
    /// The chains (a relay starts them for relayed deployments too).
    pub chains: Arc<Vec<crate::config::ChainConfig>>,
    /// `public_url`, the base of chain callback URLs.
    pub callback_base: Option<String>,
    /// `daemon.host_name` (operational events say which host's hook it is).
    pub host_name: String,
}

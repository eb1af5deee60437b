//! What each MicroK8s channel does, in one place: the first-boot scripts
//! read these values (as `cluster.microk8s.caps`) instead of testing version
//! numbers themselves. Every field names the upstream source it comes from
//! (MicroK8s and microk8s-cluster-agent branches; see
//! the team's field-facts notes, "Verified in upstream source").

use serde::Serialize;

/// Where the master's `microseed-fingerprint.socket` answers workers with
/// its certificate's fingerprint, authenticated with the join token; the
/// master role's firewall rule opens the same port to the subnet.
pub const FINGERPRINT_PORT: u16 = 25001;

/// How the master's cluster agent decides whether a join token is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenCheck {
    /// 1.20-1.23, the Python agent: any unexpired line holding the token.
    EveryLine,
    /// 1.24-1.26, the Go agent's `IsValidToken` (`pkg/util/token.go`):
    /// the first line holding the token decides, even if it has expired.
    FirstMatch,
    /// 1.27+: `persistent-cluster-tokens.txt` first, then as `FirstMatch`.
    PersistentFirst,
}

/// How a node tells that it has joined the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JoinedCheck {
    /// Every joiner is a control-plane node (no `--worker`): `microk8s
    /// status` lists the master among the datastore nodes.
    DatastoreList,
    /// A `--worker` node holds `var/lock/clustered.lock` (`mark_worker_node`
    /// in `join.py`); `microk8s status` then exits 1 and lists nothing.
    ClusterLock,
}

/// One channel's behaviour, as the scripts need it.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    pub token_check: TokenCheck,
    /// `microk8s join --worker` exists (1.23+).
    pub worker_flag: bool,
    pub joined_check: JoinedCheck,
    /// `status --wait-ready --timeout N` exits 1 when not ready (1.28+,
    /// commit 70f8ca1c); before, it exits 0 either way and only the output
    /// says "is running".
    pub wait_ready_exit_code: bool,
    /// Never-expiring tokens from the launch configuration (1.27+).
    pub persistent_token: bool,
    /// The join string's optional fingerprint part (`IP:PORT/TOKEN/FP`):
    /// `join_request` in `join.py` compares the SHA-256 of the certificate
    /// the agent presents with FP before it posts the token (1.21+; 1.20's
    /// `join_dqlite` ignores a third part and never verifies).
    pub join_fingerprint: bool,
    /// A control-plane join hands the joiner the cluster CA key (every
    /// channel without `--worker`).
    pub join_returns_ca_key: bool,
    /// The master must resolve the joiner's hostname to its address
    /// (1.24-1.27, cluster agent `v2/join.go`; conditional from 1.28).
    pub joiner_name_must_resolve: bool,
    /// The join address must be a literal IP (1.29+).
    pub join_needs_ip: bool,
    /// A `--worker` node's API proxy (traefik) keeps the control-plane
    /// addresses it got at join time and never refreshes them (1.23-1.24;
    /// from 1.25 the apiserver-proxy refreshes them from the `kubernetes`
    /// endpoints every 30 s, agent `cmd/apiserver-proxy.go`): with several
    /// masters such a worker joins only once every master has joined.
    pub worker_proxy_list_fixed: bool,
    /// Add-on names: `dns` and `helm3` on 1.20 and in core add-ons
    /// 1.27/1.28/1.31; on 1.20 `helm3` downloads helm from the internet.
    pub dns_addon: &'static str,
    pub helm_addon: &'static str,
    pub helm_downloads: bool,
}

impl Capabilities {
    /// The behaviour of a track; `latest` is (u32::MAX, u32::MAX).
    pub fn for_version(v: (u32, u32)) -> Capabilities {
        let at_least = |minor: u32| v >= (1, minor);
        Capabilities {
            token_check: if at_least(27) {
                TokenCheck::PersistentFirst
            } else if at_least(24) {
                TokenCheck::FirstMatch
            } else {
                TokenCheck::EveryLine
            },
            worker_flag: at_least(23),
            joined_check: if at_least(23) {
                JoinedCheck::ClusterLock
            } else {
                JoinedCheck::DatastoreList
            },
            wait_ready_exit_code: at_least(28),
            persistent_token: at_least(27),
            join_fingerprint: at_least(21),
            join_returns_ca_key: !at_least(23),
            joiner_name_must_resolve: at_least(24) && !at_least(28),
            join_needs_ip: at_least(29),
            worker_proxy_list_fixed: at_least(23) && !at_least(25),
            dns_addon: "dns",
            helm_addon: "helm3",
            helm_downloads: !at_least(21),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_validation_follows_the_agent_of_each_channel() {
        assert_eq!(
            Capabilities::for_version((1, 20)).token_check,
            TokenCheck::EveryLine
        );
        assert_eq!(
            Capabilities::for_version((1, 23)).token_check,
            TokenCheck::EveryLine
        );
        assert_eq!(
            Capabilities::for_version((1, 24)).token_check,
            TokenCheck::FirstMatch
        );
        assert_eq!(
            Capabilities::for_version((1, 26)).token_check,
            TokenCheck::FirstMatch
        );
        assert_eq!(
            Capabilities::for_version((1, 27)).token_check,
            TokenCheck::PersistentFirst
        );
        assert_eq!(
            Capabilities::for_version((u32::MAX, u32::MAX)).token_check,
            TokenCheck::PersistentFirst
        );
    }

    #[test]
    fn workers_are_joined_by_the_cluster_lock_from_1_23() {
        assert!(!Capabilities::for_version((1, 20)).join_fingerprint);
        let old = Capabilities::for_version((1, 22));
        assert!(!old.worker_flag && old.join_returns_ca_key && old.join_fingerprint);
        assert_eq!(old.joined_check, JoinedCheck::DatastoreList);
        let new = Capabilities::for_version((1, 23));
        assert!(new.worker_flag && !new.join_returns_ca_key && new.join_fingerprint);
        assert_eq!(new.joined_check, JoinedCheck::ClusterLock);
        assert!(!Capabilities::for_version((1, 27)).wait_ready_exit_code);
        assert!(Capabilities::for_version((1, 28)).wait_ready_exit_code);
    }

    #[test]
    fn only_1_23_and_1_24_workers_keep_the_control_plane_list_from_join_time() {
        let fixed = |minor| Capabilities::for_version((1, minor)).worker_proxy_list_fixed;
        assert!(!fixed(22) && fixed(23) && fixed(24) && !fixed(25));
    }
}

//! The BGP peers' password Secrets, cached from watches: last-known-good, never re-read.
//!
//! Each Secret a BGPPeer's `passwordSecret` names is watched by name (a list and watch with
//! the field selector `metadata.name=<name>`, which the API server authorizes against the
//! chart Role's `resourceNames`, so the speaker still reads no other Secret). A password is
//! looked up in the watch's store: a timeout, a 5xx or a dropped watch leaves the store as it
//! was, so an unreachable API server never changes a password nor takes one away. Only an
//! observed change does (the Secret edited or deleted). Before this, every full resync read
//! the Secret with a GET, and a GET that timed out while the API server was down closed the
//! Established session (issue 11).
//!
//! The first lookup of a Secret waits (bounded) for its watch's first list; a watch that has
//! not listed yet answers at once with its last error, so a held-back peer's retries never
//! stall the executor. [`password_from`] (reading the key out of a Secret) is pure; the
//! watches are the I/O edge.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::model::SecretKeyRef;
use crate::task::TaskHandle;

/// How long the first lookup of a Secret waits for its watch's first list.
pub const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Secret, by namespace and name.
type SecretName = (String, String);

/// The last error of one watch, as a sentence for the peer's status; `None` after a success.
type LastError = Arc<Mutex<Option<String>>>;

struct SecretWatch {
    store: Store<Secret>,
    last_error: LastError,
    _task: TaskHandle,
}

/// The watched password Secrets; the watches stop when this is dropped.
pub struct SecretWatches {
    client: Client,
    watches: Mutex<BTreeMap<SecretName, Arc<SecretWatch>>>,
}

impl std::fmt::Debug for SecretWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretWatches").finish_non_exhaustive()
    }
}

impl SecretWatches {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            watches: Mutex::new(BTreeMap::new()),
        }
    }

    /// The password `secret` points at, from the watch's last-known state; or a sentence
    /// saying why it cannot be had.
    pub async fn password(&self, secret: &SecretKeyRef) -> Result<String, String> {
        let what = format!("Secret {}/{}", secret.namespace, secret.name);
        let (watch, new) = self.watch(secret);
        let listed = is_listed(&watch.store)
            || (new
                && tokio::time::timeout(FIRST_LIST_TIMEOUT, watch.store.wait_until_ready())
                    .await
                    .is_ok_and(|r| r.is_ok()));
        if !listed {
            let error = watch.last_error.lock().ok().and_then(|e| e.clone());
            return Err(match error {
                Some(error) => format!("reading {what}: {error}"),
                None => format!("reading {what}: not listed yet (is the API server reachable?)"),
            });
        }
        let found = watch
            .store
            .state()
            .into_iter()
            .find(|s| s.name_any() == secret.name);
        match found {
            None => Err(format!("{what} not found")),
            Some(object) => password_from(&object, &secret.key, &what),
        }
    }

    /// Stops the watches of Secrets no longer named by any peer.
    pub fn retain(&self, named: &BTreeSet<&SecretKeyRef>) {
        let keep: BTreeSet<SecretName> = named
            .iter()
            .map(|s| (s.namespace.clone(), s.name.clone()))
            .collect();
        if let Ok(mut watches) = self.watches.lock() {
            watches.retain(|name, _| keep.contains(name));
        }
    }

    /// The watch of `secret`, started if there is none; and whether it was just started.
    fn watch(&self, secret: &SecretKeyRef) -> (Arc<SecretWatch>, bool) {
        let name = (secret.namespace.clone(), secret.name.clone());
        let mut watches = match self.watches.lock() {
            Ok(watches) => watches,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(watch) = watches.get(&name) {
            return (Arc::clone(watch), false);
        }
        let watch = Arc::new(start_watch(self.client.clone(), &name));
        watches.insert(name, Arc::clone(&watch));
        (watch, true)
    }
}

/// Whether a store has completed its first list, without waiting.
fn is_listed(store: &Store<Secret>) -> bool {
    // `wait_until_ready` resolves at once when ready; polling it once tells.
    futures::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|r| r.is_ok())
}

fn start_watch(client: Client, (namespace, name): &SecretName) -> SecretWatch {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let (store, writer) = reflector::store::<Secret>();
    let last_error: LastError = Arc::new(Mutex::new(None));
    let errors = Arc::clone(&last_error);
    let stream = watcher(
        api,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .reflect(writer);
    let what = format!("{namespace}/{name}");
    let task = TaskHandle::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failures: u64 = 0;
        while let Some(event) = stream.next().await {
            let error = match event {
                Ok(_) => None,
                Err(error) => Some(describe(&error)),
            };
            if let Some(error) = &error {
                failures += 1;
                // The back-off retries forever; log the 1st, 2nd, 4th, ... failure.
                if failures.is_power_of_two() {
                    tracing::warn!(secret = %what, failures, %error, "password Secret watch failed; keeping its last-known state and retrying");
                }
            }
            if let Ok(mut last) = errors.lock() {
                *last = error;
            }
        }
    });
    SecretWatch {
        store,
        last_error,
        _task: task,
    }
}

/// A watch error as the peer's status shows it: a refusal names the chart value to set.
fn describe(error: &watcher::Error) -> String {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status.code),
        watcher::Error::WatchError(status) => Some(status.code),
        _ => None,
    };
    if status == Some(403) {
        "not allowed: list it in the chart value speaker.bgpPasswordSecrets (the speaker may \
         read only the Secrets named there)"
            .to_string()
    } else {
        error.to_string()
    }
}

/// The password under `key` of `secret` (`data`, else `stringData`), without a trailing
/// newline; `what` names the Secret in the error.
pub fn password_from(secret: &Secret, key: &str, what: &str) -> Result<String, String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|bytes| {
            String::from_utf8(bytes.0.clone())
                .map_err(|_| format!("key {key:?} of {what} is not UTF-8 text"))
        });
    let from_string_data = || {
        secret
            .string_data
            .as_ref()
            .and_then(|data| data.get(key))
            .cloned()
            .map(Ok)
    };
    from_data
        .or_else(from_string_data)
        .unwrap_or_else(|| Err(format!("{what} has no key {key:?}")))
        // A trailing newline from `echo secret > file` is never part of a password.
        .map(|password| password.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn the_password_is_the_keys_text_without_a_trailing_newline() {
        let s = secret(&[("password", b"s3cret\n")]);
        assert_eq!(password_from(&s, "password", "S"), Ok("s3cret".to_string()));
    }

    #[test]
    fn a_missing_key_or_bytes_that_are_not_text_are_refused_with_the_secrets_name() {
        let s = secret(&[("password", &[0xff, 0xfe])]);
        assert!(
            password_from(&s, "password", "S")
                .unwrap_err()
                .contains("not UTF-8")
        );
        assert!(
            password_from(&s, "other", "Secret x/y")
                .unwrap_err()
                .contains("Secret x/y has no key")
        );
    }

    #[test]
    fn string_data_is_read_when_data_lacks_the_key() {
        let s = Secret {
            string_data: Some([("password".to_string(), "pw".to_string())].into()),
            ..Secret::default()
        };
        assert_eq!(password_from(&s, "password", "S"), Ok("pw".to_string()));
    }
}

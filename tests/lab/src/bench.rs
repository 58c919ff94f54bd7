//! What the lab benchmarks measure with: nearest-rank percentiles (pure), and a
//! [`ServiceWatch`] that timestamps, as one `kubectl get services --watch` sees them, when
//! each Service first appeared and when it first carried an ingress address.
//!
//! I/O: the watch's kubectl child process and the thread reading its output, both ended
//! when the watch is stopped or dropped.

use std::collections::HashMap;
use std::io::BufReader;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{LabError, Result};
use crate::kube::Kubectl;

/// The p-th percentile (nearest rank) of `sorted`; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// When the watch first saw each Service, by name.
#[derive(Debug, Default, Clone)]
pub struct Sightings {
    /// First event of any kind (the initial list included).
    pub added: HashMap<String, Instant>,
    /// First event with a non-empty `status.loadBalancer.ingress`.
    pub addressed: HashMap<String, Instant>,
}

/// A running `kubectl get services --watch -o json` on one namespace.
pub struct ServiceWatch {
    child: Child,
    reader: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Sightings>>,
}

impl ServiceWatch {
    /// Starts watching the Services of `namespace`, then waits `settle` (for the watch's
    /// initial list to pass).
    pub fn start(kubectl: &Kubectl, namespace: &str, settle: Duration) -> Result<ServiceWatch> {
        let mut child = kubectl
            .command()
            .args(["get", "services", "-n", namespace, "--watch", "-o", "json"])
            .args(["--output-watch-events", "--request-timeout=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LabError::io("starting kubectl --watch", e))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Invalid("kubectl --watch has no stdout".into()));
        };
        let seen = Arc::new(Mutex::new(Sightings::default()));
        let reader = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let events = serde_json::Deserializer::from_reader(BufReader::new(stdout))
                    .into_iter::<Value>();
                for event in events {
                    let Ok(event) = event else { break };
                    let now = Instant::now();
                    let object = &event["object"];
                    let Some(name) = object["metadata"]["name"].as_str() else {
                        continue;
                    };
                    let addressed = object["status"]["loadBalancer"]["ingress"]
                        .as_array()
                        .is_some_and(|ingress| !ingress.is_empty());
                    let Ok(mut seen) = seen.lock() else { break };
                    seen.added.entry(name.to_owned()).or_insert(now);
                    if addressed {
                        seen.addressed.entry(name.to_owned()).or_insert(now);
                    }
                }
            })
        };
        std::thread::sleep(settle);
        Ok(ServiceWatch {
            child,
            reader: Some(reader),
            seen,
        })
    }

    /// When Service `name` was first seen with an address.
    pub fn addressed_at(&self, name: &str) -> Option<Instant> {
        self.seen.lock().ok()?.addressed.get(name).copied()
    }

    /// How many Services have been seen with an address so far.
    pub fn addressed_count(&self) -> usize {
        self.seen.lock().map(|s| s.addressed.len()).unwrap_or(0)
    }

    /// Ends the watch and returns everything it saw.
    pub fn stop(mut self) -> Result<Sightings> {
        self.end();
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .map_err(|_| LabError::Invalid("the watch reader panicked".into()))
    }

    fn end(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for ServiceWatch {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), ms(50));
        assert_eq!(percentile(&sorted, 99.0), ms(99));
        assert_eq!(percentile(&sorted, 100.0), ms(100));
        assert_eq!(percentile(&sorted, 0.0), ms(1));
        assert_eq!(percentile(&[ms(7)], 50.0), ms(7));
        assert_eq!(percentile(&[ms(1), ms(2), ms(3)], 50.0), ms(2));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}

//! `--scrape-metrics`: reads the target's Prometheus `/metrics` once a second during the load, so
//! the report shows what the server saw next to what the client saw: requests queued for a forward
//! pass (`torchship_pending_requests`), forward passes per second and their mean batch size
//! (`torchship_batch_size` sum/count), for the model under load. Through a Kubernetes Service each
//! scrape reaches one pod, so the values are that pod's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// One scrape, compared with the one before it.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ServerPoint {
    /// Seconds since the load started.
    pub t: f64,
    /// Requests waiting for a forward pass when scraped.
    pub pending_requests: f64,
    /// Forward passes per second since the previous scrape.
    pub executions_per_s: f64,
    /// Rows per forward pass since the previous scrape (0 when none ran).
    pub mean_batch: f64,
}

/// The sum of the samples of `name` that carry `model="…"` (all versions).
pub fn sample(text: &str, name: &str, model: &str) -> Option<f64> {
    protocol::exposition::sum(text, name, &[("model", model)])
}

/// The running scraper.
pub struct Scraper {
    points: Arc<Mutex<Vec<ServerPoint>>>,
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scraper {
    pub fn start(client: reqwest::Client, base: &str, model: &str, start: Instant) -> Scraper {
        let url = format!("{}/metrics", base.trim_end_matches('/'));
        let model = model.to_string();
        let points = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (points, errors) = (points.clone(), errors.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut last: Option<(Instant, f64, f64)> = None;
                loop {
                    tick.tick().await;
                    let text = match fetch(&client, &url).await {
                        Ok(t) => t,
                        Err(e) => {
                            let mut errors = errors.lock().unwrap();
                            if !errors.contains(&e) {
                                errors.push(e);
                            }
                            continue;
                        }
                    };
                    let now = Instant::now();
                    let sum = sample(&text, "torchship_batch_size_sum", &model).unwrap_or(0.0);
                    let count = sample(&text, "torchship_batch_size_count", &model).unwrap_or(0.0);
                    let pending =
                        sample(&text, "torchship_pending_requests", &model).unwrap_or(0.0);
                    if let Some((then, last_sum, last_count)) = last {
                        let (rows, passes) = (sum - last_sum, count - last_count);
                        points.lock().unwrap().push(ServerPoint {
                            t: (now - start).as_secs_f64(),
                            pending_requests: pending,
                            executions_per_s: passes / (now - then).as_secs_f64(),
                            mean_batch: if passes > 0.0 { rows / passes } else { 0.0 },
                        });
                    }
                    last = Some((now, sum, count));
                }
            })
        };
        Scraper {
            points,
            errors,
            task,
        }
    }

    /// Stops scraping; returns the points and the distinct errors.
    pub fn stop(self) -> (Vec<ServerPoint>, Vec<String>) {
        self.task.abort();
        let points = self.points.lock().unwrap().clone();
        let errors = self.errors.lock().unwrap().clone();
        (points, errors)
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let r = client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", r.status()));
    }
    r.text().await.map_err(|e| format!("GET {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_add_up_across_versions_of_the_model() {
        let text = "# HELP torchship_pending_requests Requests queued.\n\
            torchship_pending_requests{model=\"mlp\",version=\"1\"} 3\n\
            torchship_pending_requests{model=\"mlp\",version=\"2\"} 2\n\
            torchship_pending_requests{model=\"digits\",version=\"1\"} 7\n\
            torchship_batch_size_sum{model=\"mlp\",version=\"1\"} 96\n\
            torchship_batch_size_count{model=\"mlp\",version=\"1\"} 4\n";
        assert_eq!(sample(text, "torchship_pending_requests", "mlp"), Some(5.0));
        assert_eq!(sample(text, "torchship_batch_size_sum", "mlp"), Some(96.0));
        assert_eq!(sample(text, "torchship_batch_size", "mlp"), None);
        assert_eq!(sample(text, "torchship_pending_requests", "m"), None);
    }
}

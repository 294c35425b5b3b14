//! Headless Chromium for the report tests: a page is opened as a person would open the file
//! (`file://`, a 1300 px wide window), a script of the test's own is run after the page's, and
//! what the browser laid out comes back as JSON: per chart, the SVG's rendered size, the text
//! (tick labels, axis descriptions) it drew with a non-empty box, the legend's entries and
//! whether the legend overlaps the plot, and per series the points and how much of it was drawn;
//! and the tooltip the first chart shows with the pointer over its middle.
//!
//! Chromium runs with --headless --no-sandbox, no background networking, and a profile, home and
//! cache of its own in a scratch folder; it is killed (by its pid) if it has not finished in a
//! minute.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The layout read-back, run after the page's own scripts (so after its hover set-up).
const INSPECT: &str = r#"<script>(() => {
  const out = { width: innerWidth, charts: [] };
  const box = e => e.getBoundingClientRect();
  for (const fig of document.querySelectorAll('figure.chart')) {
    const data = JSON.parse(fig.querySelector('.chart-data').textContent);
    const svg = fig.querySelector('svg'), plot = box(fig.querySelector('.plot'));
    const legend = box(fig.querySelector('ul.legend'));
    const texts = [...svg.querySelectorAll('text')]
      .filter(t => { const b = t.getBBox(); return b.width > 0 && b.height > 0; })
      .map(t => t.textContent.trim());
    const series = data.series.map(s => {
      const drawn = [...svg.querySelectorAll('polyline, path, line, circle')]
        .filter(e => (e.getAttribute('stroke') || '').toUpperCase() === s.colour)
        .reduce((sum, e) => { const b = e.getBBox(); return sum + b.width + b.height; }, 0);
      const ys = s.points.map(p => p[3]);
      return { name: s.name, points: s.points.length, drawn, first: ys[0] ?? null,
        min: ys.length ? Math.min(...ys) : null, max: ys.length ? Math.max(...ys) : null,
        distinct: new Set(ys).size };
    });
    out.charts.push({ id: fig.id, title: fig.querySelector('figcaption').textContent,
      width: box(svg).width, height: box(svg).height,
      legend_items: fig.querySelectorAll('ul.legend li').length,
      legend_overlaps_plot: !(legend.left >= plot.right || legend.top >= plot.bottom ||
        legend.right <= plot.left || legend.bottom <= plot.top),
      texts, series });
  }
  // Hover: the pointer over the middle of the first chart.
  const first = document.querySelector('figure.chart');
  if (first) {
    const svg = first.querySelector('svg'), b = box(svg), tip = first.querySelector('.tip');
    svg.dispatchEvent(new MouseEvent('mousemove',
      { clientX: b.left + b.width / 2, clientY: b.top + b.height / 3, bubbles: true }));
    out.hover = tip.hidden ? null : tip.textContent;
  }
  const pre = document.createElement('pre');
  pre.id = 'inspected';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();</script>"#;

/// A Chromium binary.
pub struct Chromium {
    path: PathBuf,
}

/// Debian's `chromium` (or another Chromium on PATH); otherwise a message saying what to install.
pub fn find() -> Result<Chromium, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(Chromium { path: candidate });
            }
        }
    }
    Err("no Chromium on PATH: scripts/setup.sh installs Debian's (apt-get install chromium)".into())
}

/// The browser for a test: `None` (the test is skipped, saying why) where none is installed,
/// except under CI, where the report tests must run.
pub fn required() -> Option<Chromium> {
    match find() {
        Ok(c) => Some(c),
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI must run the browser tests: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

impl Chromium {
    /// Opens `page` in a `width` px wide window and returns the layout read-back (module docs).
    pub fn inspect(&self, page: &Path, width: u32) -> Result<Value, String> {
        let scratch = Scratch::new()?;
        let html = std::fs::read_to_string(page).map_err(|e| format!("{}: {e}", page.display()))?;
        let at = html
            .rfind("</body>")
            .ok_or("the page has no </body>".to_string())?;
        let copy = scratch.0.join("page.html");
        let inspected = format!("{}{INSPECT}{}", &html[..at], &html[at..]);
        std::fs::write(&copy, inspected).map_err(|e| e.to_string())?;
        let dom = self.run(
            &scratch,
            &[&format!("--window-size={width},1000"), "--dump-dom"],
            &copy,
        )?;
        let start = dom
            .find(r#"<pre id="inspected">"#)
            .ok_or_else(|| format!("the read-back did not run; the DOM was:\n{dom}"))?;
        let json = &dom[start + r#"<pre id="inspected">"#.len()..];
        let json = &json[..json.find("</pre>").ok_or("unterminated read-back")?];
        let json = json
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        serde_json::from_str(&json).map_err(|e| format!("read-back: {e}: {json}"))
    }

    /// [`Chromium::inspect`], then every chart through [`assert_readable`]; returns the charts
    /// (in page order) and the hover tooltip's text.
    pub fn readable_charts(&self, page: &Path, width: u32) -> (Vec<Value>, String) {
        let seen = self
            .inspect(page, width)
            .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let charts = seen["charts"].as_array().cloned().unwrap_or_default();
        assert!(
            !charts.is_empty(),
            "no charts in {}: {seen}",
            page.display()
        );
        for chart in &charts {
            assert_readable(chart);
        }
        let hover = seen["hover"].as_str().unwrap_or_default().to_string();
        (charts, hover)
    }

    /// A PNG of the page, `width` x `height` px, for a person to look at.
    pub fn screenshot(
        &self,
        page: &Path,
        png: &Path,
        width: u32,
        height: u32,
    ) -> Result<(), String> {
        let scratch = Scratch::new()?;
        let size = format!("--window-size={width},{height}");
        let shot = format!("--screenshot={}", png.display());
        self.run(&scratch, &[&size, "--hide-scrollbars", &shot], page)?;
        match png.metadata() {
            Ok(m) if m.len() > 0 => Ok(()),
            _ => Err(format!("chromium wrote no {}", png.display())),
        }
    }

    fn run(&self, scratch: &Scratch, extra: &[&str], page: &Path) -> Result<String, String> {
        let page = std::fs::canonicalize(page).map_err(|e| format!("{}: {e}", page.display()))?;
        let child = Command::new(&self.path)
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
            ])
            .args([
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!(
                "--user-data-dir={}",
                scratch.0.join("profile").display()
            ))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .env("HOME", &scratch.0)
            .env("XDG_CONFIG_HOME", scratch.0.join("config"))
            .env("XDG_CACHE_HOME", scratch.0.join("cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.path.display()))?;
        let pid = child.id() as libc::pid_t;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let out = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.map_err(|e| e.to_string())?,
            Err(_) => {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return Err("chromium did not finish within 60 s (killed)".into());
            }
        };
        if !out.status.success() {
            return Err(format!(
                "chromium exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A scratch folder for one browser run, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "browser-check-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The checks every chart must pass as a person sees it, with the read-back in each message: it
/// is wide enough to read, its legend lists every series beside (not over) the plot, every series
/// with points left visible ink, and its axes carry labels; returns the chart's drawn texts.
pub fn assert_readable(chart: &Value) -> Vec<String> {
    let id = &chart["id"];
    assert!(
        chart["width"].as_f64() > Some(600.0),
        "{id}: too narrow: {chart}"
    );
    let series = chart["series"].as_array().expect("series");
    assert!(!series.is_empty(), "{id}: no series: {chart}");
    assert_eq!(
        chart["legend_items"].as_u64(),
        Some(series.len() as u64),
        "{id}: legend: {chart}"
    );
    assert_eq!(
        chart["legend_overlaps_plot"], false,
        "{id}: legend over the plot: {chart}"
    );
    for s in series {
        if s["points"].as_u64() > Some(0) {
            assert!(
                s["drawn"].as_f64() > Some(0.0),
                "{id}: {} not drawn: {chart}",
                s["name"]
            );
        }
    }
    let texts: Vec<String> = chart["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect();
    let numbers = texts
        .iter()
        .filter(|t| t.trim_end_matches('%').parse::<f64>().is_ok());
    assert!(
        numbers.count() >= 8,
        "{id}: tick labels on both axes: {texts:?}"
    );
    texts
}

/// The charts' ids in page order.
pub fn ids(charts: &[Value]) -> Vec<&str> {
    charts
        .iter()
        .map(|c| c["id"].as_str().unwrap_or("?"))
        .collect()
}

/// The chart's series read-back by name.
pub fn series<'a>(chart: &'a Value, name: &str) -> &'a Value {
    chart["series"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no series {name} in {chart}"))
}

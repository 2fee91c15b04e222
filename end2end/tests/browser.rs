//! Headless Chromium clicks through the UI (Debian's chromium + chromedriver).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use end2end::{Server, TestContainer};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (./dev test installs chromium-driver)");
    Driver(child, port)
}

async fn browser(driver: &Driver, javascript: bool) -> Client {
    browser_with(driver, javascript, false).await
}

/// A browser whose `prefers-color-scheme` is dark when `dark`.
async fn browser_with(driver: &Driver, javascript: bool, dark: bool) -> Client {
    // A profile of its own: its own cookie jar, like a separate browser.
    let profile = std::env::temp_dir().join(end2end::unique_name(&format!("chromium-{javascript}")));
    let mut args = vec![
        "--headless".to_string(), "--no-sandbox".into(), "--disable-gpu".into(), "--disable-background-networking".into(),
        "--disable-dev-shm-usage".into(), "--no-first-run".into(), "--disable-component-update".into(), "--disable-sync".into(),
        "--window-size=1400,1000".into(), format!("--user-data-dir={}", profile.display()),
    ];
    if dark {
        // Blink's PreferredColorScheme: 0 is dark.
        args.push("--force-dark-mode".into());
        args.push("--blink-settings=preferredColorScheme=0".into());
    }
    let mut options = json!({ "args": args });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    if !javascript {
        options["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let url = format!("http://127.0.0.1:{}", driver.1);
    let start = Instant::now();
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(caps.clone()).connect(&url).await {
            Ok(client) => return client,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("cannot start Chromium through chromedriver: {e}"),
        }
    }
}

/// Signs in through the login form (works with JavaScript off too).
async fn sign_in(client: &Client, server: &Server, user: &str, password: &str) {
    client.goto(&server.url("/login")).await.unwrap();
    client.find(Locator::Id("login-name")).await.unwrap().send_keys(user).await.unwrap();
    client.find(Locator::Id("login-password")).await.unwrap().send_keys(password).await.unwrap();
    client.find(Locator::Id("login-submit")).await.unwrap().click().await.unwrap();
    eventually("signed in", || async {
        let url = client.current_url().await.unwrap();
        !url.path().starts_with("/login")
    })
    .await;
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(Duration::from_secs(30), what, check).await
}

/// As [`eventually`], for waits on work the server does in the background
/// (an analysis), which takes longer while the rest of the suite loads the machine.
async fn eventually_within<F, Fut>(patience: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < patience {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting until {what}");
}

fn wait_listed(server: &Server, name: &str) {
    server.wait_until(Duration::from_secs(30), "the container is sampled", || {
        server.listed(name).is_some_and(|c| !c["memory"].is_null())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_lists_container_and_its_page_charts_it() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run(
        "browser",
        &["--memory", "128m"],
        &["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 2>/dev/null; sleep 100000"],
    );
    wait_listed(&server, &c.name);
    let driver = start_chromedriver();
    let client = browser(&driver, true).await;
    sign_in(&client, &server, end2end::TEST_USER, end2end::TEST_PASSWORD).await;

    client.goto(&server.url("/")).await.unwrap();
    let row = format!("tr[data-name='{}']", c.name);
    client.wait().for_element(Locator::Css(&row)).await.expect("the dashboard lists the container");
    // Hydrated and connected to the live stream.
    eventually("the live stream connects", || async {
        client.find(Locator::Css(".live-indicator.on")).await.is_ok()
    })
    .await;
    let ws_text = client.find(Locator::Css(&format!("{row} td.ws"))).await.unwrap().text().await.unwrap();
    assert!(ws_text.contains("MiB"), "working set shown in MiB: {ws_text}");

    // Sorting by working set changes the URL.
    client.find(Locator::Css("th a[data-sort='ws']")).await.unwrap().click().await.unwrap();
    eventually("the sort lands in the URL", || async {
        client.current_url().await.map(|u| u.as_str().contains("sort=ws")).unwrap_or(false)
    })
    .await;

    // Open the container page.
    client.find(Locator::Css(&format!("{row} a.name"))).await.unwrap().click().await.unwrap();
    eventually("the container page opens", || async {
        client.current_url().await.map(|u| u.path() == format!("/containers/{}", c.name)).unwrap_or(false)
    })
    .await;
    let chart_loaded = || async {
        client
            .execute("const i = document.getElementById('memory-chart'); return i && i.complete ? i.naturalWidth : 0;", vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
            > 0
    };
    eventually("the chart image loads", chart_loaded).await;

    // Changing the range changes the URL and the chart.
    client.find(Locator::Css("a.range[data-range='6h']")).await.unwrap().click().await.unwrap();
    eventually("the range lands in the URL", || async {
        client.current_url().await.map(|u| u.as_str().contains("range=6h")).unwrap_or(false)
    })
    .await;
    eventually("the chart follows the range", || async {
        match client.find(Locator::Id("memory-chart")).await {
            Ok(img) => img.attr("src").await.ok().flatten().is_some_and(|s| s.contains("range=6h")),
            Err(_) => false,
        }
    })
    .await;
    eventually("the 6h chart loads", chart_loaded).await;
    // A copied link shows the same view.
    let url = client.current_url().await.unwrap();
    client.goto(url.as_str()).await.unwrap();
    let active = client.find(Locator::Css("a.range.active")).await.unwrap().text().await.unwrap();
    assert_eq!(active, "6h");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_readable_with_javascript_off() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("nojs", &[], &["sleep", "100000"]);
    wait_listed(&server, &c.name);
    let driver = start_chromedriver();
    let client = browser(&driver, false).await;
    sign_in(&client, &server, end2end::TEST_USER, end2end::TEST_PASSWORD).await;

    client.goto(&server.url("/")).await.unwrap();
    let row = client.find(Locator::Css(&format!("tr[data-name='{}']", c.name))).await.expect("listed without JS");
    let text = row.text().await.unwrap();
    assert!(text.contains("no limit"), "{text}");
    assert!(client.find(Locator::Css(".live-indicator.on")).await.is_err(), "no JS, no live stream");

    client.goto(&server.url(&format!("/containers/{}?range=15m", c.name))).await.unwrap();
    let h1 = client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(h1, c.name);
    let src = client.find(Locator::Id("memory-chart")).await.unwrap().attr("src").await.unwrap().unwrap();
    assert!(src.contains("range=15m"), "{src}");
    // The image the page points at is a chart, served without any script.
    let (status, svg) = server.get(&src);
    assert_eq!(status, 200);
    assert!(svg.starts_with("<svg"));
    assert!(client.find(Locator::Css("a.range.active[data-range='15m']")).await.is_ok());
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dump_analysis_page_shows_the_suspect_and_sorts_the_histogram() {
    let server = Server::start(&[], &[]);
    let dump = std::fs::read(end2end::java_heap_dump(5_000, 50)).unwrap();
    let (status, body) = server.post_bytes("/api/v1/dumps?name=shop.hprof&service=shop", &dump);
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    server.wait_until(Duration::from_secs(60), "analysed", || server.get(&format!("/api/v1/dumps/{id}/analysis")).0 == 200);

    let driver = start_chromedriver();
    let client = browser(&driver, true).await;
    sign_in(&client, &server, end2end::TEST_USER, end2end::TEST_PASSWORD).await;
    client.goto(&server.url("/dumps")).await.unwrap();
    client
        .wait()
        .for_element(Locator::Css(&format!("tr[data-dump='{id}'] a")))
        .await
        .expect("the dump is listed")
        .click()
        .await
        .unwrap();
    let suspect = client.wait().for_element(Locator::Css(".suspect-text")).await.unwrap().text().await.unwrap();
    assert!(suspect.contains("holds 5 000 LeakMain$Session"), "{suspect}");
    // Sorting by instances (client-side navigation) re-renders the histogram.
    client.find(Locator::LinkText("Instances")).await.unwrap().click().await.unwrap();
    eventually("the sort lands in the URL", || async {
        client.current_url().await.map(|u| u.as_str().contains("sort=instances")).unwrap_or(false)
    })
    .await;
    let analysis: serde_json::Value = serde_json::from_str(&server.get(&format!("/api/v1/dumps/{id}/analysis")).1).unwrap();
    let most = analysis["histogram"].as_array().unwrap().iter().max_by_key(|e| e["instances"].as_u64().unwrap()).unwrap()["class"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the class with most instances comes first", || async {
        match client.find(Locator::Css("#histogram tbody tr td.cls")).await {
            Ok(cell) => cell.text().await.map(|t| t == most).unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;
    // The treemap leads the tree: the server's picture, and a link over each block into the tree.
    let blocks = client.find_all(Locator::Css("#treemap a.treemap-block")).await.unwrap();
    assert!(!blocks.is_empty(), "the treemap has no blocks");
    let picture = client.find(Locator::Css("#treemap img")).await.unwrap().attr("src").await.unwrap().unwrap();
    let (status, svg) = server.get(&picture);
    assert!(status == 200 && svg.contains("<svg"), "the treemap picture: {status}");
    // The last link is drawn on top (a child block over its parent).
    let top = blocks.last().unwrap();
    let first = top.attr("data-object").await.unwrap().unwrap();
    top.click().await.unwrap();
    eventually("the block opened its object", || async {
        client.current_url().await.map(|u| u.as_str().contains(&format!("node={first}"))).unwrap_or(false)
    })
    .await;
    client.goto(&server.url(&format!("/dumps/{id}"))).await.unwrap();
    // The dominator tree expands level by level, and shows the path from a GC root.
    let before = client.find_all(Locator::Css("#tree-table tbody tr")).await.unwrap().len();
    assert!(before > 0, "the tree's top level is empty");
    client.find(Locator::Css("#tree-table a.expand")).await.unwrap().click().await.unwrap();
    eventually("a node expanded", || async { client.current_url().await.map(|u| u.as_str().contains("node=")).unwrap_or(false) }).await;
    let path = client.wait().for_element(Locator::Id("gc-path")).await.expect("the path from a GC root");
    eventually("the path names its root", || async { path.text().await.map(|t| t.contains("GC root")).unwrap_or(false) }).await;
    client.close().await.unwrap();
}

/// Follows the capture job box until the job ends: the stages seen, in
/// order, and the box's last text. Fails the test when the job fails.
async fn watch_capture(client: &fantoccini::Client) -> (Vec<String>, String) {
    let mut seen: Vec<String> = Vec::new();
    let started = Instant::now();
    loop {
        // Stage and state are read in one script call: two separate reads can
        // straddle the job's last update (stage "copying", state "done").
        let read = client
            .execute(
                "const j = document.getElementById('capture-job'); \
                 return j ? [j.getAttribute('data-stage'), j.getAttribute('data-state'), j.textContent] : null;",
                vec![],
            )
            .await;
        if let Ok(serde_json::Value::Array(fields)) = read {
            if let [serde_json::Value::String(stage), serde_json::Value::String(state), serde_json::Value::String(text)] =
                fields.as_slice()
            {
                if seen.last() != Some(stage) {
                    seen.push(stage.clone());
                }
                if state != "running" {
                    assert_eq!(state, "done", "the capture failed: {text}");
                    return (seen, text.clone());
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "capture did not finish; stages seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_button_shows_the_stages_and_the_dump_lands_in_the_history() {
    let server = Server::start(&[], &[]);
    // A JRE-only image (no jcmd) with a heap of about 200 MiB, so the stages are visible.
    let jvm = TestContainer::run_image(
        "browser-capture",
        &end2end::fixture_image("java-jre"),
        &["-e", "MODE=warmup", "-e", "CACHE_MIB=200", "-e", "LEAK_KIB_PER_SEC=262144", "-e", "OBJECT_BYTES=65536", "-m", "1g"],
        &[],
    );
    wait_listed(&server, &jvm.name);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let driver = start_chromedriver();
    let client = browser(&driver, true).await;
    sign_in(&client, &server, end2end::TEST_USER, end2end::TEST_PASSWORD).await;
    client.goto(&server.url(&format!("/containers/{}", jvm.name))).await.unwrap();
    eventually("the page hydrates and the capture button is enabled", || async {
        match client.find(Locator::Id("capture-button")).await {
            Ok(b) => b.attr("disabled").await.ok().flatten().is_none(),
            Err(_) => false,
        }
    })
    .await;
    client.find(Locator::Id("capture-button")).await.unwrap().click().await.unwrap();

    // Watch the job box: the stages change live until the job is done.
    let (seen, _) = watch_capture(&client).await;
    assert_eq!(seen.last().map(String::as_str), Some("done"), "{seen:?}");
    assert!(seen.len() >= 2, "the stages should change while the page is open: {seen:?}");
    let url = client.current_url().await.unwrap();
    assert!(url.as_str().contains("capture="), "the job is in the URL: {url}");

    // The history on the same page lists the new dump; its download is a real HPROF.
    eventually("the dump appears in the container's history", || async {
        client.find(Locator::Css(".capture-panel tr[data-dump]")).await.is_ok()
    })
    .await;
    let link = client.find(Locator::Css("#capture-done a[href$='/download']")).await.unwrap();
    let href = link.attr("href").await.unwrap().unwrap();
    let response = server.request("GET", &href).call().unwrap();
    let mut head = vec![0u8; 18];
    std::io::Read::read_exact(&mut response.into_reader(), &mut head).unwrap();
    assert_eq!(&head, b"JAVA PROFILE 1.0.2");
    client.close().await.unwrap();
}

/// The Node.js path in the browser: the risks are said before the click, the
/// stages change live, and the analysis names the leaking listeners.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_service_is_captured_from_its_page_and_its_analysis_names_the_leak() {
    let server = Server::start(&[], &[]);
    let node = TestContainer::run_image(
        "browser-node",
        &end2end::fixture_image("node"),
        &[
            "-e",
            "LEAK_KIB_PER_SEC=2048",
            "-e",
            "OBJECT_BYTES=256",
            "-m",
            "1g",
        ],
        &[],
    );
    wait_listed(&server, &node.name);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let driver = start_chromedriver();
    let client = browser(&driver, true).await;
    sign_in(&client, &server, end2end::TEST_USER, end2end::TEST_PASSWORD).await;
    client
        .goto(&server.url(&format!("/containers/{}", node.name)))
        .await
        .unwrap();
    let risks = client
        .find(Locator::Id("capture-risks"))
        .await
        .expect("the capture risks are said on the page");
    assert!(
        risks.text().await.unwrap().contains("inspector"),
        "the inspector window is said before the click"
    );
    eventually(
        "the page hydrates and the capture button is enabled",
        || async {
            match client.find(Locator::Id("capture-button")).await {
                Ok(b) => b.attr("disabled").await.ok().flatten().is_none(),
                Err(_) => false,
            }
        },
    )
    .await;
    client
        .find(Locator::Id("capture-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let (seen, text) = watch_capture(&client).await;
    assert!(
        seen.len() >= 2,
        "the stages should change while the page is open: {seen:?}"
    );
    assert!(
        text.contains("closed again"),
        "the job says the inspector was closed: {text}"
    );
    client
        .find(Locator::Css("#capture-done a[href^='/dumps/']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually_within(Duration::from_secs(120), "the analysis names the leaking listeners", || async {
        match client.find(Locator::Css("body")).await {
            Ok(body) => body
                .text()
                .await
                .map(|t| t.contains("requestBus") && t.contains("(closure)"))
                .unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;
    let capture = client
        .find(Locator::Id("dump-capture"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        capture.contains("node v18") && capture.contains("paused"),
        "{capture}"
    );
    client.close().await.unwrap();
}

/// The report flow of the issue: an operator creates a report from the
/// container page with two dumps; a viewer in another browser sees the chart
/// and the diff; the public link opens signed out with JavaScript off, and
/// answers 404 once revoked.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_is_created_from_the_container_page_shared_and_revoked() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("report", &["-m", "128m"], &["sleep", "600"]);
    wait_listed(&server, &c.name);
    let mut ids = Vec::new();
    for (i, sessions) in [2_000, 12_000].into_iter().enumerate() {
        let dump = std::fs::read(end2end::java_heap_dump(sessions, 100)).unwrap();
        let (status, body) = server.post_bytes(&format!("/api/v1/dumps?name=d{i}.hprof&container={}", c.name), &dump);
        assert_eq!(status, 201, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
        server.wait_until(Duration::from_secs(60), "analysed", || server.get(&format!("/api/v1/dumps/{id}/analysis")).0 == 200);
        ids.push(id);
    }
    end2end::create_user(&server.data_dir, "vera", "viewer-password", "viewer");

    let driver = start_chromedriver();
    let operator = browser(&driver, true).await;
    sign_in(&operator, &server, end2end::TEST_USER, end2end::TEST_PASSWORD).await;
    // From the diff page: "Create report with both dumps" opens the container's form with both ticked.
    operator.goto(&server.url(&format!("/dumps/{}/diff/{}", ids[0], ids[1]))).await.unwrap();
    operator.wait().for_element(Locator::Id("report-from-diff")).await.unwrap().click().await.unwrap();
    operator.wait().for_element(Locator::Id("report-form")).await.expect("the Create report form");
    assert!(operator.current_url().await.unwrap().path().ends_with(&c.name));
    for id in &ids {
        let tick = operator.find(Locator::Css(&format!("input[name='dumps'][value='{id}']"))).await.unwrap();
        assert!(tick.is_selected().await.unwrap(), "dump {id} is not ticked");
    }
    operator.find(Locator::Id("report-title-input")).await.unwrap().send_keys("Checkout leak").await.unwrap();
    operator.find(Locator::Id("report-notes-input")).await.unwrap().send_keys("Sessions are **never** evicted.").await.unwrap();
    operator.find(Locator::Id("create-report")).await.unwrap().click().await.unwrap();
    eventually("the report page", || async { operator.current_url().await.map(|u| u.path().starts_with("/reports/")).unwrap_or(false) }).await;
    let report_location = operator.current_url().await.unwrap();
    let report_url = report_location.to_string();

    // A viewer in another browser sees the chart and the diff, and no share button.
    let viewer = browser(&driver, true).await;
    sign_in(&viewer, &server, "vera", "viewer-password").await;
    viewer.goto(&report_url).await.unwrap();
    assert_eq!(viewer.find(Locator::Id("report-title")).await.unwrap().text().await.unwrap(), "Checkout leak");
    viewer.find(Locator::Css("#report-chart svg")).await.expect("the inline chart");
    let diff = viewer.find(Locator::Id("report-diff")).await.expect("the diff").text().await.unwrap();
    assert!(diff.contains("LeakMain$Session"), "{diff}");
    let notes = viewer.find(Locator::Css("#report-notes strong")).await.unwrap().text().await.unwrap();
    assert_eq!(notes, "never");
    assert!(viewer.find(Locator::Id("share")).await.is_err(), "a viewer may not share");

    // The operator makes it public; anyone opens it signed out with JavaScript off.
    operator.find(Locator::Id("share")).await.unwrap().click().await.unwrap();
    let link = operator.wait().for_element(Locator::Css("#public-link a")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(link.starts_with("/r/"), "{link}");
    let stranger = browser(&driver, false).await;
    stranger.goto(&server.url(&link)).await.unwrap();
    assert_eq!(stranger.find(Locator::Id("report-title")).await.unwrap().text().await.unwrap(), "Checkout leak");
    stranger.find(Locator::Css("#report-chart svg")).await.expect("the chart without JavaScript");
    let page = stranger.source().await.unwrap();
    assert!(page.contains("og:image") && page.contains(&format!("{link}/chart.png")), "no OpenGraph image");
    assert!(!page.contains("/download"), "the public page links to a download");
    let (status, _) = end2end::answer(ureq::get(&server.url(&format!("{link}/chart.png"))).call(), "png");
    assert_eq!(status, 200);
    // Markdown export for tickets.
    let slug_path = report_location.path().to_string();
    let (status, md) = server.get(&format!("{slug_path}/report.md"));
    assert_eq!(status, 200);
    assert!(md.starts_with("# Checkout leak") && md.contains(&format!("{link}/chart.png")), "{md}");

    // Revoked: the link answers 404 at once.
    operator.find(Locator::Id("unshare")).await.unwrap().click().await.unwrap();
    operator.wait().for_element(Locator::Id("share")).await.unwrap();
    let (status, _) = end2end::answer(ureq::get(&server.url(&link)).call(), "public link");
    assert_eq!(status, 404);
    stranger.goto(&server.url(&link)).await.unwrap();
    assert!(stranger.source().await.unwrap().contains("No such report"), "the revoked link still shows the report");
    for client in [operator, viewer, stranger] {
        client.close().await.unwrap();
    }
}

/// The dashboard's verdict column (badge, sort by severity) and the chart's
/// click-through to the log lines of that moment.
#[tokio::test(flavor = "multi_thread")]
async fn verdict_column_sorts_and_a_chart_click_shows_that_minutes_logs() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("ticker", &[], &["sh", "-c", "while true; do echo tick-from-ticker; sleep 1; done"]);
    wait_listed(&server, &c.name);
    // Assess now (the periodic pass runs every minute) so the column has a verdict.
    let (status, verdict) = server.get_json(&format!("/api/v1/containers/{}/leak", c.name));
    assert_eq!(status, 200, "{verdict}");
    std::thread::sleep(Duration::from_secs(3));

    let driver = start_chromedriver();
    let client = browser(&driver, true).await;
    sign_in(&client, &server, end2end::TEST_USER, end2end::TEST_PASSWORD).await;
    client.goto(&server.url("/")).await.unwrap();
    let badge = client.wait().for_element(Locator::Css("td.leak [data-verdict]")).await.expect("a verdict badge");
    assert_eq!(badge.attr("data-verdict").await.unwrap().as_deref(), verdict["verdict"].as_str());
    client.find(Locator::LinkText("Leak verdict")).await.unwrap().click().await.unwrap();
    eventually("sorted by verdict", || async { client.current_url().await.map(|u| u.as_str().contains("sort=leak")).unwrap_or(false) }).await;

    // A window around the container's life: a click in the middle lands where it was logging.
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    client.goto(&server.url(&format!("/containers/{}?from={}&to={}", c.name, now_s - 40, now_s))).await.unwrap();
    client.wait().for_element(Locator::Id("memory-chart")).await.unwrap().click().await.unwrap();
    eventually("the logs panel", || async { client.current_url().await.map(|u| u.as_str().contains("logs=")).unwrap_or(false) }).await;
    let panel = client.wait().for_element(Locator::Id("logs-panel")).await.unwrap();
    eventually("that minute's log lines", || async { panel.text().await.map(|t| t.contains("tick-from-ticker")).unwrap_or(false) }).await;
    client.close().await.unwrap();
}

/// Every page in light and dark, at a desk's 1440 px and a phone's 390 px:
/// none may scroll sideways as a whole (wide tables scroll inside their
/// panel), and a screenshot of each lands in `target/screenshots/` for review.
#[tokio::test(flavor = "multi_thread")]
async fn every_page_in_light_and_dark_at_desk_and_phone_width() {
    let server = Server::start(&[], &[]);
    let c = TestContainer::run("screens", &["-m", "256m", "--label", "com.docker.compose.service=shop"], &["sleep", "3600"]);
    wait_listed(&server, &c.name);
    end2end::seed_history(&server, &c.name, 6 * 60);
    let dumps = end2end::upload_analysed_dumps(&server, &c.name, &[2_000, 20_000]);
    let (report_id, report_url) = end2end::create_report(&server, &c.name, 6 * 3600, &dumps);
    let (_, shared) = server.get_json(&format!("/api/v1/reports/{report_id}"));
    let _ = shared;
    let (status, body) = end2end::answer(server.request("POST", &format!("/api/v1/reports/{report_id}/share")).call(), "share");
    assert_eq!(status, 200, "{body}");
    let public = serde_json::from_str::<serde_json::Value>(&body).unwrap()["url"].as_str().unwrap().to_string();
    let pages = [
        ("dashboard", "/".to_string()),
        ("container", format!("/containers/{}?range=6h", c.name)),
        ("dumps", "/dumps".to_string()),
        ("analysis", format!("/dumps/{}", dumps[1])),
        ("diff", format!("/dumps/{}/diff/{}", dumps[0], dumps[1])),
        ("reports", "/reports".to_string()),
        ("report", report_url.clone()),
        ("admin", "/admin".to_string()),
        ("api-reference", "/api".to_string()),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let driver = start_chromedriver();
    let mut overflowing = Vec::new();
    for dark in [false, true] {
        let theme = if dark { "dark" } else { "light" };
        let client = browser_with(&driver, true, dark).await;
        sign_in(&client, &server, end2end::TEST_USER, end2end::TEST_PASSWORD).await;
        let scheme = client.execute("return matchMedia('(prefers-color-scheme: dark)').matches", vec![]).await.unwrap();
        assert_eq!(scheme, json!(dark), "the browser reports the colour scheme asked for");
        let mut all: Vec<(&str, String)> = pages.iter().map(|(n, p)| (*n, p.clone())).collect();
        all.push(("public-report", public.clone()));
        for width in [1440u32, 390] {
            client.set_window_size(width, 1600).await.unwrap();
            for (name, path) in &all {
                let started = std::time::Instant::now();
                client.goto(&server.url(path)).await.unwrap();
                let loaded = started.elapsed();
                tokio::time::sleep(Duration::from_millis(400)).await;
                let png = client.screenshot().await.unwrap();
                eprintln!("{name} ({theme}, {width} px): loaded in {:.1} s, screenshot {:.1} s", loaded.as_secs_f64(), (started.elapsed() - loaded).as_secs_f64() - 0.4);
                std::fs::write(dir.join(format!("{name}-{theme}-{width}.png")), png).unwrap();
                let fits = client
                    .execute("return document.documentElement.scrollWidth <= window.innerWidth + 1", vec![])
                    .await
                    .unwrap();
                if fits != json!(true) {
                    overflowing.push(format!("{name} ({theme}, {width} px)"));
                }
            }
        }
        client.close().await.unwrap();
    }
    assert!(overflowing.is_empty(), "pages wider than the window: {overflowing:?} (screenshots in {})", dir.display());
}

//! Dump history and server-side analysis through the API and the pages.

use std::time::Duration;

use end2end::{java_heap_dump, node_heap_snapshot, Server};

fn wait_analysed(server: &Server, id: &str) -> serde_json::Value {
    let mut analysis = serde_json::Value::Null;
    server.wait_until(Duration::from_secs(60), "the analysis is done", || {
        let (status, body) = server.get_json(&format!("/api/v1/dumps/{id}/analysis"));
        analysis = body;
        status == 200
    });
    analysis
}

#[test]
fn uploaded_dumps_are_stored_analysed_diffed_downloaded_and_deleted() {
    let server = Server::start(&[], &[]);
    let small = java_heap_dump(2_000, 100);
    let big = java_heap_dump(20_000, 100);
    let small_bytes = std::fs::read(&small).unwrap();

    let (status, body) = server.post_bytes("/api/v1/dumps?name=before.hprof&service=shop", &small_bytes);
    assert_eq!(status, 201, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first_id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["size_bytes"].as_u64().unwrap(), small_bytes.len() as u64);
    assert!(first["stored_bytes"].as_u64().unwrap() < small_bytes.len() as u64, "zstd at rest");

    // A gzipped upload (as `jcmd GC.heap_dump -gz` writes) is accepted too.
    let gz = std::process::Command::new("gzip").arg("-c").arg(&big).output().unwrap().stdout;
    let (status, body) = server.post_bytes("/api/v1/dumps?name=after.hprof.gz&service=shop", &gz);
    assert_eq!(status, 201, "{body}");
    let second_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();

    let analysis = wait_analysed(&server, &second_id);
    let suspect = analysis["suspects"][0]["description"].as_str().unwrap();
    assert!(suspect.starts_with("LeakMain.SESSIONS -> ArrayList.elementData -> Object["), "{suspect}");
    assert!(analysis["histogram"].as_array().unwrap().iter().any(|e| e["class"] == "LeakMain$Session" && e["instances"] == 20_000));
    for key in ["summary", "histogram", "dominators", "suspects"] {
        assert!(!analysis[key].is_null(), "analysis JSON has {key}");
    }
    wait_analysed(&server, &first_id);

    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{first_id}/diff/{second_id}"));
    assert_eq!(status, 200);
    let top = &diff["classes"][0];
    assert!(top["shallow_bytes_delta"].as_i64().unwrap() > 0);
    let session = diff["classes"].as_array().unwrap().iter().find(|c| c["class"] == "LeakMain$Session").unwrap();
    assert_eq!(session["instances_delta"], 18_000);

    // History grouped by service, newest first.
    let (_, list) = server.get_json("/api/v1/dumps?service=shop");
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![second_id.as_str(), first_id.as_str()]);

    // Download: the original bytes, never cached.
    let response = server.request("GET", &format!("/api/v1/dumps/{first_id}/download")).call().unwrap();
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert!(response.header("content-disposition").unwrap().starts_with("attachment"));
    let mut downloaded = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut downloaded).unwrap();
    assert!(downloaded == small_bytes, "download is byte-exact");

    // Pages render on the server.
    let (status, html) = server.get("/dumps");
    assert_eq!(status, 200);
    assert!(html.contains("shop") && html.contains("after.hprof.gz"));
    let (status, html) = server.get(&format!("/dumps/{second_id}"));
    assert_eq!(status, 200);
    assert!(html.contains("holds 20 000 LeakMain$Session"), "the suspect is on the page");
    assert!(html.contains("Class histogram") && html.contains("LeakMain$Session"));
    let (status, html) = server.get(&format!("/dumps/{first_id}/diff/{second_id}"));
    assert_eq!(status, 200);
    assert!(html.contains("What grew") && html.contains("LeakMain$Session"));

    // Any object, also below what the stored tree keeps: the accumulation point's
    // 20 000 sessions are each too small for the slice, so they are looked up in the dump.
    let array = analysis["suspects"][0]["accumulation_object_id"].as_str().unwrap().to_string();
    let (status, detail) = server.get_json(&format!("/api/v1/dumps/{second_id}/objects/{array}"));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["object"]["children"], 20_000);
    let children = detail["children"].as_array().unwrap();
    assert_eq!(children.len(), 25);
    assert!(children.iter().all(|c| c["class"] == "LeakMain$Session" && c["parent"] == array.as_str()));
    let session = children[0]["object_id"].as_str().unwrap().to_string();
    let (status, detail) = server.get_json(&format!("/api/v1/dumps/{second_id}/objects/{session}"));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["dominators"].as_array().unwrap().last().unwrap()["object_id"], array.as_str());
    let path = detail["gc_path"].as_array().unwrap();
    assert!(path.iter().any(|l| l["object_id"] == session.as_str() && l["field"].as_str().is_some_and(|f| f.starts_with('['))), "{path:?}");
    assert!(path.iter().any(|l| l["root_kind"].is_string()), "the path reaches a GC root: {path:?}");
    let (status, html) = server.get(&format!("/dumps/{second_id}?node={session}"));
    assert_eq!(status, 200);
    assert!(html.contains("Path from a GC root") && html.contains("elementData"), "the page shows the looked-up path");
    let (_, html) = server.get(&format!("/dumps/{second_id}?node={array}"));
    assert!(html.contains(&session), "the tree opens at the array and lists its sessions");
    let (status, _) = server.get_json(&format!("/api/v1/dumps/{second_id}/objects/not-an-id"));
    assert_eq!(status, 400);
    let (status, body) = server.get_json(&format!("/api/v1/dumps/{second_id}/objects/0x1"));
    assert_eq!(status, 404, "{body}");
    let (_, html) = server.get(&format!("/dumps/{second_id}?node=0x1"));
    assert!(html.contains("object-error") && html.contains("holds no object with id 0x1"));

    // Delete removes record and file.
    let response = server.request("DELETE", &format!("/api/v1/dumps/{first_id}")).call().unwrap();
    assert_eq!(response.status(), 204);
    let (status, _) = server.get_json(&format!("/api/v1/dumps/{first_id}"));
    assert_eq!(status, 404);
    assert!(!server.dump_folder().join(format!("{first_id}.hprof.zst")).exists());
}

#[test]
fn bad_dumps_get_clear_errors_and_lose_nothing() {
    let server = Server::start(&[], &[]);
    let (status, body) = server.post_bytes("/api/v1/dumps?name=notes.txt", b"this is not a heap dump at all");
    assert_eq!(status, 400);
    assert!(body.contains("not an HPROF heap dump"), "{body}");

    // A truncated dump is stored (it is what the user has) but its analysis fails with the offset.
    let dump = std::fs::read(java_heap_dump(100, 10)).unwrap();
    let (status, body) = server.post_bytes("/api/v1/dumps?name=cut.hprof", &dump[..dump.len() / 2]);
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    let mut answer = serde_json::Value::Null;
    server.wait_until(Duration::from_secs(30), "the analysis fails", || {
        let (status, body) = server.get_json(&format!("/api/v1/dumps/{id}/analysis"));
        answer = body;
        status == 422
    });
    assert!(answer["error"].as_str().unwrap().contains("truncated at byte"), "{answer}");
    let (status, html) = server.get(&format!("/dumps/{id}"));
    assert_eq!(status, 200);
    assert!(html.contains("The analysis failed"));

    // Ids are ids, not paths.
    for bad in ["../../etc/passwd", "%2e%2e%2fetc", "zzzz"] {
        let (status, _) = server.get(&format!("/api/v1/dumps/{bad}/download"));
        assert_eq!(status, 404, "{bad}");
    }
    let (status, _) = server.get("/dumps/000000000000000000000000");
    assert_eq!(status, 404);
}

#[test]
fn the_upload_form_accepts_a_multipart_file_and_redirects_to_the_analysis() {
    let server = Server::start(&[], &[]);
    let dump = std::fs::read(java_heap_dump(300, 10)).unwrap();
    let boundary = "leakscope-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"service\"\r\n\r\nbilling\r\n").as_bytes());
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"billing.hprof\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(&dump);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let response = agent
        .post(&server.url("/dumps/upload"))
        .set("Authorization", &format!("Bearer {}", server.token))
        .set("Content-Type", &format!("multipart/form-data; boundary={boundary}"))
        .send_bytes(&body)
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.header("location").unwrap().to_string();
    assert!(location.starts_with("/dumps/"), "{location}");
    let id = location.trim_start_matches("/dumps/").to_string();
    let (status, info) = server.get_json(&format!("/api/v1/dumps/{id}"));
    assert_eq!(status, 200);
    assert_eq!(info["service"], "billing");
    assert_eq!(info["file_name"], "billing.hprof");
    assert_eq!(info["size_bytes"].as_u64().unwrap(), dump.len() as u64);
}

#[test]
fn a_node_heap_snapshot_is_stored_analysed_downloaded_and_not_diffed_against_java() {
    let server = Server::start(&[], &[]);
    let snapshot = std::fs::read(node_heap_snapshot(3_000, 200, 100)).unwrap();
    let (status, body) = server.post_bytes("/api/v1/dumps?name=api.heapsnapshot&service=api", &snapshot);
    assert_eq!(status, 201, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    assert_eq!(info["format"], "v8");
    assert_eq!(info["runtime"], "node");

    let analysis = wait_analysed(&server, &id);
    assert_eq!(analysis["summary"]["format"], "v8");
    assert_eq!(analysis["summary"]["runtime"], "node");
    let suspect = analysis["suspects"][0]["description"].as_str().unwrap();
    assert!(suspect.starts_with("global.sessions -> Map.table -> (array)[3000] holds 3 000 Session retaining"), "{suspect}");
    assert!(analysis["histogram"].as_array().unwrap().iter().any(|e| e["class"] == "Session" && e["instances"] == 3_000));

    // The analysis page names the runtime's own tools; the download is the snapshot, byte for byte.
    let (status, html) = server.get(&format!("/dumps/{id}"));
    assert_eq!(status, 200);
    assert!(html.contains("Download .heapsnapshot") && html.contains("Chrome DevTools"), "the page offers the snapshot");
    let response = server.request("GET", &format!("/api/v1/dumps/{id}/download")).call().unwrap();
    assert_eq!(response.header("content-disposition"), Some(format!("attachment; filename=\"{id}.heapsnapshot\"").as_str()));
    let mut downloaded = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut downloaded).unwrap();
    assert!(downloaded == snapshot, "the download is the uploaded snapshot");

    // A Java dump and a Node snapshot are not compared class by class.
    let java = std::fs::read(java_heap_dump(100, 10)).unwrap();
    let (_, body) = server.post_bytes("/api/v1/dumps?name=java.hprof&service=api", &java);
    let java_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    wait_analysed(&server, &java_id);
    let (status, body) = server.get_json(&format!("/api/v1/dumps/{java_id}/diff/{id}"));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("cannot be compared"), "{body}");

    // A cut snapshot is stored as the user has it, and its analysis says where it ends.
    let (status, body) = server.post_bytes("/api/v1/dumps?name=cut.heapsnapshot", &snapshot[..snapshot.len() / 2]);
    assert_eq!(status, 201, "{body}");
    let cut_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    let mut answer = serde_json::Value::Null;
    server.wait_until(Duration::from_secs(30), "the analysis fails", || {
        let (status, body) = server.get_json(&format!("/api/v1/dumps/{cut_id}/analysis"));
        answer = body;
        status == 422
    });
    assert!(answer["error"].as_str().unwrap().contains("at byte"), "{answer}");

    // Delete removes the snapshot's file too.
    let response = server.request("DELETE", &format!("/api/v1/dumps/{id}")).call().unwrap();
    assert_eq!(response.status(), 204);
    assert!(!server.dump_folder().join(format!("{id}.heapsnapshot.zst")).exists());
}

/// Two snapshots one process wrote of itself keep V8's object ids: uploaded,
/// they are compared object by object (DevTools' Comparison view), on the
/// API and on the diff page; snapshots of two processes are not.
#[test]
fn uploaded_snapshots_of_one_process_are_compared_by_object_id() {
    let server = Server::start(&[], &[]);
    let dir = std::env::temp_dir().join(end2end::unique_name("two-snapshots"));
    std::fs::create_dir_all(&dir).unwrap();
    let (first, second) = (dir.join("first.heapsnapshot"), dir.join("second.heapsnapshot"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/heap/tests/node/two-snapshots.js");
    let status = std::process::Command::new("node").arg(&script).arg(&first).arg(&second).status().expect("node runs");
    assert!(status.success());
    let upload = |path: &std::path::Path, name: &str| {
        let (status, body) = server.post_bytes(&format!("/api/v1/dumps?name={name}&service=api"), &std::fs::read(path).unwrap());
        assert_eq!(status, 201, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
        wait_analysed(&server, &id);
        id
    };
    let (a, b) = (upload(&first, "first.heapsnapshot"), upload(&second, "second.heapsnapshot"));
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{a}/diff/{b}"));
    assert_eq!(status, 200, "{diff}");
    let objects = diff["objects"].as_array().expect("compared by object id");
    let class = |name: &str| objects.iter().find(|o| o["class"] == name).unwrap_or_else(|| panic!("no {name}: {objects:?}")).clone();
    assert_eq!((class("Grow")["new_objects"].as_u64(), class("Grow")["deleted_objects"].as_u64()), (Some(5000), Some(0)));
    assert_eq!((class("Gone")["new_objects"].as_u64(), class("Gone")["deleted_objects"].as_u64()), (Some(0), Some(3000)));
    let (status, page) = server.get(&format!("/dumps/{a}/diff/{b}"));
    assert_eq!(status, 200);
    assert!(page.contains("id=\"diff-objects\"") && page.contains("Grow"), "the diff page shows the comparison");

    // A snapshot of another process: its ids name other objects, so only the aggregate is compared.
    let other = upload(&node_heap_snapshot(500, 10, 10), "other.heapsnapshot");
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{a}/diff/{other}"));
    assert_eq!(status, 200, "{diff}");
    assert!(diff["objects"].is_null(), "{}", diff["objects"]);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Heap dumps kept in an S3-compatible bucket (`--dump-store s3://…`), against
//! a real S3 server (s3s-fs): multipart upload, streamed download, restart,
//! a damaged object, a store that stops answering, delete.
//! (The upload, analysis, diff and capture tests also run a second time with
//! every dump in a bucket: `LEAKSCOPE_TEST_DUMP_STORE=s3`, set by `xtask test`.)

use std::time::Duration;

use end2end::{java_heap_dump, S3Server, Server};

/// A server on `data_dir` (a new one when `None`) with its dumps under `prefix` of the test bucket.
fn start_on_bucket(s3: &S3Server, prefix: &str, data_dir: Option<std::path::PathBuf>) -> Server {
    let credentials = s3.credentials();
    let env: Vec<(&str, &str)> = credentials.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = ["--dump-store", &s3.url_for(prefix)];
    match data_dir {
        Some(dir) => Server::start_with_data(dir, &args, &env),
        None => Server::start(&args, &env),
    }
}

fn objects_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".zst"))
        .collect()
}

#[test]
fn dumps_live_in_the_bucket_survive_a_restart_and_are_checked_when_read() {
    let s3 = S3Server::start();
    let prefix = "team-a/dumps";
    let server = start_on_bucket(&s3, prefix, None);
    let (_, engine) = server.get_json("/api/v1/engine");
    assert!(std::fs::read_to_string(&server.log).unwrap().contains("heap dumps are stored in"), "{engine}");

    // A dump of several 8 MiB parts once compressed (random payloads: 30 MB stays ~30 MB).
    let dump = std::fs::read(end2end::java_heap_dump_of(60_000, 500, true)).unwrap();
    let (status, body) = server.post_bytes("/api/v1/dumps?name=big.hprof&service=shop", &dump);
    assert_eq!(status, 201, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = info["id"].as_str().unwrap().to_string();
    println!("dump of {} bytes stored as {} bytes", dump.len(), info["stored_bytes"]);

    // In the bucket under its prefix, not on this machine.
    let in_bucket = objects_in(&s3.folder(prefix));
    assert_eq!(in_bucket, vec![format!("{id}.hprof.zst")]);
    assert!(objects_in(&server.data_dir.join("dumps")).is_empty(), "nothing stored locally");
    let stored = std::fs::metadata(s3.folder(prefix).join(&in_bucket[0])).unwrap().len();
    assert_eq!(stored, info["stored_bytes"].as_u64().unwrap());
    assert!(stored > 3 * (8 << 20), "several parts: {stored} bytes");

    let analysis = server.wait_analysis(&id);
    assert!(analysis["histogram"].as_array().unwrap().iter().any(|e| e["class"] == "LeakMain$Session" && e["instances"] == 60_000));
    let download = |server: &Server| -> Result<Vec<u8>, String> {
        let response = server.request("GET", &format!("/api/v1/dumps/{id}/download")).call().map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut got).map_err(|e| e.to_string())?;
        Ok(got)
    };
    assert!(download(&server).unwrap() == dump, "download is byte-exact");

    // A restart: the record here, the bytes there.
    let server = server.kill9_and_restart();
    let (status, listed) = server.get_json("/api/v1/dumps?service=shop");
    assert_eq!(status, 200);
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(download(&server).unwrap() == dump, "download after a restart is byte-exact");

    // An object damaged in the bucket is never served as the dump: the download
    // ends in an error and a lookup in the dump says it is damaged.
    let object = s3.folder(prefix).join(format!("{id}.hprof.zst"));
    let original = std::fs::read(&object).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    std::fs::write(&object, &damaged).unwrap();
    // The last byte is held back until the checksum is known: the client gets
    // fewer bytes than announced and an error, never a whole wrong dump.
    match download(&server) {
        Ok(got) => panic!("a damaged object downloaded as a whole ({} of {} bytes, equal: {})", got.len(), dump.len(), got == dump),
        Err(e) => println!("damaged download: {e}"),
    }
    let array = analysis["suspects"][0]["accumulation_object_id"].as_str().unwrap().to_string();
    let (status, body) = server.get(&format!("/api/v1/dumps/{id}/objects/{array}"));
    assert!(status >= 500 || status == 422, "{status} {body}");
    assert!(body.contains("damaged") || body.contains("cannot be read") || body.contains("unpacking"), "{body}");
    std::fs::write(&object, &original).unwrap();

    // The store stops answering: uploads fail at once in words, nothing is
    // left behind, and what is recorded stays listed.
    drop(s3);
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = server.post_bytes("/api/v1/dumps?name=late.hprof&service=shop", &dump[..1 << 20]);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the dump store s3://leakscope-tests/team-a/dumps"), "{body}");
    assert!(objects_in(&server.data_dir.join("dumps")).is_empty(), "nothing left locally");
    let (status, listed) = server.get_json("/api/v1/dumps");
    assert_eq!((status, listed.as_array().unwrap().len()), (200, 1));
    let (status, engine) = server.get_json("/api/v1/engine");
    assert_eq!(status, 200, "memory is still watched: {engine}");
}

#[test]
fn deleting_a_dump_removes_its_object_and_a_wrong_store_is_refused_in_words() {
    let s3 = S3Server::start();
    let prefix = "deletes";
    let server = start_on_bucket(&s3, prefix, None);
    let dump = std::fs::read(java_heap_dump(500, 10)).unwrap();
    let (status, body) = server.post_bytes("/api/v1/dumps?name=small.hprof", &dump);
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    server.wait_analysis(&id);
    assert_eq!(objects_in(&s3.folder(prefix)).len(), 1);
    let response = server.request("DELETE", &format!("/api/v1/dumps/{id}")).call().unwrap();
    assert_eq!(response.status(), 204);
    assert!(objects_in(&s3.folder(prefix)).is_empty(), "the object is gone from the bucket");
    drop(server);

    // Wrong keys: the server starts (memory is watched) and says why dumps cannot be stored.
    let wrong = [("AWS_ACCESS_KEY_ID", "nobody"), ("AWS_SECRET_ACCESS_KEY", "wrong")];
    let server = Server::start(&["--dump-store", &s3.url_for(prefix)], &wrong);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("the dump store does not answer"), "{log}");
    // Large enough that the refusal comes while the client still sends: the
    // client must still read the reason, not a broken pipe.
    let large: Vec<u8> = dump.iter().copied().cycle().take(48 << 20).collect();
    let (status, body) = server.post_bytes("/api/v1/dumps?name=small.hprof", &large);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the dump store s3://leakscope-tests/deletes"), "{body}");
    drop(server);

    // Not a store URL at all: refused before anything starts.
    let out = std::process::Command::new(end2end::leakscope_bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(std::env::temp_dir().join(end2end::unique_name("bad-store")))
        .args(["--dump-store", "s3://user:secret@bucket/x"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("credentials belong in AWS_ACCESS_KEY_ID"), "{said}");
}

#[test]
fn a_folder_of_dumps_migrates_into_the_bucket_each_copy_checked() {
    let s3 = S3Server::start();
    let prefix = "migrated";
    let credentials = s3.credentials();
    let server = Server::start(&[], &[]);
    let dumps: Vec<Vec<u8>> = [(300, 10), (3_000, 10)].iter().map(|&(n, k)| std::fs::read(java_heap_dump(n, k)).unwrap()).collect();
    let ids: Vec<String> = dumps
        .iter()
        .map(|d| {
            let (status, body) = server.post_bytes("/api/v1/dumps?name=x.hprof&service=old", d);
            assert_eq!(status, 201, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string()
        })
        .collect();
    for id in &ids {
        server.wait_analysis(id);
    }
    let data_dir = server.stop_keeping_data();

    // (succeeded, what it said) of one `leakscope migrate` run.
    let run_migrate = || {
        let out = std::process::Command::new(end2end::leakscope_bin())
            .args(["migrate", "--from", data_dir.to_str().unwrap(), "--dump-store", &s3.url_for(prefix)])
            .envs(credentials.iter().cloned())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let migrate = || {
        let (ok, said) = run_migrate();
        assert!(ok, "{said}");
        said
    };
    // A damaged file in the folder is not copied as if it were the dump.
    let local = data_dir.join("dumps").join(format!("{}.hprof.zst", ids[1]));
    let original = std::fs::read(&local).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    std::fs::write(&local, &damaged).unwrap();
    let (ok, said) = run_migrate();
    assert!(!ok && said.contains(&ids[1]) && said.contains("run the command again"), "{said}");
    assert!(!objects_in(&s3.folder(prefix)).contains(&format!("{}.hprof.zst", ids[1])), "the damaged copy is not kept");
    std::fs::write(&local, &original).unwrap();

    let said = migrate();
    assert!(said.contains("1 dumps copied") && said.contains("1 already there"), "the first dump was copied before: {said}");
    assert_eq!(objects_in(&s3.folder(prefix)).len(), 2);
    let said = migrate();
    assert!(said.contains("0 dumps copied") && said.contains("2 already there"), "a second run copies nothing: {said}");

    // The same data directory, its dumps now read from the bucket only.
    std::fs::remove_dir_all(data_dir.join("dumps")).unwrap();
    let server = start_on_bucket(&s3, prefix, Some(data_dir));
    for (id, dump) in ids.iter().zip(&dumps) {
        let response = server.request("GET", &format!("/api/v1/dumps/{id}/download")).call().unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut got).unwrap();
        assert!(&got == dump, "dump {id} downloads byte-exact from the bucket");
    }
    let (status, diff) = server.get_json(&format!("/api/v1/dumps/{}/diff/{}", ids[0], ids[1]));
    assert_eq!(status, 200, "{diff}");
}
